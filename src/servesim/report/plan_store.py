"""The plan page drawn from a ``--store`` file alone (``servesim report STORE``).

``servesim plan --store S`` records, beside each plan's result, what its page needs that the
results do not hold (``PlanStore.put_page``): the "What was searched" rows, the search
options (the objective ranks the plans), the page's row limit, and once known the number of
plans in the search and their order. ``record_page`` writes it before the search starts
and again when it ends or is stopped (Ctrl-C), so a search stopped anywhere, or finished on
another machine, still gets its page.

A complete search's page is drawn exactly as ``plan --report`` draws it (the same data, the
same round trip through JSON), so both are the same bytes. A partial one says how many
plans have no result yet; a store without the page record (written through the Python API,
or by an older servesim) is drawn from the search's inputs, saying what it cannot know.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servesim.core.errors import ConfigError, ServesimError
from servesim.planner.evaluate import PlanResult
from servesim.planner.rank import TARGET_OBJECTIVES, pareto_front, rank
from servesim.planner.reasons import reason_counts
from servesim.planner.search import SearchOptions, SearchReport
from servesim.planner.store import DUCKDB_MAGIC, PlanStore
from servesim.report import pages
from servesim.report.plan_html import plan_to_dict, render_plan_data

PAGE_TOP = 50  # rows of the ranked table (``write_plan_page``'s default)
_MAGIC_AT = 8  # a DuckDB file carries its magic after an 8-byte checksum


def is_store_file(path: str | Path) -> bool:
    """Whether ``path`` is a DuckDB file (a ``--store``), by its magic bytes."""
    target = Path(path)
    if not target.is_file():
        return False
    with target.open("rb") as handle:
        head = handle.read(_MAGIC_AT + len(DUCKDB_MAGIC))
    return head[_MAGIC_AT:] == DUCKDB_MAGIC


def workload_text(workload: Any) -> str:
    """A workload's name: its label, preset or trace file (never "None")."""
    if workload.name:
        return str(workload.name)
    if workload.preset:
        return str(workload.preset)
    if workload.trace is not None:
        return f"trace {Path(workload.trace.path).name}"
    return "a custom workload"


def slo_text(criterion: Any) -> str:
    """The targets given, e.g. ``p99 TTFT 2 s, p99 TPOT 0.1 s`` (unset ones left out)."""
    parts = [
        f"{name} {value:g} s"
        for name, value in (
            ("p99 TTFT", criterion.ttft_p99_s),
            ("p99 TPOT", criterion.tpot_p99_s),
            ("mean TTFT", criterion.ttft_mean_s),
        )
        if value is not None
    ]
    if criterion.min_attainment is not None:
        parts.append(f"attainment >= {criterion.min_attainment:g}")
    return ", ".join(parts) or "none"


def page_record(
    settings: Sequence[tuple[str, str]],
    options: SearchOptions,
    *,
    plan_keys: Sequence[str] | None = None,
    num_plans: int | None = None,
) -> dict[str, Any]:
    """What ``record_page`` stores: settings rows, options, the row limit, and the plans'
    keys in the search's order (a finished search) or only their number (a stopped one)."""
    record: dict[str, Any] = {
        "settings": [[k, v] for k, v in settings],
        "options": dataclasses.asdict(options),
        "top": PAGE_TOP,
    }
    if plan_keys is not None:
        record["plan_keys"] = list(plan_keys)
        record["num_plans"] = len(plan_keys)
    elif num_plans is not None:
        record["num_plans"] = num_plans
    return record


def record_page(store_path: str | Path, search_hash: str, record: dict[str, Any]) -> None:
    """Write ``record`` (``page_record``) for ``search_hash`` into the store file."""
    db = PlanStore(store_path)
    try:
        db.put_page(search_hash, record)
    finally:
        db.close()


def _settings_from_inputs(inputs: dict[str, Any], objective: str) -> list[tuple[str, str]]:
    """The "What was searched" rows from the search's stored inputs (no page record)."""
    from servesim.planner.scenario import SLOCriterion
    from servesim.workload.config import WorkloadConfig

    try:
        workload = workload_text(WorkloadConfig.model_validate(inputs.get("workload", {})))
    except (ValueError, ServesimError):  # a trace file gone since: still draw the page
        workload = "not readable from the store"
    crit = inputs.get("criterion") or {}
    fields = {f.name for f in dataclasses.fields(SLOCriterion)}
    target = inputs.get("target_rate_per_s")
    return [
        ("model", str(inputs.get("model", "?"))),
        ("workload", workload),
        ("SLO", slo_text(SLOCriterion(**{k: v for k, v in crit.items() if k in fields}))),
        ("objective", objective + (f" at {target:g} req/s" if target is not None else "")),
        ("GPUs available", "not recorded in the store"),
    ]


