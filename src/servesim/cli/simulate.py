"""CLI commands for the simulate area: ``servesim simulate`` and ``servesim version``.

``servesim simulate`` with no arguments runs the built-in scenario (``SimConfig()``'s
defaults). ``--config file.yaml`` loads a config; every flag given overrides the file.
"""

# The options are a table (``cli/params.py``): typer reads a command's annotations twice per
# run (inspect.signature(eval_str=True) and get_type_hints, typer/utils.py), and the table's
# are objects built once at import, never strings, so each parse costs 4.5 ms instead of the
# 12 ms of evaluating ~60 string annotations twice (bytecode cached, tests/test_cli_lazy.py).
import json
from pathlib import Path
from typing import Any

import typer

from servesim import __version__
from servesim.api import Result, simulate
from servesim.cli import options as opts
from servesim.cli.common import err_console
from servesim.cli.overrides import scheduler_overrides as _scheduler_overrides
from servesim.cli.params import Opt, with_options
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


SIMULATE_OPTIONS: tuple[Opt, ...] = (
    Opt("config", Path | None, opts.config(_R)),
    Opt("model", str | None, opts.model(_H)),
    Opt("gpu", str | None, opts.gpu(_H)),
    Opt("tp", int | None, opts.tp(_H)),
    Opt("pp", int | None, opts.pp(_H)),
    Opt("dtype", str | None, opts.dtype(_H)),
    Opt("kv_dtype", str | None, opts.kv_dtype(_H)),
    Opt("gpu_memory_utilization", float | None, opts.gpu_memory_utilization(_H)),
    Opt("cuda_graphs", bool | None, opts.cuda_graphs(_H)),
    Opt(
        "host_overhead",
        str | None,
        opts.option(
            "--host-overhead",
            "Host CPU overhead per step: auto (the scheduler's engine), vllm-v0, "
            "vllm-v0-multistep, vllm-v1, none (GPU time only).",
            _H,
        ),
    ),
    Opt("engine", str | None, opts.engine(_H)),
    Opt(
        "kernel_stack",
        str | None,
        opts.option(
            "--kernel-stack",
            "Kernels that price each op: auto (the host profile's), vllm-0.6, vllm-0.24, "
            "sglang-0.5.",
            _H,
        ),
    ),
    Opt(
        "offload_cached_experts",
        int | None,
        opts.option(
            "--offload-cached-experts",
            "MoE: experts per layer kept on the GPU; the rest live in host memory.",
            _H,
        ),
    ),
    Opt("replicas", int | None, opts.replicas(_H)),
    Opt(
        "deployment",
        Path | None,
        opts.option(
            "--deployment", "Deployment YAML (pools, router, nodes); replaces the hardware.", _H
        ),
    ),
    Opt("disagg", str | None, opts.disagg(_H)),
    Opt("router", str | None, opts.router(_H)),
    Opt("admission", str | None, opts.admission(_H)),
    Opt("scheduler", str | None, opts.scheduler(_S)),
    Opt("max_num_seqs", int | None, opts.max_num_seqs(_S)),
    Opt("max_num_batched_tokens", int | None, opts.max_num_batched_tokens(_S)),
    Opt("chunked_prefill", bool | None, opts.chunked_prefill(_S)),
    Opt("chunk_size", int | None, opts.chunk_size(_S)),
    Opt(
        "prefix_caching",
        bool | None,
        opts.option("--enable-prefix-caching/--no-enable-prefix-caching", "Prefix caching.", _S),
    ),
    Opt("preset", str | None, opts.workload(_W)),
    Opt("arrival", str | None, opts.option("--arrival", "poisson, gamma or constant.", _W)),
    Opt("rate", float | None, opts.option("--rate", dom.RATE_PER_S.help("Mean arrival rate."), _W)),
    Opt("cv", float | None, opts.option("--cv", dom.CV.help("Inter-arrival CV (gamma)."), _W)),
    Opt("trace", Path | None, opts.option("--trace", "Replay a trace file.", _W)),
    Opt(
        "trace_format",
        str | None,
        opts.option("--trace-format", "Trace format (default: detect).", _W),
    ),
    Opt(
        "skip_bad_rows",
        bool,
        typer.Option(
            "--skip-bad-rows",
            help="Skip malformed trace rows and count them (default: stop at the first).",
            rich_help_panel=_W,
        ),
        False,
    ),
    Opt("rate_scale", float | None, opts.rate_scale(_W)),
    Opt("prompt_lengths", str | None, opts.prompt_lengths(_W)),
    Opt("output_lengths", str | None, opts.output_lengths(_W)),
    Opt("turns", float | None, opts.turns(_W)),
    Opt("group_size", int | None, opts.group_size(_W)),
    Opt("num_requests", int | None, opts.num_requests("Requests to simulate.", _R)),
    Opt("duration_s", float | None, opts.duration_s(_R)),
    Opt("seed", int | None, opts.seed(_R)),
    Opt("slo_ttft_p99", float | None, opts.slo_ttft_p99(_R)),
    Opt("slo_tpot_p99", float | None, opts.slo_tpot_p99(_R)),
    Opt("min_attainment", float | None, opts.min_attainment(_R)),
    Opt(
        "slo_ttft",
        float | None,
        opts.option("--slo-ttft", "TTFT target, s (goal 90%).", _R, hidden=True),
    ),
    Opt(
        "slo_tpot",
        float | None,
        opts.option("--slo-tpot", "TPOT target, s (goal 90%).", _R, hidden=True),
    ),
    Opt(
        "out",
        Path | None,
        opts.option(
            "--out",
            "Write summary.json, the request and iteration tables, report.html (open it in a "
            "browser) and a plot here.",
            _R,
        ),
    ),
    Opt(
        "out_format",
        str,
        typer.Option(
            "--format",
            help="Tables: auto (parquet with pyarrow, else csv), parquet or csv.",
            rich_help_panel=_R,
        ),
        "auto",
    ),
    Opt(
        "trace_out",
        Path | None,
        opts.option(
            "--trace-out",
            "Write a Chrome/Perfetto trace (iterations, request phases) to this JSON file.",
            _R,
        ),
    ),
    Opt(
        "request_rate",
        str | None,
        opts.option(
            "--request-rate",
            "Pacing, req/s, or inf (all at once), as vllm bench serve; gamma gaps.",
            _C,
        ),
    ),
    Opt(
        "burstiness",
        float | None,
        opts.option("--burstiness", "Gamma shape of the pacing gaps (1: Poisson).", _C),
    ),
    Opt(
        "max_concurrency",
        int | None,
        opts.option("--max-concurrency", "At most this many requests in flight.", _C),
    ),
    Opt(
        "num_warmups",
        int | None,
        opts.option("--num-warmups", "Warm-up requests, left out of the metrics.", _C),
    ),
    Opt(
        "dataset",
        str | None,
        opts.option(
            "--dataset",
            "random, shared-prefix, or a preset (sharegpt-vllm-bench, sharegpt-vidur, ...).",
            _C,
        ),
    ),
    Opt("input_len", int | None, opts.option("--input-len", "random: mean input tokens.", _C)),
    Opt("output_len", int | None, opts.option("--output-len", "random: mean output tokens.", _C)),
    Opt(
        "range_ratio",
        float | None,
        opts.option("--range-ratio", "random: lengths len x [1 -/+ r].", _C),
    ),
    Opt("prefix_len", int | None, opts.option("--prefix-len", "random: shared prefix tokens.", _C)),
    Opt("as_json", bool, opts.as_json("Print summary JSON.", _R), False),
    Opt(
        "json_format",
        str,
        typer.Option(
            "--json-format",
            help="--json schema: servesim | vllm-bench (vllm bench serve's result JSON).",
            rich_help_panel=_R,
        ),
        "servesim",
    ),
    Opt("calibration", str | None, opts.calibration(_H)),
    Opt(
        "progress",
        bool,
        typer.Option("--progress", help="Show a progress bar.", rich_help_panel=_R),
        False,
    ),
)


