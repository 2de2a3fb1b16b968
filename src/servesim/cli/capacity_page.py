"""The page of ``servesim capacity --report FILE``: latency against offered rate (here, beside
the command, because it presents ``servesim.api.CapacityReport``, above the report layer).

Three charts share the offered-rate axis: p99 TTFT and p99 TPOT with their SLO targets as
horizontal lines, and goodput (requests/s meeting every target) beside the offered rate. Each
probe of the search is a point, blue where the SLO held and red where it failed; the capacity
found is the dashed vertical line. A table lists every probe in the order the search ran them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from servesim.api import CapacityReport
from servesim.planner.capacity import CapacityResult, Probe
from servesim.planner.scenario import SLOCriterion
from servesim.report import pages

CHART_IDS = ("capacity-latency",)
# (subplot title, probe metric, SLO attribute of the criterion)
PANELS = (
    ("p99 TTFT (s)", "ttft_p99_s", "ttft_p99_s"),
    ("p99 TPOT (s)", "tpot_p99_s", "tpot_p99_s"),
    ("goodput (req/s)", "goodput_per_s", None),
)


def _metric(probe: Probe, name: str) -> float | None:
    return pages.finite(probe.metrics.get(name))


def capacity_figure(report: CapacityReport, criterion: SLOCriterion) -> Any:
    """The three panels against offered rate (module docstring)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=[title for title, _, _ in PANELS])
    probes = sorted(report.search.probes, key=lambda p: p.rate_per_s)
    for col, panel in enumerate(PANELS, start=1):
        _add_panel(fig, col, panel, probes, report.rate_per_s, criterion)
    return pages.layout(
        fig, f"Latency and goodput against offered rate (capacity {report.rate_per_s:.4g} req/s)"
    )


def _add_panel(
    fig: Any,
    col: int,
    panel: tuple[str, str, str | None],
    probes: list[Probe],
    capacity_per_s: float,
    criterion: SLOCriterion,
) -> None:
    """One panel: the metric at each probe (blue holds, red fails), the SLO target or, for
    goodput, the offered rate, and the capacity found."""
    import plotly.graph_objects as go

    title, metric, slo_attr = panel
    rates = [p.rate_per_s for p in probes]
    colours = [pages.BLUE if p.holds else pages.RED for p in probes]
    fig.add_trace(
        go.Scatter(
            x=rates,
            y=[_metric(p, metric) for p in probes],
            mode="lines+markers",
            name=title,
            line={"color": pages.GREY},
            marker={"color": colours, "size": 9},
            text=["holds" if p.holds else f"fails ({p.limiting})" for p in probes],
            showlegend=False,
        ),
        row=1,
        col=col,
    )
    _add_references(fig, col, slo_attr, rates, capacity_per_s, criterion)
    fig.update_xaxes(title="offered rate (req/s)", row=1, col=col)


def _add_references(
    fig: Any,
    col: int,
    slo_attr: str | None,
    rates: list[float],
    capacity_per_s: float,
    criterion: SLOCriterion,
) -> None:
    """A panel's reference lines: the SLO target (or the offered rate, which goodput can at
    most equal) and the capacity found."""
    import plotly.graph_objects as go

    target = getattr(criterion, slo_attr) if slo_attr else None
    if target is not None:
        fig.add_hline(
            y=target,
            line={"color": pages.RED, "dash": "dot"},
            row=1,
            col=col,
            annotation_text=f"SLO {target:g} s",
            annotation_position="top left",
        )
    if slo_attr is None:  # goodput can at most equal the offered rate
        fig.add_trace(
            go.Scatter(
                x=rates,
                y=rates,
                mode="lines",
                name="offered rate",
                line={"color": pages.GREY, "dash": "dash"},
            ),
            row=1,
            col=col,
        )
    if capacity_per_s > 0:
        fig.add_vline(
            x=capacity_per_s, line={"color": pages.ORANGE, "dash": "dash"}, row=1, col=col
        )


def probe_rows(report: CapacityReport) -> list[list[str]]:
    """One row per probe, in search order: rate, outcome, limiting metric and figures."""
    rows = []
    for i, p in enumerate(report.search.probes, start=1):
        rows.append(
            [
                str(i),
                pages.num(p.rate_per_s),
                "holds" if p.holds else "fails",
                p.limiting,
                pages.num(p.ratio, ".3g"),
                pages.num(p.metrics.get("ttft_p99_s")),
                pages.num(p.metrics.get("tpot_p99_s")),
                pages.num(p.metrics.get("goodput_per_s")),
                pages.num(p.metrics.get("attainment"), ".3f"),
            ]
        )
    return rows


PROBE_HEADERS = (
    "#",
    "rate req/s",
    "SLO",
    "limiting",
    "value/target",
    "p99 TTFT s",
    "p99 TPOT s",
    "goodput req/s",
    "attainment",
)


