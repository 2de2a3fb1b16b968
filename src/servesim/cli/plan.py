"""CLI commands of the planner: ``servesim capacity``, ``servesim plan`` and ``plan show``.

``capacity`` finds the highest rate one deployment sustains within an SLO. ``plan`` searches
deployments (GPU types and counts, TP/PP, replicas, dtypes, scheduler knobs, optionally
prefill/decode disaggregation), prints the ranked plans, the Pareto front, the winner's
SimConfig YAML and its vLLM launch line; ``--mix`` adds the Mélange GPU mix for a target
rate. ``plan show STORE`` prints a stored search.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from servesim.api import CapacityReport, capacity, plan, plan_config, slo_criterion
from servesim.cli.common import console, err_console, print_json
from servesim.cli.simulate import build_config
from servesim.config import SimConfig
from servesim.core.errors import ConfigError
from servesim.planner.deploy import vllm_command
from servesim.planner.executors import Executor, make_executor
from servesim.planner.mix import MixReport, mix_candidates, plan_mix
from servesim.planner.present import mix_rows, plan_rows, status_rows
from servesim.planner.rank import pareto_front, rank
from servesim.planner.scenario import DEFAULT_REQUESTS_PER_REPLICA, Scenario, SLOCriterion
from servesim.planner.search import SearchOptions, SearchProgress, SearchReport
from servesim.planner.space import SearchSpace, parse_gpus, parse_ints, scheduler_grid
from servesim.planner.store import PlanStore

_D = "Deployment"
_L = "SLO"
_S = "Search space"
_X = "Execution"


def _opt(help_text: str, panel: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel=panel, show_default=False)


def _criterion(ttft: float | None, tpot: float | None, attainment: float | None) -> SLOCriterion:
    if ttft is None and tpot is None and attainment is None:
        raise ConfigError("--slo-ttft-p99", None, "give at least one SLO target")
    if attainment is not None and not 0 < attainment <= 1:
        raise ConfigError("--min-attainment", attainment, "must be in (0, 1]")
    return SLOCriterion(ttft_p99_s=ttft, tpot_p99_s=tpot, min_attainment=attainment)


def _executor(inline: bool, workers: int | None, use_ray: bool, address: str | None) -> Executor:
    if use_ray or address is not None:
        return make_executor("ray", num_workers=workers, ray_address=address)
    return make_executor("inline" if inline else "process", num_workers=workers)


def _run_with_progress(run: Any, quiet: bool) -> SearchReport:
    if quiet:
        return run(None)
    columns = (
        TextColumn("planning"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total} plans {task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("", total=0)

        def on_progress(p: SearchProgress) -> None:
            best = p.best.plan.label() if p.best is not None else "-"
            bar.update(
                task,
                total=p.num_plans,
                completed=p.num_done,
                description=f"(pruned {p.num_pruned}, infeasible {p.num_infeasible}, "
                f"failed {p.num_failed}) best: {best}",
            )

        return run(on_progress)


def _scenario(cfg: SimConfig, criterion: SLOCriterion, requests_per_replica: int) -> Scenario:
    return Scenario(
        model=cfg.model,
        workload=cfg.effective_workload().model_copy(update={"num_requests": None}),
        criterion=criterion,
        cache=cfg.effective_cache(),
        seed=cfg.seed,
        requests_per_replica=requests_per_replica,
    )


def register(app: typer.Typer) -> None:
    """Add ``capacity`` and ``plan`` (with ``plan show``) to the servesim app."""
    app.command("capacity")(capacity_cmd)
    plan_app = typer.Typer(
        help="Search deployments for the best one within an SLO.", add_completion=False
    )
    plan_app.callback(invoke_without_command=True)(plan_cmd)
    plan_app.command("show")(show_cmd)
    app.add_typer(plan_app, name="plan")


def capacity_cmd(
    config: Annotated[Path | None, _opt("YAML config; flags override it.", _D, "--config")] = None,
    model: Annotated[str | None, _opt("Model name or config path.", _D, "--model")] = None,
    gpu: Annotated[str | None, _opt("GPU name.", _D, "--gpu")] = None,
    tp: Annotated[int | None, _opt("Tensor-parallel degree.", _D, "--tp")] = None,
    pp: Annotated[int | None, _opt("Pipeline-parallel degree.", _D, "--pp")] = None,
    dtype: Annotated[str | None, _opt("Weight format.", _D, "--dtype")] = None,
    kv_dtype: Annotated[str | None, _opt("KV cache format.", _D, "--kv-dtype")] = None,
    replicas: Annotated[int | None, _opt("Replicas.", _D, "--replicas")] = None,
    disagg: Annotated[str | None, _opt("Prefill/decode pools, e.g. 1P:3D.", _D, "--disagg")] = None,
    max_num_seqs: Annotated[int | None, _opt("Sequences per batch.", _D, "--max-num-seqs")] = None,
    max_num_batched_tokens: Annotated[
        int | None, _opt("Token budget per iteration.", _D, "--max-num-batched-tokens")
    ] = None,
    chunked_prefill: Annotated[
        bool | None, _opt("vLLM chunked prefill.", _D, "--chunked-prefill/--no-chunked-prefill")
    ] = None,
    workload: Annotated[str | None, _opt("Workload preset.", _D, "--workload")] = None,
    num_requests: Annotated[
        int | None, _opt("Requests per probe (default 1000).", _D, "--num-requests")
    ] = None,
    seed: Annotated[int | None, _opt("Random seed.", _D, "--seed")] = None,
    slo_ttft_p99: Annotated[float | None, _opt("p99 TTFT target, s.", _L, "--slo-ttft-p99")] = None,
    slo_tpot_p99: Annotated[float | None, _opt("p99 TPOT target, s.", _L, "--slo-tpot-p99")] = None,
    min_attainment: Annotated[
        float | None, _opt("Fraction of requests within SLO, e.g. 0.9.", _L, "--min-attainment")
    ] = None,
    start_rate: Annotated[float | None, _opt("First rate probed.", _X, "--start-rate")] = None,
    tol: Annotated[float, _opt("Relative tolerance (0.05).", _X, "--tol")] = 0.05,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Highest arrival rate at which one deployment holds the SLO (bracketing + bisection)."""
    flags = {
        "model": model,
        "hardware.gpu": gpu,
        "hardware.tp": tp,
        "hardware.pp": pp,
        "hardware.dtype": dtype,
        "hardware.kv_dtype": kv_dtype,
        "replicas": replicas,
        "disagg": disagg,
        "scheduler.max_num_seqs": max_num_seqs,
        "scheduler.max_num_batched_tokens": max_num_batched_tokens,
        "scheduler.enable_chunked_prefill": chunked_prefill,
        "num_requests": num_requests,
        "seed": seed,
    }
    wl = {"preset": workload, "arrival": None, "rate": None, "cv": None}
    cfg = build_config(config, flags, {**wl, "trace": None, "trace_format": None})
    criterion = slo_criterion(
        cfg, ttft_p99_s=slo_ttft_p99, tpot_p99_s=slo_tpot_p99, min_attainment=min_attainment
    )
    if criterion.ttft_p99_s is None and criterion.tpot_p99_s is None and min_attainment is None:
        raise ConfigError("--slo-ttft-p99", None, "give an SLO target (or slo: in the config)")
    report = capacity(cfg, criterion, start_rate_per_s=start_rate, rel_tol=tol)
    if as_json:
        print_json(
            {
                "rate_per_s": report.rate_per_s,
                "rate_per_gpu": report.rate_per_gpu,
                "rate_per_dollar_hour": report.rate_per_dollar_hour,
                "limiting": report.limiting,
                "probes": [
                    {"rate_per_s": p.rate_per_s, "holds": p.holds, "limiting": p.limiting}
                    for p in report.search.probes
                ],
            }
        )
        return
    render_capacity(report)


