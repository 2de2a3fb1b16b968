"""The charts of a run's HTML report, as plotly figures built from a ``RunData``.

Every series is drawn from the run's own records: latency CDFs and latency against arrival
time from the per-request table; queue length, batch size, KV use and preemptions per
replica, and token throughput, from the iteration log; replicas up from the autoscaler's
events. Over-time series are time-weighted means per bin (``servesim.metrics.timeseries``:
an iteration's value holds until the replica's next iteration, idle time counts as 0), so
they agree with the summary's means. Large runs are thinned deterministically (every k-th
point) so a report stays a few MB.

plotly is imported inside the functions that draw, so importing this module is cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servesim.metrics.timeseries import integral_at, iteration_spans, row_states, time_weighted
from servesim.report.run_data import RunData

# Bins of the over-time charts: fine enough to see a stall of 1/200 of the run.
NUM_TIME_BINS = 200
# At most this many points per CDF line / scatter trace (thinned by a fixed stride).
MAX_CDF_POINTS = 500
MAX_SCATTER_POINTS = 5000
LATENCY_COLUMNS = (
    ("TTFT", "ttft_s"),
    ("TPOT", "tpot_s"),
    ("E2E", "e2e_s"),
    ("queueing", "queueing_s"),
)


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def _layout(fig: Any, title: str, height: int = 380) -> Any:
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 45},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _thin(n: int, limit: int) -> np.ndarray:
    """Indices ``0..n-1`` thinned to at most ``limit`` by a fixed stride (deterministic)."""
    step = max(1, -(-n // limit))
    return np.arange(0, n, step)


def latency_cdf(run: RunData) -> Any:
    """Empirical CDFs of TTFT, TPOT, E2E and queueing delay (log seconds)."""
    go = _go()
    fig = go.Figure()
    for label, name in LATENCY_COLUMNS:
        values = np.asarray(run.requests.get(name, []), dtype=float)
        values = np.sort(values[np.isfinite(values)])
        if values.size == 0:
            continue
        idx = np.unique(
            np.linspace(0, values.size - 1, min(values.size, MAX_CDF_POINTS)).astype(int)
        )
        fig.add_trace(
            go.Scatter(x=values[idx], y=(idx + 1) / values.size, mode="lines", name=label)
        )
    fig.update_xaxes(type="log", title="seconds")
    fig.update_yaxes(title="fraction of requests", range=[0, 1.02])
    return _layout(fig, "Latency CDFs (completed requests)")


def latency_vs_arrival(run: RunData) -> Any:
    """TTFT and E2E of each completed request against its arrival time."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("TTFT", "E2E latency"))
    arrival = np.asarray(run.requests["arrival_s"], dtype=float)
    for col, (label, name) in enumerate((("TTFT", "ttft_s"), ("E2E", "e2e_s")), start=1):
        values = np.asarray(run.requests[name], dtype=float)
        ok = np.flatnonzero(np.isfinite(values))
        ok = ok[_thin(ok.size, MAX_SCATTER_POINTS)]
        fig.add_trace(
            go.Scatter(x=arrival[ok], y=values[ok], mode="markers", name=label, marker={"size": 3}),
            row=1,
            col=col,
        )
        fig.update_xaxes(title="arrival time (s)", row=1, col=col)
        fig.update_yaxes(title="seconds", row=1, col=col)
    return _layout(fig, "Latency against arrival time")


def _window(run: RunData) -> tuple[float, float]:
    end = run.end_s
    it = run.iterations
    if it and len(it["start_s"]):
        end = max(end, float(np.max(it["start_s"] + it["duration_s"])))
    return 0.0, max(end, 1e-9)


def _replica_ids(run: RunData) -> list[int]:
    if run.replicas:
        return [int(r["replica_id"]) for r in run.replicas]
    return sorted({int(r) for r in run.iterations.get("replica_id", [])})


def _replica_label(run: RunData, rid: int) -> str:
    for info in run.replicas:
        if int(info["replica_id"]) == rid:
            return f"replica {rid} ({info.get('pool', 'default')}, {info.get('gpu_name', '?')})"
    return f"replica {rid}"


