"""CLI commands for the simulate area: ``servesim simulate`` and ``servesim version``.

``servesim simulate`` with no arguments runs the built-in scenario (``SimConfig()``'s
defaults). ``--config file.yaml`` loads a config; every flag given overrides the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from servesim import __version__
from servesim.api import Result, simulate, write_outputs
from servesim.cli import options as opts
from servesim.cli.common import err_console
from servesim.cli.progress import progress_bar
from servesim.cli.simulate_render import render
from servesim.config import SimConfig, load_yaml
from servesim.core.errors import ConfigError

_W = "Workload"
_S = "Scheduler"
_H = "Hardware"
_R = "Run"
_C = "Client (vllm bench serve)"


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
    "max_num_seqs": "scheduler.max_num_seqs",
    "max_num_batched_tokens": "scheduler.max_num_batched_tokens",
    "chunked_prefill": "scheduler.enable_chunked_prefill",
    "chunk_size": "scheduler.chunk_size",
    "prefix_caching": "cache.enable_prefix_caching",
    "num_requests": "num_requests",
    "duration": "duration_s",
    "seed": "seed",
    "slo_ttft": "slo.ttft_s",
    "slo_tpot": "slo.tpot_s",
}


def config_flags(params: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted SimConfig overrides for a command's parameters named in ``FLAG_TO_CONFIG_PATH``."""
    return {path: params[name] for name, path in FLAG_TO_CONFIG_PATH.items() if name in params}


def _scheduler_overrides(scheduler: str | None) -> dict[str, Any]:
    if scheduler is None:
        return {}
    if ":" in scheduler or scheduler.endswith(".py"):
        return {"scheduler.kind": "custom", "scheduler.path": scheduler}
    return {"scheduler.kind": scheduler.lower()}


def _workload_overrides(
    raw: dict[str, Any],
    *,
    preset: str | None,
    arrival: str | None,
    rate: float | None,
    cv: float | None,
    trace: Path | None,
    trace_format: str | None,
    skip_bad_rows: bool = False,
) -> dict[str, Any]:
    """Dotted overrides for the workload flags, given what the config file already says."""
    out: dict[str, Any] = {}
    current = raw.get("workload") if isinstance(raw.get("workload"), dict) else {}
    if preset is not None:
        out["workload.preset"] = preset
        out["workload.trace"] = None
    if trace is not None:
        out["workload.trace"] = {
            "path": str(trace),
            "format": trace_format,
            "skip_bad_rows": skip_bad_rows,
        }
        out["workload.preset"] = None
        out["workload.rate_per_s"] = None
    else:
        if trace_format is not None:
            out["workload.trace.format"] = trace_format
        if skip_bad_rows:
            out["workload.trace.skip_bad_rows"] = True
    kind = arrival if arrival is not None else ("gamma" if cv is not None else None)
    if kind is not None:
        old = current.get("arrival") if isinstance(current.get("arrival"), dict) else {}
        new_rate = rate if rate is not None else old.get("rate_per_s", current.get("rate_per_s"))
        if new_rate is None:
            raise ConfigError("--rate", None, f"--arrival {kind} needs a rate: give --rate")
        spec: dict[str, Any] = {"kind": kind, "rate_per_s": new_rate}
        if kind == "gamma":
            spec["cv"] = cv if cv is not None else old.get("cv", 1.0)
        elif cv is not None:
            raise ConfigError("--cv", cv, f"only applies to --arrival gamma, not {kind}")
        out["workload.arrival"] = spec
        out["workload.rate_per_s"] = None
    elif rate is not None:
        if isinstance(current.get("arrival"), dict):
            out["workload.arrival.rate_per_s"] = rate
        else:
            out["workload.rate_per_s"] = rate
    return out


def _request_rate(text: str) -> float:
    if text.strip().lower() == "inf":
        return math.inf
    try:
        rate = float(text)
    except ValueError:
        raise ConfigError("--request-rate", text, "must be a number > 0 or inf") from None
    if not (rate > 0):
        raise ConfigError("--request-rate", text, "must be > 0 or inf")
    return rate