def plan_cmd(
    ctx: typer.Context,
    config: Annotated[
        Path | None, _opt("Base SimConfig YAML (model, workload, cache, seed).", _D, "--config")
    ] = None,
    model: Annotated[str | None, _opt("Model name or config path.", _D, "--model")] = None,
    gpus: Annotated[
        str, _opt("GPU types and counts available, e.g. h100-sxm:8,a100-80gb:8.", _D, "--gpus")
    ] = "h100-sxm:8",
    workload: Annotated[str | None, _opt("Workload preset (sharegpt).", _D, "--workload")] = None,
    seed: Annotated[int | None, _opt("Random seed.", _D, "--seed")] = None,
    slo_ttft_p99: Annotated[float | None, _opt("p99 TTFT target, s.", _L, "--slo-ttft-p99")] = None,
    slo_tpot_p99: Annotated[float | None, _opt("p99 TPOT target, s.", _L, "--slo-tpot-p99")] = None,
    min_attainment: Annotated[
        float | None, _opt("Fraction within SLO, e.g. 0.9.", _L, "--min-attainment")
    ] = None,
    objective: Annotated[
        str,
        _opt("goodput_per_dollar, cost_at_rate, energy_per_token or latency.", _L, "--objective"),
    ] = "goodput_per_dollar",
    target_rate: Annotated[
        float | None, _opt("Rate to serve (cost_at_rate, --mix), req/s.", _L, "--target-rate")
    ] = None,
    max_gpus: Annotated[int | None, _opt("GPU budget per deployment.", _S, "--max-gpus")] = None,
    budget: Annotated[
        float | None, _opt("Dollar budget per hour per deployment.", _S, "--budget")
    ] = None,
    tp: Annotated[str, _opt("TP degrees to try (1,2,4,8).", _S, "--tp")] = "1,2,4,8",
    pp: Annotated[str, _opt("PP degrees to try (1,2).", _S, "--pp")] = "1,2",
    max_replicas: Annotated[int | None, _opt("Replica cap.", _S, "--max-replicas")] = None,
    dtypes: Annotated[str, _opt("Weight formats (bf16).", _S, "--dtypes")] = "bf16",
    kv_dtypes: Annotated[str, _opt("KV formats (auto).", _S, "--kv-dtypes")] = "auto",
    max_num_seqs: Annotated[str, _opt("max_num_seqs values (256).", _S, "--max-num-seqs")] = "256",
    max_num_batched_tokens: Annotated[
        str, _opt("Chunked-prefill budgets (2048).", _S, "--max-num-batched-tokens")
    ] = "2048",
    chunked_prefill: Annotated[
        str, _opt("auto (vLLM's default), off, on, both (off,on) or all.", _S, "--chunked-prefill")
    ] = "auto",
    disagg: Annotated[
        bool, _opt("Also try prefill/decode disaggregation.", _S, "--disagg")
    ] = False,
    routers: Annotated[
        str, _opt("Routers to try with >1 replica (round_robin).", _S, "--routers")
    ] = "round_robin",
    requests_per_replica: Annotated[
        int, _opt("Requests per replica per probe (1000).", _X, "--requests-per-replica")
    ] = DEFAULT_REQUESTS_PER_REPLICA,
    tol: Annotated[float, _opt("Capacity tolerance (0.05).", _X, "--tol")] = 0.05,
    exhaustive: Annotated[
        bool, _opt("Simulate every feasible plan (no bound pruning).", _X, "--exhaustive")
    ] = False,
    workers: Annotated[int | None, _opt("Worker processes (all cores).", _X, "--workers")] = None,
    inline: Annotated[bool, _opt("Run in this process.", _X, "--inline")] = False,
    use_ray: Annotated[bool, _opt("Run on Ray.", _X, "--ray")] = False,
    ray_address: Annotated[str | None, _opt("Ray cluster address.", _X, "--ray-address")] = None,
    store: Annotated[Path | None, _opt("DuckDB results file (resumes).", _X, "--store")] = None,
    mix: Annotated[bool, _opt("Mélange GPU mix for --target-rate.", _X, "--mix")] = False,
    top: Annotated[int, _opt("Plans shown (10).", _X, "--top")] = 10,
    out: Annotated[Path | None, _opt("Write the winner's YAML here.", _X, "--out")] = None,
    quiet: Annotated[bool, _opt("No progress bar.", _X, "--quiet")] = False,
) -> None:
    """Search deployments; print the ranked plans, the Pareto front and the winner's config."""
    if ctx.invoked_subcommand is not None:
        return
    flags = {"model": model, "seed": seed}
    wl = {"preset": workload, "arrival": None, "rate": None, "cv": None}
    cfg = build_config(config, flags, {**wl, "trace": None, "trace_format": None})
    criterion = slo_criterion(
        cfg, ttft_p99_s=slo_ttft_p99, tpot_p99_s=slo_tpot_p99, min_attainment=min_attainment
    )
    criterion = _criterion(criterion.ttft_p99_s, criterion.tpot_p99_s, min_attainment)
    scenario = _scenario(cfg, criterion, requests_per_replica)
    chunk = {
        "auto": (None,),
        "off": (False,),
        "on": (True,),
        "both": (False, True),
        "all": (None, False, True),
    }.get(chunked_prefill)
    if chunk is None:
        raise ConfigError(
            "--chunked-prefill", chunked_prefill, "must be auto, off, on, both or all"
        )
    kv = tuple(None if k == "auto" else k for k in kv_dtypes.split(",") if k.strip())
    space = SearchSpace(
        gpus=parse_gpus(gpus),
        max_total_gpus=max_gpus,
        max_price_per_hour_usd=budget,
        tp_options=parse_ints(tp, "--tp"),
        pp_options=parse_ints(pp, "--pp"),
        max_replicas=max_replicas,
        dtypes=tuple(d.strip() for d in dtypes.split(",") if d.strip()),
        kv_dtypes=kv,
        schedulers=scheduler_grid(
            parse_ints(max_num_seqs, "--max-num-seqs"),
            (None, *parse_ints(max_num_batched_tokens, "--max-num-batched-tokens")),
            chunk,
        ),
        disaggregated=disagg,
        routers=tuple(r.strip() for r in routers.split(",") if r.strip()),
    )
    options = SearchOptions(
        objective=objective, target_rate_per_s=target_rate, rel_tol=tol, exhaustive=exhaustive
    )
    executor = _executor(inline, workers, use_ray, ray_address)
    try:
        report = _run_with_progress(
            lambda cb: plan(
                scenario, space, options=options, executor=executor, store=store, on_progress=cb
            ),
            quiet,
        )
        render_report(report, scenario, options, top, executor.name)
        if report.ranked:
            _winner(scenario, report, out)
        if mix:
            _mix(scenario, report, space, target_rate, executor)
    finally:
        executor.close()


