"""The page of ``servesim compare A B --report FILE``: two policies side by side.

The first chart is the paired difference per scenario (B's utility minus A's on the same
seeds, > 0: B better) with its 95% bootstrap interval over the scenario's seeds, and the
suite's overall effect with the comparison's own interval. The second puts A's and B's mean
figures per scenario next to each other (goodput, p99 TTFT, p99 TPOT). The table has the
same numbers, plus each scenario's relative change in the objective's own direction.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from servesim.lab import Comparison
from servesim.lab.compare import bootstrap_mean
from servesim.lab.evaluate import Score
from servesim.lab.worker import Failure, RunResult
from servesim.report import pages

CHART_IDS = ("compare-effects", "compare-metrics")
OVERALL = "overall"
# (metric of Score.per_scenario, subplot title, scale to the shown unit)
SIDE_BY_SIDE = (
    ("goodput_per_s", "goodput (req/s)", 1.0),
    ("p99_ttft_s", "p99 TTFT (s)", 1.0),
    ("p99_tpot_s", "p99 TPOT (ms)", 1e3),
)


def scenario_intervals(c: Comparison) -> list[tuple[str, float, float, float, int]]:
    """``(scenario, mean effect, CI low, CI high, pairs)`` per scenario, then the overall."""
    by_scenario: dict[str, list[float]] = {}
    for scenario, _, effect in c.effects:
        by_scenario.setdefault(scenario, []).append(effect)
    rows = []
    for scenario, values in by_scenario.items():
        mean, low, high = bootstrap_mean(np.asarray(values, dtype=np.float64))
        rows.append((scenario, mean, low, high, len(values)))
    rows.append((OVERALL, c.mean_effect, c.ci_low, c.ci_high, len(c.effects)))
    return rows


def effects_figure(c: Comparison) -> Any:
    """Paired effect per scenario with its interval (module docstring)."""
    import plotly.graph_objects as go

    rows = scenario_intervals(c)
    names = [r[0] for r in rows]
    means = [pages.finite(r[1]) for r in rows]
    fig = go.Figure(
        go.Scatter(
            x=means,
            y=names,
            mode="markers",
            name=f"{c.b.policy} - {c.a.policy}",
            marker={
                "size": 11,
                "color": [pages.ORANGE if n == OVERALL else pages.BLUE for n in names],
            },
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [_gap(r[2], r[1]) for r in rows],
                "arrayminus": [_gap(r[1], r[3]) for r in rows],
            },
        )
    )
    fig.add_vline(x=0, line={"color": pages.GREY, "dash": "dash"})
    fig.update_xaxes(title=f"paired effect on {c.objective} (> 0: {c.b.policy} better)")
    fig.update_yaxes(autorange="reversed")
    return pages.layout(fig, "Paired differences with 95% intervals", 160 + 40 * len(rows))


def _gap(a: float, b: float) -> float:
    """``|a - b|``, 0 when either is not finite (no bar rather than a broken one)."""
    return abs(a - b) if math.isfinite(a) and math.isfinite(b) else 0.0


def metrics_figure(c: Comparison) -> Any:
    """A's and B's mean figures per scenario, side by side."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1, cols=len(SIDE_BY_SIDE), subplot_titles=[t for _, t, _ in SIDE_BY_SIDE]
    )
    for k, (score, colour) in enumerate(((c.a, pages.BLUE), (c.b, pages.GREEN))):
        per = score.per_scenario()
        names = list(per)
        for col, (metric, _, scale) in enumerate(SIDE_BY_SIDE, start=1):
            fig.add_trace(
                go.Bar(
                    x=names,
                    y=[pages.finite(per[n][metric] * scale) for n in names],
                    name=f"{'AB'[k]}: {score.policy}",
                    marker={"color": colour},
                    legendgroup=str(k),
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    fig.update_layout(barmode="group")
    return pages.layout(fig, "The two policies per scenario (means over seeds)")


def comparison_rows(c: Comparison) -> list[list[str]]:
    """Per scenario: A's and B's figures, the effect, its interval and B's relative change."""
    per_a, per_b = c.a.per_scenario(), c.b.per_scenario()
    rows = []
    for scenario, mean, low, high, n in scenario_intervals(c):
        figures = []
        for metric, _, scale in SIDE_BY_SIDE:
            for per in (per_a, per_b):
                value = per.get(scenario, {}).get(metric)
                figures.append(pages.num(None if value is None else value * scale))
        change = math.expm1(c.direction * mean) if math.isfinite(mean) else math.nan
        rows.append(
            [
                scenario,
                *figures,
                str(n),
                pages.num(mean, "+.4f"),
                f"[{pages.num(low, '+.4f')}, {pages.num(high, '+.4f')}]",
                pages.num(change * 100, "+.1f") + "%" if math.isfinite(change) else "-",
            ]
        )
    return rows


def comparison_headers(c: Comparison) -> list[str]:
    """Headers of ``comparison_rows``."""
    heads = ["scenario"]
    for _, title, _ in SIDE_BY_SIDE:
        heads += [f"A {title}", f"B {title}"]
    return [*heads, "pairs", "effect", "95% interval", f"B change in {c.objective}"]


def render_compare_html(c: Comparison) -> str:
    """The comparison page."""
    what = [
        ("A (reference)", c.a.line()),
        ("B (candidate)", c.b.line()),
        ("suite", f"{c.a.suite} v{c.a.suite_version}" + (" (fast)" if c.a.is_fast else "")),
        ("objective", c.objective),
        ("verdict", c.verdict),
    ]
    charts = pages.chart(CHART_IDS[0], effects_figure(c)) + pages.chart(
        CHART_IDS[1], metrics_figure(c)
    )
    table = pages.table(comparison_headers(c), comparison_rows(c), "comparison")
    return pages.page(
        "servesim compare report",
        "two policies on the same runs (same scenarios and seeds); all times simulated.",
        [("What was compared", pages.pairs(what)), ("Charts", charts), ("Per scenario", table)],
    )


# --- The result file: what the page is drawn from, so `servesim report` can redraw it -----


def _score_dict(s: Score) -> dict[str, Any]:
    runs = []
    for r in s.runs:
        failure = dataclasses.asdict(r.failure) if r.failure is not None else None
        metrics = dict(r.metrics) if r.metrics is not None else None
        run = {"scenario": r.scenario, "seed": r.seed, "metrics": metrics, "failure": failure}
        runs.append(run | {"skip_reason": r.skip_reason})
    fields = ("policy", "suite", "suite_version", "objective", "is_fast", "value", "utility")
    return {**{f: getattr(s, f) for f in fields}, "baseline_value": s.baseline_value, "runs": runs}


def _score(d: dict[str, Any]) -> Score:
    runs = tuple(
        RunResult(
            r["scenario"],
            r["seed"],
            r["metrics"],
            Failure(**r["failure"]) if r["failure"] is not None else None,
            r["skip_reason"],
        )
        for r in d["runs"]
    )
    fields = {k: v for k, v in d.items() if k != "runs"}
    return Score(**fields, runs=runs)


def comparison_to_dict(c: Comparison) -> dict[str, Any]:
    """The page's inputs as JSON-able data (runs' diagnostics are left out: not drawn)."""
    return {
        "a": _score_dict(c.a),
        "b": _score_dict(c.b),
        "objective": c.objective,
        "effects": [list(e) for e in c.effects],
        "mean_effect": c.mean_effect,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "scenario_effects": [list(e) for e in c.scenario_effects],
        "verdict": c.verdict,
        "direction": c.direction,
    }


def comparison_from_dict(data: dict[str, Any]) -> Comparison:
    """Inverse of ``comparison_to_dict``."""
    return Comparison(
        a=_score(data["a"]),
        b=_score(data["b"]),
        objective=data["objective"],
        effects=tuple((str(s), int(k), float(e)) for s, k, e in data["effects"]),
        mean_effect=float(data["mean_effect"]),
        ci_low=float(data["ci_low"]),
        ci_high=float(data["ci_high"]),
        scenario_effects=tuple((str(s), float(e)) for s, e in data["scenario_effects"]),
        verdict=data["verdict"],
        direction=int(data["direction"]),
    )


def render_compare_data(data: dict[str, Any]) -> str:
    """The comparison page from its result data (``servesim report``)."""
    return render_compare_html(comparison_from_dict(data))


def write_compare_page(c: Comparison, path: Path) -> Path:
    """Write the page at ``path`` and its result file beside it (``pages.result_path``), the
    page drawn from the data as it reads back, so ``servesim report`` redraws the same bytes."""
    data = pages.round_trip(comparison_to_dict(c))
    return pages.write_result("compare", data, render_compare_data(data), path)
