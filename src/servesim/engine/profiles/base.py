"""``EngineProfile``: everything engine-specific a replica runs with, as data.

A serving engine (vLLM 0.6, vLLM V1, SGLang, TensorRT-LLM) is chosen as one thing: its
scheduling rules and defaults (which scheduler, chunked prefill and its token budget, prefix
caching, ``max_num_seqs``, preemption mode), its host (CPU) time per step (a profile of
``servesim.perf.calibrate_defaults.HOST_PROFILES``), the kernel stack its kernels are priced
with (``servesim.perf.stacks``), the CUDA-graph capture sizes, and how it is launched (a small
``Launcher`` policy class that writes, and parses back, the engine's command line).

Adding an engine is one module under ``servesim.engine.profiles`` that registers its profile
and launcher, plus its host-time constants in ``HOST_PROFILES``.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servesim.core.errors import ConfigError
from servesim.core.registry import Registry

# Device memory above which vLLM >= 0.8 and SGLang pick their "large GPU" defaults (H100,
# H200, MI300; vLLM EngineArgs._set_default_args_v1: ``device_memory >= 70 GiB``).
LARGE_GPU_BYTES = 70 * 2**30


@dataclass(frozen=True, slots=True)
class LaunchSettings:
    """What a launch line says about one replica (the fields every engine has).

    Attributes:
        model: checkpoint name or path.
        tp, pp: tensor- and pipeline-parallel degree.
        dtype: weight format (``bf16``, ``fp16``, ``fp8``).
        max_num_seqs: most sequences in one batch.
        max_num_batched_tokens: token budget per step (None: the engine's default).
        enable_chunked_prefill: chunked prefill (None: the engine's default).
        enable_prefix_caching: prefix caching on.
        gpu_memory_utilization: fraction of GPU memory for weights, activations and KV.
        block_size: KV tokens per block (page).
        ep: expert-parallel degree of MoE layers (1: experts sharded like dense layers).
        kv_dtype: KV-cache format when it differs from the weights' (``fp8``; None: the
            engine's default).
        dp_attention: data-parallel-attention ranks of ``tp`` GPUs each, sharing the experts
            over ``tp x dp_attention`` GPUs (1: none).
        all2all_backend: how those ranks' tokens reach the experts (vLLM's backend names).
        dense_mlp: where those ranks run a MoE model's dense MLP layers (``auto``: the
            engine's; ``replicated``: SGLang's ``--moe-dense-tp-size 1``).
    """

    model: str
    tp: int = 1
    pp: int = 1
    dtype: str = "bf16"
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    enable_chunked_prefill: bool | None = None
    enable_prefix_caching: bool = False
    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    ep: int = 1
    kv_dtype: str | None = None
    dp_attention: int = 1
    all2all_backend: str = "allgather_reducescatter"
    dense_mlp: str = "auto"


# Weight-only formats come from a pre-quantised checkpoint (AWQ/GPTQ); the line names it.
WEIGHT_ONLY_QUANTIZATION = "<awq|gptq: the checkpoint's method>"


class Launcher(ABC):
    """Writes an engine's launch command for ``LaunchSettings`` and parses one back."""

    @abstractmethod
    def args(self, settings: LaunchSettings, version: str) -> list[str]:
        """The command as argv (its first words name the program)."""

    @abstractmethod
    def parse(self, argv: list[str]) -> LaunchSettings:
        """The settings a command (as written by ``args``) launches with."""

    def command(self, settings: LaunchSettings, version: str) -> str:
        """The shell-quoted launch line, with the engine version it was written for."""
        return shlex.join(self.args(settings, version)) + f"   # {version}"


def flag_values(argv: list[str]) -> tuple[list[str], dict[str, str | None]]:
    """Positional words and ``--flag [value]`` pairs of an argv (a flag alone maps to None)."""
    words: list[str] = []
    flags: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not nxt.startswith("--"):
                flags[word] = nxt
                i += 2
                continue
            flags[word] = None
        else:
            words.append(word)
        i += 1
    return words, flags


