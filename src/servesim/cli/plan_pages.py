"""``servesim plan``'s pages: the ``--report`` HTML and the page record kept in ``--store``.

The record (``servesim.report.plan_store``) is written before the search starts (what was
searched, the options), replaced when it ends (the plans in the search's order) or is stopped
by Ctrl-C (how many plans the search has, when the pre-filter got that far), so that
``servesim report STORE`` draws the page of any stored search, finished or not.
"""

from __future__ import annotations

from pathlib import Path

from servesim.cli.plan_render import slo_label, workload_label
from servesim.cli.report import note_report
from servesim.planner.outcome import SearchProgress, SearchReport
from servesim.planner.scenario import Scenario
from servesim.planner.search import SearchOptions

Settings = list[tuple[str, str]]


def plan_settings(scenario: Scenario, options: SearchOptions, gpus: str) -> Settings:
    """The page's "What was searched" rows."""
    at = options.target_rate_per_s
    return [
        ("model", scenario.model),
        ("workload", workload_label(scenario)),
        ("SLO", slo_label(scenario)),
        ("objective", options.objective + (f" at {at:g} req/s" if at is not None else "")),
        ("GPUs available", gpus),
    ]


def begin_record(
    store: Path | None, scenario: Scenario, options: SearchOptions, settings: Settings
) -> str:
    """Record the page's settings for the search about to run; its store hash ("": none)."""
    if store is None:
        return ""
    from servesim.perf import default_perf_model
    from servesim.planner.search import search_inputs
    from servesim.planner.store import inputs_hash
    from servesim.report.plan_store import page_record, record_page

    # the hash run_search registers (``servesim.api.plan`` searches with the default model)
    digest = inputs_hash(search_inputs(scenario, options, default_perf_model()))
    record_page(store, digest, page_record(settings, options))
    return digest


def stopped_record(
    store: Path | None,
    digest: str,
    options: SearchOptions,
    settings: Settings,
    last: SearchProgress | None,
) -> None:
    """After Ctrl-C: record how many plans the search has (when the pre-filter counted them)."""
    if store is None or not digest:
        return
    from servesim.report.plan_store import page_record, record_page

    num = last.num_plans if last is not None else None
    record_page(store, digest, page_record(settings, options, num_plans=num))


def finished_record(
    store: Path | None, report: SearchReport, options: SearchOptions, settings: Settings
) -> None:
    """After the search: record every plan's key in the search's order."""
    if store is None:
        return
    from servesim.report.plan_store import page_record, record_page

    keys = [r.plan.key() for r in report.results]
    record_page(store, report.search_hash, page_record(settings, options, plan_keys=keys))


def write_report(
    report: SearchReport, options: SearchOptions, settings: Settings, path: Path
) -> None:
    """The search's HTML page (``servesim.report.plan_html``)."""
    from servesim.report.plan_html import write_plan_page

    note_report(write_plan_page(report, options, settings, path))