def _winner(scenario: Scenario, report: SearchReport, out: Path | None) -> None:
    best = report.ranked[0]
    cfg = plan_config(scenario, best.plan, best.capacity_per_s)
    text = yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        console.print(f"\nwinner's config written to {out} (servesim simulate --config {out})")
    else:
        console.print("\n[bold]Winner's config[/] (servesim simulate --config FILE):")
        console.print(text, markup=False, highlight=False)
    console.print("[bold]vLLM launch:[/]")
    console.print(vllm_command(scenario, best.plan), markup=False, highlight=False, soft_wrap=True)


def _mix(
    scenario: Scenario,
    report: SearchReport,
    space: SearchSpace,
    target_rate: float | None,
    executor: Executor,
) -> None:
    if target_rate is None:
        raise ConfigError("--target-rate", None, "--mix needs the rate to serve")
    candidates = mix_candidates(report.ranked)
    if not candidates:
        console.print("no single-replica plan held the SLO: no GPU mix to choose")
        return
    mixed = plan_mix(
        scenario,
        candidates,
        target_rate,
        available=dict(space.gpus),
        executor=executor,
    )
    render_mix(mixed)


def show_cmd(
    path: Annotated[Path, typer.Argument(help="A --store DuckDB file.")],
    search: Annotated[
        str | None, typer.Option("--search", help="Search hash (default: the largest).")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Plans shown.")] = 20,
) -> None:
    """Show the plans stored in a DuckDB results file."""
    if not path.is_file():
        raise ConfigError("store", str(path), "file not found")
    db = PlanStore(path)
    try:
        render_stored(db, search, top)
    finally:
        db.close()


def _table(title: str, rows: tuple[list[str], list[list[str]]]) -> Table:
    headers, body = rows
    table = Table(title=title, title_justify="left", show_lines=False)
    for h in headers:
        table.add_column(h, overflow="fold")
    for row in body:
        table.add_row(*row)
    return table


def render_capacity(report: CapacityReport) -> None:
    """The probes and the capacity line."""
    probes = [
        [f"{p.rate_per_s:.4g}", "holds" if p.holds else "fails", p.limiting, f"{p.ratio:.3g}"]
        for p in report.search.probes
    ]
    console.print(_table("Probes", (["rate req/s", "SLO", "limiting", "value/target"], probes)))
    console.print(
        f"capacity {report.rate_per_s:.4g} req/s ({report.rate_per_gpu:.4g} per GPU, "
        f"{report.rate_per_dollar_hour:.4g} per $/h); limited by {report.limiting}; "
        f"{report.search.num_probes} simulations"
    )


def render_report(
    report: SearchReport, scenario: Scenario, options: SearchOptions, top: int, executor: str
) -> None:
    """Counts, prune reasons, the ranked table and the Pareto front."""
    crit = scenario.criterion
    total = len(report.results)
    console.print(
        f"[bold]{scenario.model}[/] on {scenario.workload.name or scenario.workload.preset}; "
        f"SLO p99 TTFT {crit.ttft_p99_s} s, p99 TPOT {crit.tpot_p99_s} s"
        + (f", attainment >= {crit.min_attainment}" if crit.min_attainment else "")
        + f"; objective {options.objective}; executor {executor}"
    )
    console.print(
        f"{total} plans: {report.count('infeasible')} infeasible, {report.count('pruned')} "
        f"pruned, {report.num_simulated} simulated now, {report.num_resumed} from the store, "
        f"{report.count('failed')} failed"
    )
    for reason, n in report.prune_reasons.items():
        console.print(f"  {n:4d} {reason}", markup=False, highlight=False)
    if not report.ranked:
        console.print("no plan holds the SLO at any rate")
        return
    console.print(_table("Top plans", plan_rows(report.ranked, options.objective, True, top)))
    console.print(
        _table(
            "Pareto front ($/h per req/s, p99 TTFT, J/token; all minimised)",
            plan_rows(report.pareto, options.objective, False),
        )
    )


def render_mix(report: MixReport) -> None:
    """The capacity matrix, the chosen mix and the saving."""
    matrix, counts = mix_rows(report)
    console.print(_table("Capacity per slice (req/s, one instance)", matrix))
    alloc = report.allocation
    console.print(_table(f"GPU mix for {report.target_rate_per_s:g} req/s (Mélange ILP)", counts))
    line = f"mix ${alloc.cost_per_hour_usd:,.2f}/h"
    if alloc.best_single is not None:
        name, n, cost = alloc.best_single
        saving = alloc.saving_fraction or 0.0
        line += f" vs best single type {n}x {name} ${cost:,.2f}/h: saving {saving:.1%}"
    else:
        line += "; no single GPU type serves this load within the GPUs available"
    console.print(line, markup=False, highlight=False)


def render_stored(db: PlanStore, search: str | None, top: int) -> None:
    """A stored search: counts, ranked plans, Pareto front, other statuses."""
    found = db.searches()
    if not found:
        console.print("the store holds no search")
        return
    digest = search or db.default_search()
    inputs = next((i for h, i, _ in found if h == digest), None)
    if inputs is None:
        raise ConfigError("--search", search, "no such search in the store")
    results = db.results(digest)
    console.print(
        f"search {digest[:12]} ({len(found)} in the file): model {inputs['model']}, "
        f"{len(results)} plans stored"
    )
    objective = "goodput_per_dollar"
    console.print(_table("Ranked", plan_rows(rank(results, objective), objective, True, top)))
    console.print(_table("Pareto front", plan_rows(pareto_front(results), objective, False)))
    console.print(_table("Not simulated / failed", status_rows(results, top)))