def _slo_text(criterion: SLOCriterion) -> str:
    parts = [
        f"{name} {value:g} s"
        for name, value in (("p99 TTFT", criterion.ttft_p99_s), ("p99 TPOT", criterion.tpot_p99_s))
        if value is not None
    ]
    if criterion.min_attainment is not None:
        parts.append(f"attainment >= {criterion.min_attainment:g}")
    return ", ".join(parts) or "none"


def render_capacity_html(
    report: CapacityReport, criterion: SLOCriterion, settings: list[tuple[str, str]]
) -> str:
    """The capacity page; ``settings`` are ``(label, text)`` rows of what was searched."""
    found = report.search
    upper = (
        "none failed"
        if found.upper_rate_per_s == float("inf")
        else (f"{found.upper_rate_per_s:.4g} req/s")
    )
    summary = [
        ("capacity", f"{report.rate_per_s:.4g} req/s"),
        ("per GPU", f"{report.rate_per_gpu:.4g} req/s"),
        ("per $/h", f"{report.rate_per_dollar_hour:.4g} req/s"),
        ("lowest failing rate", upper),
        ("limited by", report.limiting or "-"),
        ("SLO", _slo_text(criterion)),
        ("simulations", str(found.num_probes)),
    ]
    return pages.page(
        "servesim capacity report",
        "the highest offered rate at which the deployment holds the SLO; all times simulated.",
        [
            ("What was searched", pages.pairs(settings)),
            ("Result", pages.pairs(summary)),
            ("Charts", pages.chart(CHART_IDS[0], capacity_figure(report, criterion))),
            ("Probes (in search order)", pages.table(PROBE_HEADERS, probe_rows(report), "probes")),
        ],
    )


# --- The result file: what the page is drawn from, so `servesim report` can redraw it -----


def _probe_dict(p: Probe) -> dict[str, Any]:
    return {
        "rate_per_s": p.rate_per_s,
        "holds": p.holds,
        "limiting": p.limiting,
        "ratio": p.ratio,
        "metrics": dict(p.metrics),
    }


def capacity_to_dict(
    report: CapacityReport, criterion: SLOCriterion, settings: list[tuple[str, str]]
) -> dict[str, Any]:
    """The page's inputs as JSON-able data (the simulation at the capacity is left out: the
    page shows it only through ``settings``)."""
    found = report.search
    best = next((i for i, p in enumerate(found.probes) if p is found.best), None)
    return {
        "settings": [[k, v] for k, v in settings],
        "criterion": dataclasses.asdict(criterion),
        "rate_per_s": report.rate_per_s,
        "rate_per_gpu": report.rate_per_gpu,
        "rate_per_dollar_hour": report.rate_per_dollar_hour,
        "limiting": report.limiting,
        "search": {
            "rate_per_s": found.rate_per_s,
            "upper_rate_per_s": found.upper_rate_per_s,
            "limiting": found.limiting,
            "best": best,
            "below_need": found.below_need,
            "probes": [_probe_dict(p) for p in found.probes],
        },
    }


def capacity_from_dict(
    data: dict[str, Any],
) -> tuple[CapacityReport, SLOCriterion, list[tuple[str, str]]]:
    """Inverse of ``capacity_to_dict`` (``result`` is None)."""
    s = data["search"]
    probes = tuple(
        Probe(p["rate_per_s"], p["holds"], p["limiting"], p["ratio"], p["metrics"])
        for p in s["probes"]
    )
    best = probes[s["best"]] if s["best"] is not None else None
    search = CapacityResult(
        s["rate_per_s"], s["upper_rate_per_s"], s["limiting"], best, probes, s["below_need"]
    )
    report = CapacityReport(
        rate_per_s=data["rate_per_s"],
        rate_per_gpu=data["rate_per_gpu"],
        rate_per_dollar_hour=data["rate_per_dollar_hour"],
        limiting=data["limiting"],
        search=search,
        result=None,
    )
    settings = [(str(k), str(v)) for k, v in data["settings"]]
    return report, SLOCriterion(**data["criterion"]), settings


def render_capacity_data(data: dict[str, Any]) -> str:
    """The capacity page from its result data (``servesim report``)."""
    return render_capacity_html(*capacity_from_dict(data))


def write_capacity_page(
    report: CapacityReport, criterion: SLOCriterion, settings: list[tuple[str, str]], path: Path
) -> Path:
    """Write the page at ``path`` and its result file beside it (``pages.result_path``), the
    page drawn from the data as it reads back, so ``servesim report`` redraws the same bytes."""
    data = pages.round_trip(capacity_to_dict(report, criterion, settings))
    return pages.write_result("capacity", data, render_capacity_data(data), path)
