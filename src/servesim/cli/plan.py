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
from typing import Annotated

import typer

from servesim.api import plan, slo_criterion
from servesim.cli import options as opts
from servesim.cli.capacity import capacity_cmd, check_positive, check_tol, criterion_from_flags
from servesim.cli.common import console
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


def plan_cmd(
    ctx: typer.Context,
    config: Annotated[Path | None, opts.config(_D, _PLAN_CONFIG)] = None,
    model: Annotated[str | None, opts.model(_D)] = None,
    gpus: Annotated[
        str,
        opts.option("--gpus", "GPU types and counts available, e.g. h100-sxm:8,a100-80gb:8.", _D),
    ] = "h100-sxm:8",
    workload: Annotated[str | None, opts.workload(_D)] = None,
    trace: Annotated[Path | None, opts.option("--trace", "Replay a trace file.", _D)] = None,
    trace_format: Annotated[
        str | None, opts.option("--trace-format", "Trace format (default: detect).", _D)
    ] = None,
    seed: Annotated[int | None, opts.seed(_D)] = None,
    engine: Annotated[str | None, opts.engine(_D)] = None,
    slo_ttft_p99: Annotated[float | None, opts.slo_ttft_p99(_L)] = None,
    slo_tpot_p99: Annotated[float | None, opts.slo_tpot_p99(_L)] = None,
    min_attainment: Annotated[float | None, opts.min_attainment(_L)] = None,
    objective: Annotated[
        str | None,
        opts.option(
            "--objective",
            "goodput_per_dollar (default without --target-rate), cost_at_rate (default with "
            "it), energy_per_token or latency: see the list above.",
            _L,
        ),
    ] = None,
    target_rate: Annotated[
        float | None,
        opts.option(
            "--target-rate",
            "Rate to serve, req/s: every plan is simulated at it and ranked by the objective "
            "there (and the rate --mix splits).",
            _L,
        ),
    ] = None,
    max_gpus: Annotated[
        int | None, opts.option("--max-gpus", "GPU budget per deployment.", _S)
    ] = None,
    budget: Annotated[
        float | None, opts.option("--budget", "Dollar budget per hour per deployment.", _S)
    ] = None,
    tp: Annotated[str, opts.option("--tp", "TP degrees to try (1,2,4,8).", _S)] = "1,2,4,8",
    pp: Annotated[str, opts.option("--pp", "PP degrees to try (1,2).", _S)] = "1,2",
    ep: Annotated[
        str, opts.option("--ep", "EP degrees to try for MoE models (1,2,4,8).", _S)
    ] = "1,2,4,8",
    dp_attention: Annotated[
        str,
        opts.option("--dp-attention", "DP-attention ranks to try, MoE (1: none; e.g. 1,8).", _S),
    ] = "1",
    all2all_backends: Annotated[
        str,
        opts.option(
            "--all2all-backends",
            "DP-attention token exchange to try (vLLM --all2all-backend: "
            "allgather_reducescatter, naive, deepep_high_throughput, deepep_low_latency, pplx).",
            _S,
        ),
    ] = "allgather_reducescatter",
    dense_mlp: Annotated[
        str,
        opts.option(
            "--dense-mlp",
            "DP-attention: where a MoE model's dense MLP layers run, to try (auto: the "
            "engine's; rank: vLLM; group, replicated: SGLang's default, --moe-dense-tp-size 1).",
            _S,
        ),
    ] = "auto",
    max_replicas: Annotated[int | None, opts.option("--max-replicas", "Replica cap.", _S)] = None,
    dtypes: Annotated[str, opts.option("--dtypes", "Weight formats (bf16).", _S)] = "bf16",
    kv_dtypes: Annotated[str, opts.option("--kv-dtypes", "KV formats (auto).", _S)] = "auto",
    max_num_seqs: Annotated[
        str, opts.option("--max-num-seqs", "max_num_seqs values (256).", _S)
    ] = "256",
    max_num_batched_tokens: Annotated[
        str, opts.option("--max-num-batched-tokens", "Chunked-prefill budgets (2048).", _S)
    ] = "2048",
    chunked_prefill: Annotated[
        str,
        opts.option(
            "--chunked-prefill", "auto (vLLM's default), off, on, both (off,on) or all.", _S
        ),
    ] = "auto",
    disagg: Annotated[
        bool, opts.option("--disagg", "Also try prefill/decode disaggregation.", _S)
    ] = False,
    same_hardware_pools: Annotated[
        bool,
        opts.option(
            "--same-hardware-pools",
            "Disaggregated plans: prefill and decode pools share GPU type and TP.",
            _S,
        ),
    ] = False,
    per_phase_knobs: Annotated[
        bool,
        opts.option(
            "--per-phase-knobs",
            "Disaggregated plans: the prefill pool also takes its own PP, dtype and scheduler "
            "knobs (of --pp, --dtypes and the scheduler flags).",
            _S,
        ),
    ] = False,
    placements: Annotated[
        str,
        opts.option(
            "--placements",
            "Disaggregated replica placements: pack (pools share servers and NVLink where "
            "they fit), spread (one server per replica: KV crosses the network), or both.",
            _S,
        ),
    ] = "pack",
    networks: Annotated[
        str,
        opts.option("--networks", "Inter-node networks to try for disaggregated plans (auto).", _S),
    ] = "auto",
    routers: Annotated[
        str, opts.option("--routers", "Routers to try with >1 replica (round_robin).", _S)
    ] = "round_robin",
    requests_per_replica: Annotated[
        int, opts.option("--requests-per-replica", "Requests per replica per probe (1000).", _X)
    ] = DEFAULT_REQUESTS_PER_REPLICA,
    tol: Annotated[float, opts.tol(_X)] = 0.05,
    exhaustive: Annotated[
        bool, opts.option("--exhaustive", "Simulate every feasible plan (no bound pruning).", _X)
    ] = False,
    bracketing: Annotated[
        bool,
        opts.option(
            "--bracketing",
            "Short probes bracket each capacity searched from scratch before full-length "
            "ones (capacities move within --tol; saves CPU on some multi-replica plans only).",
            _X,
        ),
    ] = False,
    workers: Annotated[
        int | None, opts.option("--workers", "Worker processes (all cores).", _X)
    ] = None,
    inline: Annotated[bool, opts.option("--inline", "Run in this process.", _X)] = False,
    use_ray: Annotated[bool, opts.option("--ray", "Run on Ray.", _X)] = False,
    ray_address: Annotated[
        str | None, opts.option("--ray-address", "Ray cluster address.", _X)
    ] = None,
    store: Annotated[
        Path | None, opts.option("--store", "DuckDB results file (resumes).", _X)
    ] = None,
    mix: Annotated[bool, opts.option("--mix", "Mélange GPU mix for --target-rate.", _X)] = False,
    top: Annotated[int, opts.option("--top", "Plans shown (10).", _X)] = 10,
    out: Annotated[Path | None, opts.option("--out", "Write the winner's YAML here.", _X)] = None,
    quiet: Annotated[bool, opts.option("--quiet", "No progress bar.", _X)] = False,
    report_file: Annotated[
        Path | None,
        opts.option("--report", "Write the fronts, winner and left-outs as HTML here.", _X),
    ] = None,
    calibration: Annotated[str | None, opts.calibration(_X)] = None,
) -> None:
    """Search deployments; print the ranked plans, the Pareto front and the winner's config."""
    if ctx.invoked_subcommand is not None:
        return
    opts.apply_calibration(calibration)
    for flag, value in (("--max-gpus", max_gpus), ("--workers", workers), ("--top", top)):
        check_positive(flag, value, integer=True)
    check_positive("--requests-per-replica", requests_per_replica, integer=True)
    check_positive("--max-replicas", max_replicas, integer=True)
    check_positive("--budget", budget)
    check_tol(tol)
    check_report_file(report_file)
    # The engine's cache defaults (prefix caching, memory fraction) reach the scenario.
    flags = {"model": model, "seed": seed, "hardware.engine": engine}
    wl = {"preset": workload, "arrival": None, "rate": None, "cv": None}
    cfg = build_config(config, flags, {**wl, "trace": trace, "trace_format": trace_format})
    engine_name = cfg.hardware.engine
    criterion = slo_criterion(
        cfg, ttft_p99_s=slo_ttft_p99, tpot_p99_s=slo_tpot_p99, min_attainment=min_attainment
    )
    criterion = criterion_from_flags(criterion.ttft_p99_s, criterion.tpot_p99_s, min_attainment)
    scenario = plan_scenario(cfg, criterion, requests_per_replica)
    space = search_space(dict(locals()))
    options = search_options(objective, target_rate, tol, exhaustive, mix, bracketing=bracketing)
    executor = plan_executor(inline, workers, use_ray, ray_address)
    profile = resolve_engine(engine_name)
    console.print(f"engine: {profile.name} ({profile.version})", markup=False, highlight=False)
    settings = plan_settings(scenario, options, gpus)
    digest = begin_record(store, scenario, options, settings)
    try:
        report = run_with_progress(
            lambda cb: plan(
                scenario, space, options=options, executor=executor, store=store, on_progress=cb
            ),
            options.objective,
            quiet=quiet,
            store=store,
            on_stop=(
                (lambda last: stopped_record(store, digest, options, settings, last))
                if store is not None
                else None
            ),
        )
        finished_record(store, report, options, settings)
        render_report(report, scenario, options, top, executor.name)
        if report_file is not None:  # written before a refusal: its left-out table says why
            write_report(report, options, settings, report_file)
        refuse_if_nothing_fits(report)
        if report.ranked:
            print_winner(scenario, report, out, engine_name)
        if mix:
            print_mix(scenario, report, space, target_rate, executor)
    finally:
        executor.close()
