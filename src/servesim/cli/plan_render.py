"""Rich rendering of the planner's results for ``capacity``, ``plan`` and ``plan show``.

``plan``'s live view (``run_with_progress``): a progress bar with ETA, counts, and the best
plan so far. The bar counts the plans the pre-filter left for simulation (infeasible and
bound-pruned ones are decided at once and shown as counts), so its ETA follows the simulation
work. Each time the best plan changes a line is printed above the bar, so the best-so-far
stays on screen. All of it goes to stderr (stdout stays the tables). Ctrl-C stops the search:
results already stored stay in ``--store`` (each is committed as it completes), and the same
command resumes; ``on_stop`` lets ``plan`` record how many plans the search has, so that
``servesim report STORE`` can say how many are missing (``cli/plan_pages.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from servesim.api import CapacityReport
from servesim.cli.common import console, err_console
from servesim.core.errors import ConfigError, InfeasibleError
from servesim.planner.evaluate import PlanResult
from servesim.planner.mix import MixReport
from servesim.planner.present import mix_rows, plan_rows, status_rows
from servesim.planner.rank import pareto_front, rank
from servesim.planner.scenario import Scenario
from servesim.planner.search import SearchOptions, SearchProgress, SearchReport
from servesim.planner.store import PlanStore


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


def workload_label(scenario: Scenario) -> str:
    """The workload's name: its label, preset or trace file (never "None")."""
    from servesim.report.plan_store import workload_text

    return workload_text(scenario.workload)


def slo_label(scenario: Scenario) -> str:
    """The targets given, e.g. ``p99 TTFT 2 s, p99 TPOT 0.1 s`` (unset ones left out)."""
    from servesim.report.plan_store import slo_text

    return slo_text(scenario.criterion)


def render_report(
    report: SearchReport, scenario: Scenario, options: SearchOptions, top: int, executor: str
) -> None:
    """Counts, prune reasons, the ranked table and the Pareto front."""
    total = len(report.results)
    at = options.target_rate_per_s
    console.print(
        f"[bold]{scenario.model}[/] on {workload_label(scenario)}; SLO {slo_label(scenario)}"
        f"; objective {options.objective}"
        + (f" at {at:g} req/s (every plan simulated there)" if at is not None else "")
        + f"; executor {executor}",
        highlight=False,
    )
    console.print(
        f"{total} plans: {report.count('infeasible')} infeasible, {report.count('pruned')} "
        f"pruned, {report.num_simulated} simulated now, {report.num_resumed} from the store, "
        f"{report.count('failed')} failed"
    )
    for reason, n in report.prune_reasons.items():
        console.print(f"  {n:4d} {reason}", markup=False, highlight=False)
    left_out = status_rows(report.results, top)
    if left_out[1]:
        console.print(_table("Not ranked (infeasible, pruned, missing the SLO)", left_out))
    if not report.ranked:
        where = f"at {at:g} req/s" if at is not None else "at any rate"
        console.print(f"no plan holds the SLO {where}")
        return
    console.print(_table("Top plans", plan_rows(report.ranked, options.objective, True, top)))
    console.print(
        _table(
            "Pareto front ($/h per req/s, p99 TTFT, J/token; all minimised)",
            plan_rows(report.pareto, options.objective, False),
        )
    )


def refuse_if_nothing_fits(report: SearchReport) -> None:
    """Raise ``InfeasibleError`` (exit 2) when no plan of the search can run at all; a search
    with some runnable plans carries on (its infeasible ones are listed with their reasons)."""
    infeasible = [r for r in report.results if r.status == "infeasible"]
    if not report.results or len(infeasible) < len(report.results):
        return
    reasons = "; ".join(f"{n} {why}" for why, n in report.prune_reasons.items())
    first = infeasible[0]
    raise InfeasibleError(
        f"no plan of the {len(infeasible)} can run ({reasons}); e.g. {first.plan.label()}: "
        f"{first.reason}"
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


RunFn = Callable[[Callable[[SearchProgress], None] | None], SearchReport]
StopFn = Callable[[SearchProgress | None], None]
# Exit status of a search stopped by Ctrl-C (128 + SIGINT, the shell's convention).
INTERRUPTED_EXIT = 130


def best_text(best: PlanResult | None, objective: str) -> str:
    """The best plan so far and its figure under ``objective``."""
    if best is None:
        return "none yet"
    if objective == "goodput_per_dollar":
        figure = f"{best.capacity_per_s:.3g} req/s, {best.capacity_per_dollar_hour:.3g} per $/h"
    elif objective == "energy_per_token":
        figure = f"{best.metrics.get('energy_per_output_token_j', float('nan')):.3g} J/token"
    elif objective == "latency":
        figure = f"p99 TTFT {best.metrics.get('ttft_p99_s', float('nan')):.3g} s"
    else:
        figure = f"${best.price_per_hour_usd:,.2f}/h"
    return f"{best.plan.label()} ({figure})"


def counts_text(p: SearchProgress) -> str:
    """``pruned N, infeasible M, failed K, simulated S`` of ``num_plans``."""
    return (
        f"of {p.num_plans}: pruned {p.num_pruned}, infeasible {p.num_infeasible}, "
        f"failed {p.num_failed}, simulated {p.num_simulated}"
    )


def run_with_progress(
    run: RunFn,
    objective: str,
    *,
    quiet: bool = False,
    store: Path | None = None,
    on_stop: StopFn | None = None,
) -> SearchReport:
    """Run ``run(on_progress)`` under the live view (none when ``quiet``); on Ctrl-C,
    ``on_stop`` gets the last progress (None before the first) before the exit."""
    if quiet:
        quiet_state: dict[str, SearchProgress] = {}

        def note(p: SearchProgress) -> None:  # no view; kept for on_stop's plan count
            quiet_state["last"] = p

        go = (lambda: run(note)) if on_stop is not None else (lambda: run(None))
        return _interruptible(go, quiet_state, objective, store, on_stop, quiet=True)
    columns = (
        TextColumn("planning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("to simulate {task.description}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    state: dict[str, SearchProgress] = {}
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("", total=None)

        def on_progress(p: SearchProgress) -> None:
            before = state.get("last")
            state["last"] = p
            if p.best is not None and (before is None or before.best is not p.best):
                bar.console.print(
                    f"best so far: {best_text(p.best, objective)}", markup=False, highlight=False
                )
            bar.update(
                task,
                total=p.num_to_evaluate or None,
                completed=p.num_evaluated,
                description=counts_text(p),
            )

        return _interruptible(lambda: run(on_progress), state, objective, store, on_stop)


def _interruptible(
    go: Callable[[], SearchReport],
    state: dict[str, SearchProgress],
    objective: str,
    store: Path | None,
    on_stop: StopFn | None,
    *,
    quiet: bool = False,
) -> SearchReport:
    try:
        return go()
    except KeyboardInterrupt:
        last = state.get("last")
        if on_stop is not None:
            on_stop(last)
        if last is not None and not quiet:
            err_console.print(f"interrupted: {counts_text(last)}", markup=False)
            err_console.print(f"best so far: {best_text(last.best, objective)}", markup=False)
        where = (
            f"results so far are in {store}; the same command resumes"
            if store is not None
            else "nothing kept (use --store FILE to resume a search)"
        )
        err_console.print(f"interrupted: {where}", markup=False)
        raise typer.Exit(INTERRUPTED_EXIT) from None