def client_overrides(
    *,
    request_rate: str | None = None,
    burstiness: float | None = None,
    max_concurrency: int | None = None,
    num_warmups: int | None = None,
    dataset: str | None = None,
    input_len: int | None = None,
    output_len: int | None = None,
    range_ratio: float | None = None,
    prefix_len: int | None = None,
) -> dict[str, Any]:
    """Dotted overrides for ``vllm bench serve``-style flags (client, pacing, dataset)."""
    out: dict[str, Any] = {}
    if burstiness is not None and not burstiness > 0:
        raise ConfigError("--burstiness", burstiness, "must be > 0")
    if max_concurrency is not None and max_concurrency < 1:
        raise ConfigError("--max-concurrency", max_concurrency, "must be >= 1")
    if num_warmups is not None and num_warmups < 0:
        raise ConfigError("--num-warmups", num_warmups, "must be >= 0")
    if request_rate is not None:
        rate = _request_rate(request_rate)
        if math.isinf(rate):
            if burstiness is not None and burstiness != 1.0:
                raise ConfigError("--burstiness", burstiness, "needs a finite --request-rate")
            out["workload.arrival"] = {"kind": "immediate"}
        else:
            cv = 1.0 / math.sqrt(burstiness if burstiness is not None else 1.0)
            out["workload.arrival"] = {"kind": "gamma", "rate_per_s": rate, "cv": cv}
        out["workload.rate_per_s"] = None
    elif burstiness is not None:
        raise ConfigError("--burstiness", burstiness, "needs --request-rate (vllm's gamma shape)")
    if max_concurrency is not None:
        out["workload.client.max_concurrency"] = max_concurrency
    if num_warmups is not None:
        out["workload.client.num_warmups"] = num_warmups
    random_flags = {
        "input_len": input_len,
        "output_len": output_len,
        "range_ratio": range_ratio,
        "prefix_len": prefix_len,
    }
    given = {k: v for k, v in random_flags.items() if v is not None}
    if dataset is None and given:
        dataset = "random"
    if dataset == "random":
        out["workload.lengths"] = {"kind": "random", **given}
        out["workload.preset"] = None
    elif dataset == "shared-prefix":
        out["workload.shared_prefix"] = {}
        out["workload.preset"] = None
    elif dataset is not None:
        if given:
            raise ConfigError("--input-len", given, "applies to --dataset random")
        out["workload.preset"] = dataset  # sharegpt-vllm-bench, sharegpt-vidur, ...
    return out


def build_config(
    config: Path | None,
    flags: dict[str, Any],
    workload: dict[str, Any],
    client: dict[str, Any] | None = None,
) -> SimConfig:
    """The YAML file (if any), then the flags that were given, validated together."""
    raw = load_yaml(config) if config is not None else {}
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(_workload_overrides(raw, **workload))
    overrides.update(client_overrides(**(client or {})))
    base_dir = config.parent if config is not None else None
    return SimConfig.from_dict(raw, overrides, base_dir=base_dir)


def _deployment_file(path: Path | None) -> dict[str, Any] | None:
    """A deployment YAML: either the ``deployment:`` mapping itself or a file holding one."""
    if path is None:
        return None
    raw = load_yaml(path)
    return raw["deployment"] if isinstance(raw.get("deployment"), dict) else raw