@dataclass(frozen=True, slots=True)
class EngineTiming:
    """When a request enters an engine's loop and when its tokens reach the client.

    Attributes:
        admission_lag_steps: steps formed ahead of the one in flight (0: synchronous, the
            next step is formed when the current one ends). With lag ``k`` a request that
            enters during step N first joins step N+1+k (vLLM V1 async scheduling, SGLang and
            TensorRT-LLM overlap schedulers: ``k`` = 1).
        frontend_latency_s: time from a request's arrival at the server to its entry into the
            engine loop (API server: HTTP parsing, tokenisation, hand-off to the engine
            process); its latency is still measured from the arrival.
        output_latency_s: time from the end of the step that produced a token to the client
            receiving it (engine -> API server hand-off, detokenisation, streaming); adds to
            TTFT and E2E alike, not to the gaps between tokens.
        output_per_seq_s: front-end time per output in a step, charged to first tokens only.
            The engine hands a step's outputs to the front end as one list, running requests
            first and the newly prefilled ones last, and the front end detokenises and streams
            them in that order; so a first token waits for every output ahead of it (``k``-th
            new request after ``d`` decodes: ``(d + k) * output_per_seq_s``). A running
            request's place in that order changes slowly (it moves forward as older requests
            finish), so the wait is nearly constant along its stream and drops out of its
            token gaps; by its last token it is near the front, so E2E is not charged.
    """

    admission_lag_steps: int = 0
    frontend_latency_s: float = 0.0
    output_latency_s: float = 0.0
    output_per_seq_s: float = 0.0

    def checked(self) -> EngineTiming:
        """This timing, after a ``ConfigError`` for a negative lag or latency."""
        if self.admission_lag_steps < 0:
            raise ConfigError("admission_lag_steps", self.admission_lag_steps, "must be >= 0")
        latencies = {
            "frontend_latency_s": self.frontend_latency_s,
            "output_latency_s": self.output_latency_s,
            "output_per_seq_s": self.output_per_seq_s,
        }
        for name, value in latencies.items():
            if not value >= 0:
                raise ConfigError(name, value, "must be >= 0")
        return self


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """One serving engine as data (module docstring).

    Attributes:
        name: registry key (``vllm-v1``); what ``engine:`` and ``--engine`` take.
        engine: the engine's family (``vllm``, ``sglang``, ``trtllm``).
        version: the versions the profile stands for, as printed (``vLLM 0.6.0``).
        description: its rules in one line.
        host_profile: host-time profile (``HOST_PROFILES`` key).
        kernel_stack: kernel stack pricing its kernels (``servesim.perf.stacks``).
        kernel_stack_note: which stack stands in when the engine has no tables of its own.
        scheduler: scheduler config defaults (``engine.config`` fields, ``kind`` included);
            a field the user sets wins.
        large_gpu_scheduler: replaces entries of ``scheduler`` on GPUs of at least
            ``LARGE_GPU_BYTES`` (the engines pick larger defaults there).
        cache: cache config defaults (``CacheConfig`` fields).
        cuda_graph_max_tokens: largest batch (tokens) replayed as a CUDA graph.
        cuda_graphs_with_prefill: graphs also cover steps with prefill (piecewise capture).
        overlap: what CPU work the engine hides under GPU time, in words.
        launcher: writes and parses its launch line.
        admission_lag_steps, frontend_latency_s, output_latency_s, output_per_seq_s: the
            engine's ``EngineTiming`` (``timing``): steps formed ahead, time before a request
            enters the engine loop, time before a finished step's tokens reach the client, and
            the front end's time per output ahead of a first token.
    """

    name: str
    engine: str
    version: str
    description: str
    host_profile: str
    kernel_stack: str
    scheduler: Mapping[str, Any]
    cache: Mapping[str, Any]
    cuda_graph_max_tokens: int
    cuda_graphs_with_prefill: bool
    overlap: str
    launcher: Launcher
    kernel_stack_note: str = ""
    large_gpu_scheduler: Mapping[str, Any] = field(default_factory=dict)
    admission_lag_steps: int = 0
    frontend_latency_s: float = 0.0
    output_latency_s: float = 0.0
    output_per_seq_s: float = 0.0

    @property
    def timing(self) -> EngineTiming:
        """Request entry and token delivery timing (``EngineTiming``)."""
        return EngineTiming(
            self.admission_lag_steps,
            self.frontend_latency_s,
            self.output_latency_s,
            self.output_per_seq_s,
        )

    def settings_line(self, scheduler: Any, cache: Any) -> str:
        """The effective settings in one line (``chunked prefill on, budget 8192, ...``)."""
        version = getattr(scheduler, "version", None)
        chunked = getattr(scheduler, "enable_chunked_prefill", None)
        if scheduler.kind == "vllm" and version == "v1":
            chunked = True
        budget = scheduler.max_num_batched_tokens
        prefix = cache.enable_prefix_caching
        if prefix is None:
            prefix = bool(self.cache.get("enable_prefix_caching", False))
        parts = [
            f"scheduler {scheduler.kind}" + (f" {version}" if version else ""),
            "chunked prefill " + ("default" if chunked is None else "on" if chunked else "off"),
            f"budget {budget if budget is not None else 'default'} tokens",
            f"max_num_seqs {scheduler.max_num_seqs}",
            "prefix caching " + ("on" if prefix else "off"),
            f"preemption {cache.preemption_mode}",
            f"CUDA graphs <= {self.cuda_graph_max_tokens} tokens"
            + (" (prefill too)" if self.cuda_graphs_with_prefill else " (decode only)"),
        ]
        if self.admission_lag_steps:
            parts.append(f"schedules {self.admission_lag_steps} step(s) ahead")
        if self.frontend_latency_s or self.output_latency_s:
            parts.append(
                f"front end {self.frontend_latency_s * 1e3:g} ms in, "
                f"{self.output_latency_s * 1e3:g} ms out"
                + (
                    f" + {self.output_per_seq_s * 1e6:g} us per output ahead of a first token"
                    if self.output_per_seq_s
                    else ""
                )
            )
        return ", ".join(parts)

    def scheduler_defaults(self, gpu_memory_bytes: float | None = None) -> dict[str, Any]:
        """Scheduler config defaults on a GPU with ``gpu_memory_bytes`` (None: a large one)."""
        out = dict(self.scheduler)
        if gpu_memory_bytes is None or gpu_memory_bytes >= LARGE_GPU_BYTES:
            out.update(self.large_gpu_scheduler)
        return out

    def launch_command(self, settings: LaunchSettings) -> str:
        """The engine's launch line for ``settings``, naming the version."""
        return self.launcher.command(settings, self.version)


ENGINES: Registry[EngineProfile] = Registry("engine")
