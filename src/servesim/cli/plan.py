"""CLI commands of the planner: ``servesim capacity``, ``servesim plan`` and ``plan show``.

``capacity`` finds the highest rate one deployment sustains within an SLO. ``plan`` searches
deployments (GPU types and counts, TP/PP, replicas, dtypes, scheduler knobs, optionally
prefill/decode disaggregation), prints the ranked plans, the Pareto front, the winner's
SimConfig YAML and its launch line in the chosen engine's CLI (``--engine``: ``vllm serve``,
``python -m sglang.launch_server``, ``trtllm-serve``, naming the version); ``--mix`` adds the
Mélange GPU mix for a target rate. ``plan show STORE`` prints a stored search.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from servesim.api import plan, slo_criterion
from servesim.cli import options as opts
from servesim.cli.capacity import capacity_cmd, check_positive, check_tol, criterion_from_flags
from servesim.cli.common import console
from servesim.cli.params import REQUIRED, Opt, with_options
from servesim.cli.plan_output import print_mix, print_winner, show_cmd
from servesim.cli.plan_pages import (
    begin_record,
    finished_record,
    plan_settings,
    stopped_record,
    write_report,
)
from servesim.cli.plan_render import refuse_if_nothing_fits, render_report, run_with_progress
from servesim.cli.plan_setup import (
    plan_executor,
    plan_scenario,
    search_options,
    search_space,
)
from servesim.cli.report import check_report_file
from servesim.cli.simulate_config import build_config
from servesim.engine.profiles import resolve_engine
from servesim.planner.rank import OBJECTIVE_HELP
from servesim.planner.scenario import DEFAULT_REQUESTS_PER_REPLICA

if TYPE_CHECKING:
    from servesim.planner.executors import Executor
    from servesim.planner.scenario import Scenario
    from servesim.planner.search import SearchOptions
    from servesim.planner.space import SearchSpace

_D = "Deployment"
_L = "SLO"
_S = "Search space"
_X = "Execution"
_PROBE_REQUESTS = "Requests per probe (default 1000)."
_PLAN_CONFIG = "Base SimConfig YAML (model, workload, cache, seed)."
# One line per objective (click keeps a paragraph after "\b" as written).
_PLAN_HELP = "Search deployments for the best one within an SLO.\n\n\b\nObjectives:\n" + "\n".join(
    f"  {name}: {text}" for name, text in OBJECTIVE_HELP.items()
)


def register(app: typer.Typer) -> None:
    """Add ``capacity`` and ``plan`` (with ``plan show``) to the servesim app."""
    app.command("capacity")(capacity_cmd)
    plan_app = typer.Typer(help=_PLAN_HELP, add_completion=False)
    plan_app.callback(invoke_without_command=True)(plan_cmd)
    plan_app.command("show")(show_cmd)
    app.add_typer(plan_app, name="plan")


PLAN_OPTIONS: tuple[Opt, ...] = (
    Opt("ctx", typer.Context, None, REQUIRED),
    Opt("config", Path | None, opts.config(_D, _PLAN_CONFIG)),
    Opt("model", str | None, opts.model(_D)),
    Opt(
        "gpus",
        str,
        opts.option("--gpus", "GPU types and counts available, e.g. h100-sxm:8,a100-80gb:8.", _D),
        "h100-sxm:8",
    ),
    Opt("workload", str | None, opts.workload(_D)),
    Opt("trace", Path | None, opts.option("--trace", "Replay a trace file.", _D)),
    Opt(
        "trace_format",
        str | None,
        opts.option("--trace-format", "Trace format (default: detect).", _D),
    ),
    Opt("seed", int | None, opts.seed(_D)),
    Opt("engine", str | None, opts.engine(_D)),
    Opt("slo_ttft_p99", float | None, opts.slo_ttft_p99(_L)),
    Opt("slo_tpot_p99", float | None, opts.slo_tpot_p99(_L)),
    Opt("min_attainment", float | None, opts.min_attainment(_L)),
    Opt(
        "objective",
        str | None,
        opts.option(
            "--objective",
            "goodput_per_dollar (default without --target-rate), cost_at_rate (default with "
            "it), energy_per_token or latency: see the list above.",
            _L,
        ),
    ),
    Opt(
        "target_rate",
        float | None,
        opts.option(
            "--target-rate",
            "Rate to serve, req/s: every plan is simulated at it and ranked by the objective "
            "there (and the rate --mix splits).",
            _L,
        ),
    ),
    Opt("max_gpus", int | None, opts.option("--max-gpus", "GPU budget per deployment.", _S)),
    Opt(
        "budget",
        float | None,
        opts.option("--budget", "Dollar budget per hour per deployment.", _S),
    ),
    Opt("tp", str, opts.option("--tp", "TP degrees to try (1,2,4,8).", _S), "1,2,4,8"),
    Opt("pp", str, opts.option("--pp", "PP degrees to try (1,2).", _S), "1,2"),
    Opt(
        "ep", str, opts.option("--ep", "EP degrees to try for MoE models (1,2,4,8).", _S), "1,2,4,8"
    ),
    Opt(
        "dp_attention",
        str,
        opts.option("--dp-attention", "DP-attention ranks to try, MoE (1: none; e.g. 1,8).", _S),
        "1",
    ),
    Opt(
        "all2all_backends",
        str,
        opts.option(
            "--all2all-backends",
            "DP-attention token exchange to try (vLLM --all2all-backend: "
            "allgather_reducescatter, naive, deepep_high_throughput, deepep_low_latency, pplx).",
            _S,
        ),
        "allgather_reducescatter",
    ),
    Opt(
        "dense_mlp",
        str,
        opts.option(
            "--dense-mlp",
            "DP-attention: where a MoE model's dense MLP layers run, to try (auto: the "
            "engine's; rank: vLLM; group, replicated: SGLang's default, --moe-dense-tp-size 1).",
            _S,
        ),
        "auto",
    ),
    Opt("max_replicas", int | None, opts.option("--max-replicas", "Replica cap.", _S)),
    Opt("dtypes", str, opts.option("--dtypes", "Weight formats (bf16).", _S), "bf16"),
    Opt("kv_dtypes", str, opts.option("--kv-dtypes", "KV formats (auto).", _S), "auto"),
    Opt(
        "max_num_seqs", str, opts.option("--max-num-seqs", "max_num_seqs values (256).", _S), "256"
    ),
    Opt(
        "max_num_batched_tokens",
        str,
        opts.option("--max-num-batched-tokens", "Chunked-prefill budgets (2048).", _S),
        "2048",
    ),
    Opt(
        "chunked_prefill",
        str,
        opts.option(
            "--chunked-prefill", "auto (vLLM's default), off, on, both (off,on) or all.", _S
        ),
        "auto",
    ),
    Opt(
        "disagg",
        bool,
        opts.option("--disagg", "Also try prefill/decode disaggregation.", _S),
        False,
    ),
    Opt(
        "same_hardware_pools",
        bool,
        opts.option(
            "--same-hardware-pools",
            "Disaggregated plans: prefill and decode pools share GPU type and TP.",
            _S,
        ),
        False,
    ),
    Opt(
        "per_phase_knobs",
        bool,
        opts.option(
            "--per-phase-knobs",
            "Disaggregated plans: the prefill pool also takes its own PP, dtype and scheduler "
            "knobs (of --pp, --dtypes and the scheduler flags).",
            _S,
        ),
        False,
    ),
    Opt(
        "placements",
        str,
        opts.option(
            "--placements",
            "Disaggregated replica placements: pack (pools share servers and NVLink where "
            "they fit), spread (one server per replica: KV crosses the network), or both.",
            _S,
        ),
        "pack",
    ),
    Opt(
        "networks",
        str,
        opts.option("--networks", "Inter-node networks to try for disaggregated plans (auto).", _S),
        "auto",
    ),
    Opt(
        "routers",
        str,
        opts.option("--routers", "Routers to try with >1 replica (round_robin).", _S),
        "round_robin",
    ),
    Opt(
        "requests_per_replica",
        int,
        opts.option("--requests-per-replica", "Requests per replica per probe (1000).", _X),
        DEFAULT_REQUESTS_PER_REPLICA,
    ),
    Opt("tol", float, opts.tol(_X), 0.05),
    Opt(
        "exhaustive",
        bool,
        opts.option("--exhaustive", "Simulate every feasible plan (no bound pruning).", _X),
        False,
    ),
    Opt(
        "bracketing",
        bool,
        opts.option(
            "--bracketing",
            "Short probes bracket each capacity searched from scratch before full-length "
            "ones (capacities move within --tol; saves CPU on some multi-replica plans only).",
            _X,
        ),
        False,
    ),
    Opt("workers", int | None, opts.option("--workers", "Worker processes (all cores).", _X)),
    Opt("inline", bool, opts.option("--inline", "Run in this process.", _X), False),
    Opt("use_ray", bool, opts.option("--ray", "Run on Ray.", _X), False),
    Opt("ray_address", str | None, opts.option("--ray-address", "Ray cluster address.", _X)),
    Opt("store", Path | None, opts.option("--store", "DuckDB results file (resumes).", _X)),
    Opt("mix", bool, opts.option("--mix", "Mélange GPU mix for --target-rate.", _X), False),
    Opt("top", int, opts.option("--top", "Plans shown (10).", _X), 10),
    Opt("out", Path | None, opts.option("--out", "Write the winner's YAML here.", _X)),
    Opt("quiet", bool, opts.option("--quiet", "No progress bar.", _X), False),
    Opt(
        "report_file",
        Path | None,
        opts.option("--report", "Write the fronts, winner and left-outs as HTML here.", _X),
    ),
    Opt("calibration", str | None, opts.calibration(_X)),
)


@with_options(*PLAN_OPTIONS)
def plan_cmd(**params: Any) -> None:
    """Search deployments; print the ranked plans, the Pareto front and the winner's config."""
    if params["ctx"].invoked_subcommand is not None:
        return
    opts.apply_calibration(params["calibration"])
    _check_flags(params)
    # The engine's cache defaults (prefix caching, memory fraction) reach the scenario.
    flags = {"model": params["model"], "seed": params["seed"], "hardware.engine": params["engine"]}
    wl = {"preset": params["workload"], "arrival": None, "rate": None, "cv": None}
    trace = {"trace": params["trace"], "trace_format": params["trace_format"]}
    cfg = build_config(params["config"], flags, {**wl, **trace})
    min_attainment = params["min_attainment"]
    criterion = slo_criterion(
        cfg,
        ttft_p99_s=params["slo_ttft_p99"],
        tpot_p99_s=params["slo_tpot_p99"],
        min_attainment=min_attainment,
    )
    criterion = criterion_from_flags(criterion.ttft_p99_s, criterion.tpot_p99_s, min_attainment)
    scenario = plan_scenario(cfg, criterion, params["requests_per_replica"])
    space = search_space(params)
    options = search_options(
        *(params[key] for key in ("objective", "target_rate", "tol", "exhaustive", "mix")),
        bracketing=params["bracketing"],
    )
    executor = plan_executor(
        *(params[key] for key in ("inline", "workers", "use_ray", "ray_address"))
    )
    profile = resolve_engine(cfg.hardware.engine)
    console.print(f"engine: {profile.name} ({profile.version})", markup=False, highlight=False)
    try:
        _search(params, scenario, space, options, executor, cfg.hardware.engine)
    finally:
        executor.close()