def _options_from_inputs(inputs: dict[str, Any]) -> SearchOptions:
    """The plan CLI's default objective for these inputs (``cli.plan_setup.search_options``)."""
    target = inputs.get("target_rate_per_s")
    objective = "cost_at_rate" if target is not None else "goodput_per_dollar"
    return SearchOptions(
        objective=objective,
        target_rate_per_s=target if objective in TARGET_OBJECTIVES else None,
        rel_tol=float(inputs.get("rel_tol", 0.05)),
        early_stop=bool(inputs.get("early_stop", True)),
        bracketing=bool(inputs.get("bracketing", False)),
    )


def _ordered(results: list[PlanResult], keys: Sequence[str] | None) -> list[PlanResult]:
    """``results`` in the search's order (``keys``); any not listed last, by key."""
    if not keys:
        return results
    position = {k: i for i, k in enumerate(keys)}
    return sorted(results, key=lambda r: (position.get(r.plan.key(), len(position)), r.plan.key()))


def _missing_note(num_stored: int, record: dict[str, Any] | None) -> str:
    """The incomplete-search line ("" for a complete search)."""
    num_plans = (record or {}).get("num_plans")
    if num_plans is None:
        why = "no page record" if record is None else "the search stopped before it counted them"
        return (
            f"The store does not say how many plans this search has ({why}); the page shows "
            f"the {num_stored} plans stored, and plans may be missing."
        )
    missing = int(num_plans) - num_stored
    if missing <= 0:
        return ""
    return (
        f"Incomplete search: {missing} of {num_plans} plans have no result (the search was "
        f"stopped or is still running; the same plan command with --store resumes it). "
        f"Ranking, fronts and counts cover the {num_stored} plans stored."
    )


def store_page_data(db: PlanStore, search: str | None = None) -> dict[str, Any]:
    """The plan page's data (``plan_html.plan_to_dict``) of one search in ``db`` (default:
    the one with the most plans), with ``incomplete`` set when plans are missing."""
    found = {h: inputs for h, inputs, _ in db.searches()}
    digest = search if search is not None else db.default_search()
    if digest is None:
        raise ServesimError(f"{db.path}: the store holds no search")
    if digest not in found:
        matches = [h for h in found if h.startswith(digest)]
        if len(matches) != 1:
            raise ConfigError("--search", digest, f"matches {len(matches)} searches in the store")
        digest = matches[0]
    record = db.page(digest)
    if record is not None:
        options = SearchOptions(**record["options"])
        settings = [(str(k), str(v)) for k, v in record["settings"]]
        top = int(record.get("top", PAGE_TOP))
    else:
        options = _options_from_inputs(found[digest])
        settings = _settings_from_inputs(found[digest], options.objective)
        top = PAGE_TOP
    results = _ordered(db.results(digest), (record or {}).get("plan_keys"))
    report = SearchReport(
        results=results,
        ranked=rank(results, options.objective, options.target_rate_per_s),
        pareto=pareto_front(results),
        num_resumed=len(results),
        prune_reasons=reason_counts(results),
        search_hash=digest,
    )
    data = plan_to_dict(report, options, settings, top)
    note = _missing_note(len(results), record)
    if note:
        data["incomplete"] = note
    return data


def write_store_page(
    store_path: str | Path, out: str | Path | None = None, search: str | None = None
) -> Path:
    """Draw the plan page of a ``--store`` file at ``out`` (default: beside the store, its
    name with ``.html``); the page's path."""
    db = PlanStore(store_path, read_only=True)
    try:
        data = pages.round_trip(store_page_data(db, search))
    finally:
        db.close()
    target = Path(out) if out is not None else Path(store_path).with_suffix(".html")
    if target == Path(store_path):
        target = target.with_name(target.name + ".html")
    return pages.write_page(render_plan_data(data), target)