def _run(cfg: SimConfig, show_progress: bool) -> Result:
    if not show_progress:
        return simulate(cfg)
    total = cfg.effective_workload().num_requests
    with progress_bar("simulating", "{task.completed:,.0f} requests done") as bar:
        task = bar.add_task("", total=total)

        def on_progress(num_done: int, num_arrived: int) -> None:
            bar.update(task, completed=num_done)

        return simulate(cfg, on_progress=on_progress)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the servesim app."""

    @app.command("version")
    def version() -> None:
        """Print the servesim version."""
        print(__version__)

    @app.command("simulate")
    def simulate_cmd(
        config: Annotated[Path | None, opts.config(_R)] = None,
        model: Annotated[str | None, opts.model(_H)] = None,
        gpu: Annotated[str | None, opts.gpu(_H)] = None,
        tp: Annotated[int | None, opts.tp(_H)] = None,
        pp: Annotated[int | None, opts.pp(_H)] = None,
        dtype: Annotated[str | None, opts.dtype(_H)] = None,
        kv_dtype: Annotated[str | None, opts.kv_dtype(_H)] = None,
        gpu_memory_utilization: Annotated[float | None, opts.gpu_memory_utilization(_H)] = None,
        cuda_graphs: Annotated[bool | None, opts.cuda_graphs(_H)] = None,
        host_overhead: Annotated[
            str | None,
            opts.option(
                "--host-overhead",
                "Host CPU overhead per step: auto (the scheduler's engine), vllm-v0, "
                "vllm-v0-multistep, vllm-v1, none (GPU time only).",
                _H,
            ),
        ] = None,
        engine: Annotated[str | None, opts.engine(_H)] = None,
        kernel_stack: Annotated[
            str | None,
            opts.option(
                "--kernel-stack",
                "Kernels that price each op: auto (the host profile's), vllm-0.6, vllm-0.24, "
                "sglang-0.5.",
                _H,
            ),
        ] = None,
        offload_cached_experts: Annotated[
            int | None,
            opts.option(
                "--offload-cached-experts",
                "MoE: experts per layer kept on the GPU; the rest live in host memory.",
                _H,
            ),
        ] = None,
        replicas: Annotated[int | None, opts.replicas(_H)] = None,
        deployment: Annotated[
            Path | None,
            opts.option(
                "--deployment", "Deployment YAML (pools, router, nodes); replaces the hardware.", _H
            ),
        ] = None,
        disagg: Annotated[str | None, opts.disagg(_H)] = None,
        router: Annotated[
            str | None,
            opts.option(
                "--router",
                "round_robin, random, least_outstanding_requests, least_outstanding_tokens, "
                "least_kv_usage, power_of_two, prefix_affinity, slo_aware, or file.py:Class.",
                _H,
            ),
        ] = None,
        scheduler: Annotated[
            str | None,
            opts.option(
                "--scheduler",
                "vllm, sarathi, orca, static, priority, fair, or path/to/file.py:Class.",
                _S,
            ),
        ] = None,
        max_num_seqs: Annotated[int | None, opts.max_num_seqs(_S)] = None,
        max_num_batched_tokens: Annotated[int | None, opts.max_num_batched_tokens(_S)] = None,
        chunked_prefill: Annotated[bool | None, opts.chunked_prefill(_S)] = None,
        chunk_size: Annotated[
            int | None, opts.option("--chunk-size", "Chunk size (sarathi, priority, fair).", _S)
        ] = None,
        prefix_caching: Annotated[
            bool | None,
            opts.option(
                "--enable-prefix-caching/--no-enable-prefix-caching", "Prefix caching.", _S
            ),
        ] = None,
        preset: Annotated[
            str | None, opts.option("--preset", "Workload preset (servesim workload list).", _W)
        ] = None,
        arrival: Annotated[
            str | None, opts.option("--arrival", "poisson, gamma or constant.", _W)
        ] = None,
        rate: Annotated[
            float | None, opts.option("--rate", "Mean arrival rate, req/s.", _W)
        ] = None,
        cv: Annotated[float | None, opts.option("--cv", "Inter-arrival CV (gamma).", _W)] = None,
        trace: Annotated[Path | None, opts.option("--trace", "Replay a trace file.", _W)] = None,
        trace_format: Annotated[
            str | None, opts.option("--trace-format", "Trace format (default: detect).", _W)
        ] = None,
        skip_bad_rows: Annotated[
            bool,
            typer.Option(
                "--skip-bad-rows",
                help="Skip malformed trace rows and count them (default: stop at the first).",
                rich_help_panel=_W,
            ),
        ] = False,
        num_requests: Annotated[int | None, opts.num_requests("Requests to simulate.", _R)] = None,
        duration: Annotated[
            float | None, opts.option("--duration", "Stop arrivals after this many seconds.", _R)
        ] = None,
        seed: Annotated[int | None, opts.seed(_R)] = None,
        slo_ttft: Annotated[
            float | None, opts.option("--slo-ttft", "TTFT target, seconds.", _R)
        ] = None,
        slo_tpot: Annotated[
            float | None, opts.option("--slo-tpot", "TPOT target, seconds.", _R)
        ] = None,
        out: Annotated[
            Path | None, opts.option("--out", "Write summary.json, requests table, plot here.", _R)
        ] = None,
        out_format: Annotated[
            str, typer.Option("--format", help="Requests table: parquet|csv.", rich_help_panel=_R)
        ] = "parquet",
        request_rate: Annotated[
            str | None,
            opts.option(
                "--request-rate",
                "Pacing, req/s, or inf (all at once), as vllm bench serve; gamma gaps.",
                _C,
            ),
        ] = None,
        burstiness: Annotated[
            float | None,
            opts.option("--burstiness", "Gamma shape of the pacing gaps (1: Poisson).", _C),
        ] = None,
        max_concurrency: Annotated[
            int | None,
            opts.option("--max-concurrency", "At most this many requests in flight.", _C),
        ] = None,
        num_warmups: Annotated[
            int | None,
            opts.option("--num-warmups", "Warm-up requests, left out of the metrics.", _C),
        ] = None,
        dataset: Annotated[
            str | None,
            opts.option(
                "--dataset",
                "random, shared-prefix, or a preset (sharegpt-vllm-bench, sharegpt-vidur, ...).",
                _C,
            ),
        ] = None,
        input_len: Annotated[
            int | None, opts.option("--input-len", "random: mean input tokens.", _C)
        ] = None,
        output_len: Annotated[
            int | None, opts.option("--output-len", "random: mean output tokens.", _C)
        ] = None,
        range_ratio: Annotated[
            float | None, opts.option("--range-ratio", "random: lengths len x [1 -/+ r].", _C)
        ] = None,
        prefix_len: Annotated[
            int | None, opts.option("--prefix-len", "random: shared prefix tokens.", _C)
        ] = None,
        as_json: Annotated[bool, opts.as_json("Print summary JSON.", _R)] = False,
        json_format: Annotated[
            str,
            typer.Option(
                "--json-format",
                help="--json schema: servesim | vllm-bench (vllm bench serve's result JSON).",
                rich_help_panel=_R,
            ),
        ] = "servesim",
        calibration: Annotated[str | None, opts.calibration(_H)] = None,
        progress: Annotated[
            bool, typer.Option("--progress", help="Show a progress bar.", rich_help_panel=_R)
        ] = False,
    ) -> None:
        """Simulate one deployment on one workload and print its summary.

        With no arguments: Llama-3.1-8B on one H100, vLLM's scheduler, ShareGPT-like traffic.
        """
        if out_format not in ("parquet", "csv"):
            raise ConfigError("--format", out_format, "must be parquet or csv")
        if json_format not in ("servesim", "vllm-bench"):
            raise ConfigError("--json-format", json_format, "must be servesim or vllm-bench")
        opts.apply_calibration(calibration)
        flags = config_flags(locals()) | {
            "deployment": _deployment_file(deployment),
            **_scheduler_overrides(scheduler),
        }
        workload = {
            "preset": preset,
            "arrival": arrival,
            "rate": rate,
            "cv": cv,
            "trace": trace,
            "trace_format": trace_format,
            "skip_bad_rows": skip_bad_rows,
        }
        client = {
            "request_rate": request_rate,
            "burstiness": burstiness,
            "max_concurrency": max_concurrency,
            "num_warmups": num_warmups,
            "dataset": dataset,
            "input_len": input_len,
            "output_len": output_len,
            "range_ratio": range_ratio,
            "prefix_len": prefix_len,
        }
        cfg = build_config(config, flags, workload, client)
        result = _run(cfg, progress)
        if as_json and json_format == "vllm-bench":
            print(json.dumps(result.to_vllm_bench(), indent=2, sort_keys=True))
        elif as_json:
            print(result.to_json(), end="")
        else:
            render(result)
        if out is not None:
            for note in write_outputs(result, out, table_format=out_format):
                err_console.print(note, markup=False, highlight=False)
