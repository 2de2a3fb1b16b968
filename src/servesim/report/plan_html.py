"""The page of ``servesim plan --report FILE``: the fronts, the winner and why, the left-outs.

Three charts, each point one ranked plan (simulated, holding the SLO), its Pareto front in
orange and the winner as a star:

- cost against latency: $/h per req/s of capacity against p99 TTFT at capacity (both lower
  is better), with the search's own three-way front (cost, p99 TTFT, J/token) highlighted;
- InferenceMAX's throughput-interactivity chart: output tokens/s per GPU against tokens/s
  per user (1 / median TPOT, the rate one user's tokens stream at), upper right is better;
- energy: J per output token against tokens/s per user (lower and further right is better).

The fronts of the last two are computed here in their own two dimensions. Tables give the
ranked plans with the planner's reasons, and every infeasible, pruned or failed plan with why.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from servesim.planner.evaluate import PlanResult
from servesim.planner.plan import PlanSpec
from servesim.planner.present import plan_rows, status_rows
from servesim.planner.rank import why_wins
from servesim.planner.search import SearchOptions, SearchReport
from servesim.report import pages

CHART_IDS = ("plan-cost-latency", "plan-throughput-interactivity", "plan-energy")
Axis = Callable[[PlanResult], float | None]


def cost_per_rate(r: PlanResult) -> float | None:
    """$/h of rent per req/s of capacity (None without capacity)."""
    return r.price_per_hour_usd / r.capacity_per_s if r.capacity_per_s > 0 else None


def ttft_p99(r: PlanResult) -> float | None:
    """p99 TTFT at capacity (s)."""
    return pages.finite(r.metrics.get("ttft_p99_s"))


def tokens_per_gpu(r: PlanResult) -> float | None:
    """Output tokens/s per GPU at capacity."""
    tps = pages.finite(r.metrics.get("output_tokens_per_s"))
    return tps / r.plan.num_gpus if tps is not None else None


def tokens_per_user(r: PlanResult) -> float | None:
    """Tokens/s one user sees: 1 / median TPOT (InferenceMAX's interactivity)."""
    tpot = pages.finite(r.metrics.get("tpot_p50_s"))
    return 1.0 / tpot if tpot else None


def energy_per_token(r: PlanResult) -> float | None:
    """GPU energy per output token (J)."""
    return pages.finite(r.metrics.get("energy_per_output_token_j"))


def front_2d(
    results: Sequence[PlanResult], x: Axis, y: Axis, x_up: bool, y_up: bool
) -> list[PlanResult]:
    """The plans no other beats on both axes (``*_up``: higher is better), sorted by x."""
    points = [(x(r), y(r), r) for r in results]
    valid = [(px, py, r) for px, py, r in points if px is not None and py is not None]
    sx, sy = (1 if x_up else -1), (1 if y_up else -1)
    # Best x first (ties: best y first); a plan is on the front if its y beats all before it.
    valid.sort(key=lambda p: (-sx * p[0], -sy * p[1], p[2].plan.label()))
    front, best_y = [], None
    for px, py, r in valid:
        if best_y is None or sy * py > sy * best_y:
            front.append((px, r))
            best_y = py
    return [r for _, r in sorted(front, key=lambda p: (p[0], p[1].plan.label()))]


def _scatter(
    go: Any, plans: Sequence[PlanResult], x: Axis, y: Axis, name: str, **style: Any
) -> Any:
    return go.Scatter(
        x=[x(r) for r in plans],
        y=[y(r) for r in plans],
        text=[r.plan.label() for r in plans],
        hovertemplate="%{text}<br>x %{x:.4g}<br>y %{y:.4g}<extra></extra>",
        name=name,
        **style,
    )


def front_figure(
    report: SearchReport, x: Axis, y: Axis, front: Sequence[PlanResult], titles: tuple[str, ...]
) -> Any:
    """All ranked plans, ``front`` joined by a line, the winner starred."""
    import plotly.graph_objects as go

    fig = go.Figure()
    ranked = report.ranked
    fig.add_trace(
        _scatter(
            go,
            ranked,
            x,
            y,
            "plans holding the SLO",
            mode="markers",
            marker={"color": pages.BLUE, "size": 8, "opacity": 0.6},
        )
    )
    fig.add_trace(
        _scatter(
            go,
            front,
            x,
            y,
            "Pareto front",
            mode="lines+markers",
            line={"color": pages.ORANGE},
            marker={"size": 10},
        )
    )
    if ranked:
        fig.add_trace(
            _scatter(
                go,
                ranked[:1],
                x,
                y,
                "winner",
                mode="markers",
                marker={"color": pages.RED, "size": 16, "symbol": "star"},
            )
        )
    title, x_title, y_title = titles
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    return pages.layout(fig, title)


def plan_figures(report: SearchReport) -> list[tuple[str, Any]]:
    """The three charts in page order, with their element ids."""
    ranked = report.ranked
    keys = {r.plan.key() for r in report.pareto}
    cost_front = sorted(
        (r for r in ranked if r.plan.key() in keys and cost_per_rate(r) is not None),
        key=lambda r: (cost_per_rate(r), r.plan.label()),
    )
    per_user = "tokens/s per user (1 / median TPOT)"
    specs = (
        (
            cost_per_rate,
            ttft_p99,
            cost_front,
            (
                "Cost against latency (lower left is better)",
                "$/h per req/s of capacity",
                "p99 TTFT at capacity (s)",
            ),
        ),
        (
            tokens_per_user,
            tokens_per_gpu,
            front_2d(ranked, tokens_per_user, tokens_per_gpu, True, True),
            (
                "Throughput per GPU against interactivity (InferenceMAX; upper right is better)",
                per_user,
                "output tokens/s per GPU",
            ),
        ),
        (
            tokens_per_user,
            energy_per_token,
            front_2d(ranked, tokens_per_user, energy_per_token, True, False),
            (
                "Energy per token against interactivity (lower right is better)",
                per_user,
                "J per output token",
            ),
        ),
    )
    return [
        (cid, front_figure(report, x, y, front, titles))
        for cid, (x, y, front, titles) in zip(CHART_IDS, specs, strict=True)
    ]


def _winner_rows(report: SearchReport, objective: str) -> list[tuple[str, str]]:
    if not report.ranked:
        return [("winner", "none: no plan holds the SLO")]
    best = report.ranked[0]
    return [
        ("winner", best.plan.label()),
        ("why", why_wins(report.ranked, 0, objective)),
        ("GPUs", str(best.plan.num_gpus)),
        ("rent", f"${best.price_per_hour_usd:,.2f}/h"),
        ("capacity", f"{best.capacity_per_s:.4g} req/s ({best.capacity_per_gpu:.4g} per GPU)"),
        ("p99 TTFT at capacity", f"{pages.num(ttft_p99(best))} s"),
        (
            "tokens/s per GPU, per user",
            f"{pages.num(tokens_per_gpu(best))}, {pages.num(tokens_per_user(best))}",
        ),
        ("J per output token", pages.num(energy_per_token(best))),
    ]


def _counts(report: SearchReport) -> str:
    line = (
        f"{len(report.results)} plans: {report.count('infeasible')} infeasible, "
        f"{report.count('pruned')} pruned, {report.count('failed')} failed, "
        f"{len(report.ranked)} ranked"
    )
    reasons = [[reason, str(n)] for reason, n in report.prune_reasons.items()]
    return f"<p>{line}</p>" + (pages.table(["reason", "plans"], reasons) if reasons else "")


def render_plan_html(
    report: SearchReport,
    options: SearchOptions,
    settings: list[tuple[str, str]],
    top: int = 50,
    incomplete: str = "",
) -> str:
    """The plan page; ``settings`` are ``(label, text)`` rows of what was searched;
    ``incomplete``: a line saying which plans have no result (a page drawn from a partial
    store, ``servesim.report.plan_store``), shown first."""
    objective = options.objective
    ranked_h, ranked_rows = plan_rows(report.ranked, objective, True, top)
    left_h, left_rows = status_rows(report.results, max(len(report.results), 1))
    charts = "".join(pages.chart(cid, fig) for cid, fig in plan_figures(report))
    left = pages.table(left_h, left_rows, "left-out") if left_rows else "<p>none</p>"
    warning = [("Incomplete search", f'<p id="incomplete">{html.escape(incomplete)}</p>')]
    return pages.page(
        "servesim plan report",
        f"deployments searched for the objective {objective}; all times simulated.",
        [
            *(warning if incomplete else []),
            ("What was searched", pages.pairs(settings)),
            ("Winner", pages.pairs(_winner_rows(report, objective))),
            ("Pareto fronts", charts),
            ("Ranked plans", pages.table(ranked_h, ranked_rows, "ranked")),
            ("Counts", _counts(report)),
            ("Not ranked: infeasible, pruned, failed, missing the SLO", left),
        ],
    )


# --- The result file: what the page is drawn from, so `servesim report` can redraw it -----


def _result_dict(r: PlanResult) -> dict[str, Any]:
    return {
        "plan": r.plan.to_dict(),
        "status": r.status,
        "reason": r.reason,
        "capacity_per_s": r.capacity_per_s,
        "limiting": r.limiting,
        "num_probes": r.num_probes,
        "metrics": dict(r.metrics),
        "wall_s": r.wall_s,
    }


def _positions(results: Sequence[PlanResult], chosen: Sequence[PlanResult]) -> list[int]:
    """Where each of ``chosen`` is in ``results`` (the same object, else the same plan)."""
    by_key = {r.plan.key(): i for i, r in reversed(list(enumerate(results)))}
    by_id = {id(r): i for i, r in enumerate(results)}
    return [by_id.get(id(r), by_key.get(r.plan.key(), -1)) for r in chosen]


def plan_to_dict(
    report: SearchReport, options: SearchOptions, settings: list[tuple[str, str]], top: int = 50
) -> dict[str, Any]:
    """The page's inputs as JSON-able data: every result once, the ranking and the front as
    positions in it (a ranked plan missing from ``results`` is added at the end)."""
    results = list(report.results)
    for r in (*report.ranked, *report.pareto):
        if _positions(results, [r]) == [-1]:
            results.append(r)
    return {
        "settings": [[k, v] for k, v in settings],
        "options": dataclasses.asdict(options),
        "top": top,
        "results": [_result_dict(r) for r in results],
        "ranked": _positions(results, report.ranked),
        "pareto": _positions(results, report.pareto),
        "num_in_report": len(report.results),
        "num_simulated": report.num_simulated,
        "num_resumed": report.num_resumed,
        "prune_reasons": dict(report.prune_reasons),
        "search_hash": report.search_hash,
        "simulated_keys": list(report.simulated_keys),
    }


def plan_from_dict(
    data: dict[str, Any],
) -> tuple[SearchReport, SearchOptions, list[tuple[str, str]], int]:
    """Inverse of ``plan_to_dict``: ``(report, options, settings, top)``."""
    results = [
        PlanResult(
            plan=PlanSpec.from_dict(r["plan"]),
            status=r["status"],
            reason=r["reason"],
            capacity_per_s=r["capacity_per_s"],
            limiting=r["limiting"],
            num_probes=r["num_probes"],
            metrics=r["metrics"],
            wall_s=r["wall_s"],
        )
        for r in data["results"]
    ]
    report = SearchReport(
        results=results[: data["num_in_report"]],
        ranked=[results[i] for i in data["ranked"]],
        pareto=[results[i] for i in data["pareto"]],
        num_simulated=data["num_simulated"],
        num_resumed=data["num_resumed"],
        prune_reasons=dict(data["prune_reasons"]),
        search_hash=data["search_hash"],
        simulated_keys=tuple(data["simulated_keys"]),
    )
    settings = [(str(k), str(v)) for k, v in data["settings"]]
    return report, SearchOptions(**data["options"]), settings, int(data["top"])


def render_plan_data(data: dict[str, Any]) -> str:
    """The plan page from its result data (``servesim report``)."""
    report, options, settings, top = plan_from_dict(data)
    return render_plan_html(report, options, settings, top, str(data.get("incomplete", "")))


def write_plan_page(
    report: SearchReport,
    options: SearchOptions,
    settings: list[tuple[str, str]],
    path: str | Path,
    top: int = 50,
) -> Path:
    """Write the page at ``path`` and its result file beside it (``pages.result_path``), the
    page drawn from the data as it reads back, so ``servesim report`` redraws the same bytes."""
    data = pages.round_trip(plan_to_dict(report, options, settings, top))
    return pages.write_result("plan", data, render_plan_data(data), path)