def _check_flags(params: dict[str, Any]) -> None:
    """Refuse a count, budget, tolerance or page path out of range before any work."""
    for flag in ("--max-gpus", "--workers", "--top", "--requests-per-replica", "--max-replicas"):
        check_positive(flag, params[flag[2:].replace("-", "_")], integer=True)
    check_positive("--budget", params["budget"])
    check_tol(params["tol"])
    check_report_file(params["report_file"])


def _search(
    params: dict[str, Any],
    scenario: Scenario,
    space: SearchSpace,
    options: SearchOptions,
    executor: Executor,
    engine_name: str,
) -> None:
    """Run the search (recorded in ``--store``), print it, write its page and the winner."""
    store = params["store"]
    settings = plan_settings(scenario, options, params["gpus"])
    digest = begin_record(store, scenario, options, settings)
    report = run_with_progress(
        lambda cb: plan(
            scenario, space, options=options, executor=executor, store=store, on_progress=cb
        ),
        options.objective,
        quiet=params["quiet"],
        store=store,
        on_stop=(
            (lambda last: stopped_record(store, digest, options, settings, last))
            if store is not None
            else None
        ),
    )
    finished_record(store, report, options, settings)
    render_report(report, scenario, options, params["top"], executor.name)
    if params["report_file"] is not None:  # written before a refusal: its left-out table says why
        write_report(report, options, settings, params["report_file"])
    refuse_if_nothing_fits(report)
    if report.ranked:
        print_winner(scenario, report, params["out"], engine_name)
    if params["mix"]:
        print_mix(scenario, report, space, params["target_rate"], executor)
