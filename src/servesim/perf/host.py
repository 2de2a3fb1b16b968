"""Which host-overhead profile a replica runs: the user's choice, or the one of its engine.

Profiles (figures and sources in ``calibrate_defaults.HOST_PROFILES``):

- ``vllm-v0``: vLLM 0.6, V0 engine, default settings; the figures the validation runs check.
- ``vllm-v0-multistep``: ``vllm-v0`` with ``--num-scheduler-steps 8`` (decode-only steps
  share one host pass; never chosen by ``auto``: the scheduler config has no steps field).
- ``vllm-v1``: vLLM 0.8-0.10, V1 engine, synchronous scheduling (API server and
  detokenisation out of the busy loop, persistent batch, piecewise CUDA graphs).
- ``vllm-v1-async``: V1 with async scheduling (0.10 flag, default later): step N+1's CPU work
  runs under GPU step N, so a step takes max(GPU, CPU) + a small exposed hand-off.
- ``sglang``: SGLang 0.4/0.5 with its overlap scheduler (same overlap rule).
- ``trtllm``: TensorRT-LLM 1.0 with its overlap scheduler (same overlap rule).
- ``none``: GPU time only, the hardware bound.

``auto`` follows the engine profile (``servesim.engine.profiles``) when one is chosen, else the
scheduler: vLLM's ``version`` v0/v1 picks its profile. Every other
scheduler (sarathi, orca, static, priority, fair, custom) gets ``vllm-v0``: they are modelled
as policies inside a vLLM-0.6-style engine loop (Sarathi-Serve itself is a fork of the vLLM V0
code base), and ``vllm-v0`` is the only profile checked against measured runs.
"""

from __future__ import annotations

from servesim.core.errors import UnknownNameError
from servesim.perf.calibration import DEFAULT_HOST_PROFILE

HOST_PROFILE_NAMES: tuple[str, ...] = (
    "vllm-v0",
    "vllm-v0-multistep",
    "vllm-v1",
    "vllm-v1-async",
    "sglang",
    "trtllm",
    "none",
)
AUTO = "auto"
HOST_OVERHEAD_CHOICES: tuple[str, ...] = (AUTO, *HOST_PROFILE_NAMES)


def resolve_host_profile(
    setting: str,
    scheduler_kind: str = "vllm",
    scheduler_version: str | None = None,
    engine_host_profile: str | None = None,
) -> str:
    """The profile name for a ``host_overhead`` setting and the replica's scheduler.

    Args:
        setting: ``auto`` or a profile name.
        scheduler_kind: the scheduler registry key (``vllm``, ``sarathi``, ...).
        scheduler_version: vLLM's ``version`` (``v0``/``v1``); ignored for other schedulers.
        engine_host_profile: the chosen engine profile's host profile (wins over the
            scheduler rule under ``auto``).

    Raises:
        UnknownNameError: ``setting`` is neither ``auto`` nor a profile.
    """
    if setting != AUTO:
        if setting not in HOST_PROFILE_NAMES:
            raise UnknownNameError("host-overhead profile", setting, HOST_OVERHEAD_CHOICES)
        return setting
    if engine_host_profile is not None:
        return engine_host_profile
    if scheduler_kind == "vllm" and scheduler_version == "v1":
        return "vllm-v1"
    return DEFAULT_HOST_PROFILE
