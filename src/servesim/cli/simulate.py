"""CLI commands for the simulate area: ``servesim simulate`` and ``servesim version``.

``servesim simulate`` with no arguments runs the built-in scenario (``SimConfig()``'s
defaults). ``--config file.yaml`` loads a config; every flag given overrides the file.
"""

# No ``from __future__ import annotations`` here: typer reads a command's annotations twice
# per run (inspect.signature(eval_str=True) and get_type_hints, typer/utils.py), so ~60 string
# annotations would be evaluated twice at each parse; evaluated once at import they cost
# 4.5 ms instead of 12 ms per run (bytecode cached, tests/test_cli_lazy.py).
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from servesim import __version__
from servesim.api import Result, simulate
from servesim.cli import options as opts
from servesim.cli.common import err_console
from servesim.cli.overrides import scheduler_overrides as _scheduler_overrides
from servesim.cli.report import check_outputs, write_files
from servesim.cli.simulate_config import (
    FLAG_TO_CONFIG_PATH,  # noqa: F401  (imported from here: capacity, tests)
    build_config,
    client_flags,
    config_flags,
    deployment_file,
    make_out_folder,
    slo_overrides,
    workload_flags,
)
from servesim.config import SimConfig
from servesim.core import domains as dom
from servesim.core.errors import ConfigError

_W = "Workload"
_S = "Scheduler"
_H = "Hardware"
_R = "Run"
_C = "Client (vllm bench serve)"


def _run(cfg: SimConfig, show_progress: bool) -> Result:
    if not show_progress:
        return simulate(cfg)
    from servesim.cli.progress import progress_bar  # rich.progress only for --progress

    total = cfg.effective_workload().num_requests
    with progress_bar("simulating", "{task.completed:,.0f} requests done") as bar:
        task = bar.add_task("", total=total)

        def on_progress(num_done: int, num_arrived: int) -> None:
            bar.update(task, completed=num_done)

        return simulate(cfg, on_progress=on_progress)


def _version() -> None:
    """Print the servesim version."""
    print(__version__)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the servesim app."""
    app.command("version")(_version)
    app.command("simulate")(simulate_cmd)


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
    router: Annotated[str | None, opts.router(_H)] = None,
    admission: Annotated[str | None, opts.admission(_H)] = None,
    scheduler: Annotated[str | None, opts.scheduler(_S)] = None,
    max_num_seqs: Annotated[int | None, opts.max_num_seqs(_S)] = None,
    max_num_batched_tokens: Annotated[int | None, opts.max_num_batched_tokens(_S)] = None,
    chunked_prefill: Annotated[bool | None, opts.chunked_prefill(_S)] = None,
    chunk_size: Annotated[int | None, opts.chunk_size(_S)] = None,
    prefix_caching: Annotated[
        bool | None,
        opts.option("--enable-prefix-caching/--no-enable-prefix-caching", "Prefix caching.", _S),
    ] = None,
    preset: Annotated[str | None, opts.workload(_W)] = None,
    arrival: Annotated[
        str | None, opts.option("--arrival", "poisson, gamma or constant.", _W)
    ] = None,
    rate: Annotated[
        float | None, opts.option("--rate", dom.RATE_PER_S.help("Mean arrival rate."), _W)
    ] = None,
    cv: Annotated[
        float | None, opts.option("--cv", dom.CV.help("Inter-arrival CV (gamma)."), _W)
    ] = None,
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
    rate_scale: Annotated[float | None, opts.rate_scale(_W)] = None,
    prompt_lengths: Annotated[str | None, opts.prompt_lengths(_W)] = None,
    output_lengths: Annotated[str | None, opts.output_lengths(_W)] = None,
    turns: Annotated[float | None, opts.turns(_W)] = None,
    group_size: Annotated[int | None, opts.group_size(_W)] = None,
    num_requests: Annotated[int | None, opts.num_requests("Requests to simulate.", _R)] = None,
    duration_s: Annotated[float | None, opts.duration_s(_R)] = None,
    seed: Annotated[int | None, opts.seed(_R)] = None,
    slo_ttft_p99: Annotated[float | None, opts.slo_ttft_p99(_R)] = None,
    slo_tpot_p99: Annotated[float | None, opts.slo_tpot_p99(_R)] = None,
    min_attainment: Annotated[float | None, opts.min_attainment(_R)] = None,
    slo_ttft: Annotated[
        float | None, opts.option("--slo-ttft", "TTFT target, s (goal 90%).", _R, hidden=True)
    ] = None,
    slo_tpot: Annotated[
        float | None, opts.option("--slo-tpot", "TPOT target, s (goal 90%).", _R, hidden=True)
    ] = None,
    out: Annotated[
        Path | None,
        opts.option(
            "--out",
            "Write summary.json, the request and iteration tables, report.html (open it in a "
            "browser) and a plot here.",
            _R,
        ),
    ] = None,
    out_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="Tables: auto (parquet with pyarrow, else csv), parquet or csv.",
            rich_help_panel=_R,
        ),
    ] = "auto",
    trace_out: Annotated[
        Path | None,
        opts.option(
            "--trace-out",
            "Write a Chrome/Perfetto trace (iterations, request phases) to this JSON file.",
            _R,
        ),
    ] = None,
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
    With --out DIR it also writes DIR/report.html, a self-contained page of charts.
    """
    params = dict(locals())
    opts.check_flags(params)
    if json_format not in ("servesim", "vllm-bench"):
        raise ConfigError("--json-format", json_format, "must be servesim or vllm-bench")
    if trace is not None and preset is not None:
        raise ConfigError(
            "--workload", preset, "and --trace both given: a trace replays its own requests"
        )
    # Every writer is checked before the run, so a missing package does not cost a run.
    outputs = check_outputs(out, out_format, trace_out)
    make_out_folder(out)
    opts.apply_calibration(calibration)
    cfg = build_config(config, _flags(params), workload_flags(params), client_flags(params))
    result = _run(cfg, progress)
    if result.records.requests.size == 0:
        raise ConfigError(
            "--duration-s" if cfg.duration_s is not None else "workload",
            cfg.duration_s,
            "no request arrived before the end of arrivals: nothing was simulated",
        )
    if as_json and json_format == "vllm-bench":
        print(json.dumps(result.to_vllm_bench(), indent=2, sort_keys=True))
    elif as_json:
        print(result.to_json(), end="")
    else:
        from servesim.cli.simulate_render import render  # rich.table: not for --json

        render(result)
    for note in write_files(result, outputs):
        err_console.print(note, markup=False, highlight=False, soft_wrap=True)


def _flags(params: dict[str, Any]) -> dict[str, Any]:
    """The config-field flags, the deployment file, the scheduler and the SLO."""
    return (
        config_flags(params)
        | {"deployment": deployment_file(params["deployment"])}
        | _scheduler_overrides(params["scheduler"])
        | slo_overrides(
            ttft_p99=params["slo_ttft_p99"],
            tpot_p99=params["slo_tpot_p99"],
            min_attainment=params["min_attainment"],
            old_ttft=params["slo_ttft"],
            old_tpot=params["slo_tpot"],
        )
    )