@with_options(*SIMULATE_OPTIONS)
def simulate_cmd(**params: Any) -> None:
    """Simulate one deployment on one workload and print its summary.

    With no arguments: Llama-3.1-8B on one H100, vLLM's scheduler, ShareGPT-like traffic.
    With --out DIR it also writes DIR/report.html, a self-contained page of charts.
    """
    opts.check_flags(params)
    json_format = params["json_format"]
    if json_format not in ("servesim", "vllm-bench"):
        raise ConfigError("--json-format", json_format, "must be servesim or vllm-bench")
    if params["trace"] is not None and params["preset"] is not None:
        raise ConfigError(
            "--workload",
            params["preset"],
            "and --trace both given: a trace replays its own requests",
        )
    # Every writer is checked before the run, so a missing package does not cost a run.
    outputs = check_outputs(params["out"], params["out_format"], params["trace_out"])
    make_out_folder(params["out"])
    opts.apply_calibration(params["calibration"])
    cfg = build_config(
        params["config"], _flags(params), workload_flags(params), client_flags(params)
    )
    result = _run(cfg, params["progress"])
    if result.records.requests.size == 0:
        raise ConfigError(
            "--duration-s" if cfg.duration_s is not None else "workload",
            cfg.duration_s,
            "no request arrived before the end of arrivals: nothing was simulated",
        )
    _print(result, params["as_json"], json_format)
    for note in write_files(result, outputs):
        err_console.print(note, markup=False, highlight=False, soft_wrap=True)


def _print(result: Result, as_json: bool, json_format: str) -> None:
    """The summary on stdout: JSON (servesim's or vllm bench serve's schema) or tables."""
    if as_json and json_format == "vllm-bench":
        print(json.dumps(result.to_vllm_bench(), indent=2, sort_keys=True))
    elif as_json:
        print(result.to_json(), end="")
    else:
        from servesim.cli.simulate_render import render  # rich.table: not for --json

        render(result)


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