def _replica_rows(it: Any, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The iteration columns of the rows in ``mask`` (one replica's), sliced once."""
    return {name: np.asarray(values)[mask] for name, values in it.items()}


def _per_replica_series(
    run: RunData, it: dict[str, np.ndarray], column: str, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Time-weighted series of ``column`` over one replica's iteration rows ``it``."""
    start = it["start_s"]
    end = start + it["duration_s"]
    seg_end = iteration_spans(it["replica_id"], start, end)
    # a skipped run's row holds its ticks' mean (timeseries.row_states), as in the summary
    seg_end, values, slope = row_states(it, start, end, seg_end, (column,))
    ts = time_weighted(
        start,
        seg_end,
        values[column],
        window=_window(run),
        scale=scale,
        peak=0.0,
        num_points=NUM_TIME_BINS,
        slope=slope if column == "num_kv_blocks_used" else None,
    )
    return np.asarray(ts.series_t_s), np.asarray(ts.series)


def _kv_blocks(run: RunData, rid: int) -> float:
    for info in run.replicas:
        if int(info["replica_id"]) == rid:
            return float(info["num_kv_blocks"])
    return 1.0


def replica_timelines(run: RunData) -> Any:
    """Per replica over time: queue length, batch size, KV use and preemptions."""
    go = _go()
    from plotly.subplots import make_subplots

    titles = (
        "requests queued",
        "sequences in the batch",
        "KV blocks in use (fraction)",
        "preemptions per second",
    )
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, subplot_titles=titles)
    it = run.iterations
    if not it or len(it["start_s"]) == 0:
        return _layout(fig, "Replicas over time (no iteration log in this folder)", 900)
    t0, t1 = _window(run)
    width = (t1 - t0) / NUM_TIME_BINS
    edges = np.linspace(t0, t1, NUM_TIME_BINS + 1)
    preempted = np.asarray(it.get("num_preempted", np.zeros_like(it["start_s"])), dtype=float)
    for k, rid in enumerate(_replica_ids(run)):
        label = _replica_label(run, rid)
        style = {"legendgroup": label, "line": {"color": _color(k)}}
        mask = it["replica_id"] == rid
        own = _replica_rows(it, mask)
        for row, (column, scale) in enumerate(
            (("num_queued", 1.0), ("num_seqs", 1.0), ("num_kv_blocks_used", _kv_blocks(run, rid))),
            start=1,
        ):
            t, y = _per_replica_series(run, own, column, scale)
            fig.add_trace(
                go.Scatter(x=t, y=y, mode="lines", name=label, showlegend=row == 1, **style),
                row=row,
                col=1,
            )
        counts, _ = np.histogram(own["start_s"], bins=edges, weights=preempted[mask])
        centres = (edges[:-1] + edges[1:]) / 2
        fig.add_trace(
            go.Scatter(
                x=centres, y=counts / width, mode="lines", name=label, showlegend=False, **style
            ),
            row=4,
            col=1,
        )
    fig.update_xaxes(title="simulated time (s)", row=4, col=1)
    return _layout(fig, "Replicas over time (time-weighted means per bin)", 900)


def _color(k: int) -> str:
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
    return palette[k % len(palette)]


def replicas_up(run: RunData) -> Any:
    """Replicas paid for (started) and taking requests (ready, not draining) over time."""
    go = _go()
    fig = go.Figure()
    up = sum(1 for r in run.replicas if r.get("initially_up", True))
    routable = up
    t_end = _window(run)[1]
    times, paid, taking = [0.0], [up], [routable]
    for t, _, event in sorted(run.scale_events):
        up += {"start": 1, "stop": -1}.get(event, 0)
        routable += {"ready": 1, "drain": -1}.get(event, 0)
        times.append(t)
        paid.append(up)
        taking.append(routable)
    times.append(t_end)
    paid.append(up)
    taking.append(routable)
    for name, ys in (("up (paid)", paid), ("taking requests", taking)):
        fig.add_trace(go.Scatter(x=times, y=ys, mode="lines", line_shape="hv", name=name))
    fig.update_xaxes(title="simulated time (s)")
    fig.update_yaxes(title="replicas", rangemode="tozero")
    return _layout(fig, "Replicas up (autoscaling)", 320)


def throughput(run: RunData) -> Any:
    """Prefill and decode tokens per second (all replicas) and completions per second."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.65, 0.35],
        subplot_titles=("tokens per second", "completed requests per second"),
    )
    t0, t1 = _window(run)
    edges = np.linspace(t0, t1, NUM_TIME_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    width = (t1 - t0) / NUM_TIME_BINS
    it = run.iterations
    if it and len(it["start_s"]):
        start = np.asarray(it["start_s"], dtype=float)
        duration = np.maximum(np.asarray(it["duration_s"], dtype=float), 1e-12)
        decode_tokens = np.asarray(it["num_decode_seqs"], dtype=float) * it["repeat"]
        for name, tokens in (
            ("prefill tokens/s", np.asarray(it["num_prefill_tokens"], dtype=float)),
            ("decode tokens/s", decode_tokens),
        ):
            # Each row's tokens spread evenly over its own duration (a row may span bins).
            g = integral_at(edges, start, start + duration, tokens / duration)
            fig.add_trace(
                go.Scatter(x=centres, y=np.diff(g) / width, mode="lines", name=name), row=1, col=1
            )
    done = np.asarray(run.requests["completion_s"], dtype=float)
    counts, _ = np.histogram(done[np.isfinite(done)], bins=edges)
    fig.add_trace(
        go.Scatter(x=centres, y=counts / width, mode="lines", name="completed req/s"), row=2, col=1
    )
    fig.update_yaxes(rangemode="tozero")
    fig.update_xaxes(title="simulated time (s)", row=2, col=1)
    return _layout(fig, "Throughput over time", 520)


def run_figures(run: RunData) -> list[tuple[str, Any]]:
    """The report's charts in page order, each with a stable element id."""
    return [
        ("latency-cdf", latency_cdf(run)),
        ("latency-vs-arrival", latency_vs_arrival(run)),
        ("throughput", throughput(run)),
        ("replica-timelines", replica_timelines(run)),
        ("replicas-up", replicas_up(run)),
    ]
