"""How ``servesim simulate`` turns its flags into a SimConfig (also used by ``capacity`` and
``plan``): the flags that set one config field each, the SLO flags, the workload and client
flag groups, and the checks on ``--out`` before a run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servesim.cli.overrides import (
    admission_override,
    client_overrides,
    fill_scheduler_kind,
    router_override,
    workload_overrides,
)
from servesim.config import SimConfig, load_yaml
from servesim.core.errors import ConfigError

# The flags that each set one SimConfig field: CLI parameter name -> dotted config path.
# ``simulate`` and ``capacity`` name these parameters alike, so both map them here.
FLAG_TO_CONFIG_PATH = {
    "model": "model",
    "gpu": "hardware.gpu",
    "tp": "hardware.tp",
    "pp": "hardware.pp",
    "dtype": "hardware.dtype",
    "kv_dtype": "hardware.kv_dtype",
    "gpu_memory_utilization": "hardware.gpu_memory_utilization",
    "cuda_graphs": "hardware.cuda_graphs",
    "host_overhead": "hardware.host_overhead",
    "kernel_stack": "hardware.kernel_stack",
    "engine": "hardware.engine",
    "offload_cached_experts": "hardware.offload_cached_experts",
    "replicas": "replicas",
    "disagg": "disagg",
    "router": "router",
    "admission": "admission",
    "max_num_seqs": "scheduler.max_num_seqs",
    "max_num_batched_tokens": "scheduler.max_num_batched_tokens",
    "chunked_prefill": "scheduler.enable_chunked_prefill",
    "chunk_size": "scheduler.chunk_size",
    "prefix_caching": "cache.enable_prefix_caching",
    "num_requests": "num_requests",
    "duration_s": "duration_s",
    "seed": "seed",
    "slo_ttft": "slo.ttft_s",
    "slo_tpot": "slo.tpot_s",
}


# The scheduler a config without one runs (SimConfig's default), named when scheduler flags
# are given without --scheduler.
DEFAULT_SCHEDULER_KIND: str = SimConfig.model_fields["scheduler"].default_factory().kind  # type: ignore[misc,call-arg]
# A p99 target means 99% of requests within it: the attainment goal --slo-*-p99 implies.
P99_ATTAINMENT = 0.99


def config_flags(params: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted SimConfig overrides for a command's parameters named in ``FLAG_TO_CONFIG_PATH``."""
    return {path: params[name] for name, path in FLAG_TO_CONFIG_PATH.items() if name in params}


def build_config(
    config: Path | None,
    flags: dict[str, Any],
    workload: dict[str, Any],
    client: dict[str, Any] | None = None,
) -> SimConfig:
    """The YAML file (if any), then the flags that were given, validated together."""
    raw = load_yaml(config) if config is not None else {}
    overrides = {k: v for k, v in flags.items() if v is not None}
    if "router" in overrides:
        overrides["router"] = router_override(overrides["router"])
    if "admission" in overrides:
        overrides["admission"] = admission_override(overrides["admission"])
    overrides = fill_scheduler_kind(raw, overrides, DEFAULT_SCHEDULER_KIND)
    if overrides.get("scheduler.kind") == "vllm" and "scheduler.chunk_size" in overrides:
        raise ConfigError(
            "--chunk-size",
            overrides["scheduler.chunk_size"],
            "applies to sarathi, priority and fair (give --scheduler); vllm's chunk is "
            "--max-num-batched-tokens",
        )
    overrides.update(workload_overrides(raw, **workload))
    overrides.update(client_overrides(**(client or {})))
    base_dir = config.parent if config is not None else None
    return SimConfig.from_dict(raw, overrides, base_dir=base_dir)


def make_out_folder(out: Path | None) -> None:
    """Create ``--out`` before the run, so an unwritable place costs no simulation."""
    if out is None:
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--out", str(out), f"cannot be created: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ConfigError("--out", str(out), "is not writable")


def deployment_file(path: Path | None) -> dict[str, Any] | None:
    """A deployment YAML: either the ``deployment:`` mapping itself or a file holding one."""
    if path is None:
        return None
    raw = load_yaml(path)
    return raw["deployment"] if isinstance(raw.get("deployment"), dict) else raw


def slo_overrides(
    *,
    ttft_p99: float | None,
    tpot_p99: float | None,
    min_attainment: float | None,
    old_ttft: float | None = None,
    old_tpot: float | None = None,
) -> dict[str, Any]:
    """``--slo-ttft-p99/--slo-tpot-p99/--min-attainment``, as ``capacity`` and ``plan`` name them.

    A p99 target is a per-request target that 99% of requests must meet (``--min-attainment``
    changes the share). The old ``--slo-ttft/--slo-tpot`` keep their meaning (the SLO's
    default attainment goal); giving both spellings of one target is an error.
    """
    for new, old, flag in ((ttft_p99, old_ttft, "ttft"), (tpot_p99, old_tpot, "tpot")):
        if new is not None and old is not None:
            raise ConfigError(f"--slo-{flag}", old, f"and --slo-{flag}-p99 both given: use one")
    out: dict[str, Any] = {}
    if ttft_p99 is not None:
        out["slo.ttft_s"] = ttft_p99
    if tpot_p99 is not None:
        out["slo.tpot_s"] = tpot_p99
    if min_attainment is not None:
        out["slo.attainment_target"] = min_attainment
    elif out:
        out["slo.attainment_target"] = P99_ATTAINMENT
    return out


WORKLOAD_PARAMS = ("preset", "arrival", "rate", "cv", "trace", "trace_format",
                    "skip_bad_rows", "prompt_lengths", "output_lengths", "rate_scale", "turns",
                    "group_size")  # fmt: skip
CLIENT_PARAMS = ("request_rate", "burstiness", "max_concurrency", "num_warmups", "dataset",
                  "input_len", "output_len", "range_ratio", "prefix_len")  # fmt: skip


def workload_flags(params: dict[str, Any]) -> dict[str, Any]:
    """The workload flag group of ``simulate``'s parameters."""
    return {name: params[name] for name in WORKLOAD_PARAMS}


def client_flags(params: dict[str, Any]) -> dict[str, Any]:
    """The client (``vllm bench serve``) flag group of ``simulate``'s parameters."""
    return {name: params[name] for name in CLIENT_PARAMS}
