"""Time-weighted views of the iteration log: KV utilisation and batch size over time.

Each replica's state (KV blocks in use, sequences in the batch) is a step function of time:
an iteration's value holds from its start until the replica's next iteration starts, or until
the iteration ends if the replica then goes idle. An idle replica runs no sequences and holds
no running KV (cached prefix blocks are free to evict), so idle time counts as 0. A row with
``repeat = r`` is a run of ``r`` decode iterations; its ``duration_s`` covers the whole run.

Means are over the makespan (the same window as the throughput figures), so they are what a
sampling monitor such as vLLM's ``gpu_cache_usage_perc`` would average to over the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

# Points in the downsampled series kept for plots (enough for a smooth line, small in JSON).
DEFAULT_SERIES_POINTS = 100


@dataclass(frozen=True, slots=True)
class TimeSeriesStats:
    """A quantity over time.

    Attributes:
        mean: time-weighted mean over the makespan (idle time counts as 0).
        max: largest value any iteration had.
        series_t_s: bin centres of the downsampled series.
        series: time-weighted mean of the quantity in each bin (6 significant digits).
    """

    mean: float
    max: float
    series_t_s: tuple[float, ...] = ()
    series: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-able mapping (tuples become lists)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }


def iteration_spans(replica_id: np.ndarray, start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """End of each iteration's state segment (see module docstring); same order as inputs.

    Within a replica, a segment ends at the earlier of the iteration's own end and the next
    iteration's start (pipeline-parallel micro-batches overlap; their states must not add up).
    """
    seg_end = end_s.astype(np.float64).copy()
    order = np.lexsort((start_s, replica_id))
    rid, st = replica_id[order], start_s[order]
    same_next = rid[:-1] == rid[1:]
    idx_this = order[:-1][same_next]
    seg_end[idx_this] = np.minimum(seg_end[idx_this], st[1:][same_next])
    return seg_end


def integral_at(times: np.ndarray, a: np.ndarray, b: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``G(t) = sum_i v_i * |[a_i, b_i] ∩ [-inf, t]|`` at each ``t`` in ``times`` (exact).

    Uses ``G(t) = sum_{a_i<t} v_i (t - a_i) - sum_{b_i<t} v_i (t - b_i)`` with sorted
    cumulative sums, so it costs O((n + m) log n) for n intervals and m times.
    """

    def side(edges: np.ndarray) -> np.ndarray:
        order = np.argsort(edges, kind="stable")
        e, w = edges[order], v[order]
        cw = np.concatenate(([0.0], np.cumsum(w)))
        cwe = np.concatenate(([0.0], np.cumsum(w * e)))
        k = np.searchsorted(e, times, side="left")
        return times * cw[k] - cwe[k]

    return side(a) - side(b)


def run_rows(it: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Which rows are skipped runs (``seq_s`` > 0, ``engine/rows.py`` ``DecodeRun``); None
    when none is, or the log predates the columns (every row is then spanned alone)."""
    if "seq_s" not in it:
        return None
    run = np.asarray(it["seq_s"]) > 0
    return run if run.any() else None


def _run_means(
    it: Mapping[str, np.ndarray],
    values: dict[str, np.ndarray],
    run: np.ndarray,
    ok: np.ndarray,
    safe: np.ndarray,
    fraction: np.ndarray,
) -> None:
    """Replace, in place, each run row's value by its mean over the row: the stored integral
    over the duration where there is one, else its value x the run's span fraction."""
    integrals = {"num_kv_blocks_used": "kv_block_s", "num_seqs": "seq_s"}
    for name, column in values.items():
        if name in integrals:
            rate = np.where(ok, it[integrals[name]] / safe, 0.0)
        else:
            rate = column * fraction
        values[name] = np.where(run, rate, column)


def row_states(
    it: Mapping[str, np.ndarray],
    start: np.ndarray,
    end: np.ndarray,
    seg_end: np.ndarray,
    names: Sequence[str],
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """(segment ends, value of each state column ``names``, KV slope) of the rows' step
    functions, for ``state_integral_at``.

    A single iteration's state holds over its span (``seg_end``, ``iteration_spans``). A
    skipped run's row (``run_rows``) carries the sum of its ticks' values x spans
    (``kv_block_s``, ``seq_s``): it holds their mean over its whole duration, uncut, so every
    bin that holds whole rows gets what stepping its ticks one at a time gives (skip-ahead on
    or off, ``tests/engine/test_skip_identity.py``). Its other columns (``num_queued``) cannot
    change within a run (nothing is admitted), so they hold x the run's span fraction
    ``seq_s / (num_seqs x duration)`` (< 1 where pipeline engines' ticks cut each other).
    Within a run, KV use grows as its sequences fill blocks: a bin edge inside the row splits
    the line with the row's integral and first moment (``_kv_slope``), a correction with
    integral 0 over the row (``ramp_at``), so totals stay exact and a cut bin is within the
    ticks' steps of stepping (docs/metrics.md). A one-tick run holds its own values over its
    span, exactly.
    """
    values = {name: np.asarray(it[name]).astype(np.float64) for name in names}
    run = run_rows(it)
    if run is None:
        return seg_end, values, None
    seqs = np.asarray(it["num_seqs"]).astype(np.float64)
    span = np.asarray(it["seq_s"]) / np.maximum(seqs, 1.0)  # the sum of the run's tick spans
    # A one-tick run (a pipeline replay's first tick, engine/skip.py) holds its own values
    # over its span: what stepping it gives, exactly.
    one = run & (seqs > 0)
    one &= np.asarray(it["repeat"]) == 1 if "repeat" in it else False
    seg_end = np.where(one, start + span, seg_end)
    run &= ~one
    length = end - start
    ok = run & (length > 0)
    safe = np.where(ok, length, 1.0)
    # the run's share of its own duration (1 for one engine: its ticks follow each other)
    fraction = np.where(ok, span / safe, 0.0)
    _run_means(it, values, run, ok, safe, fraction)
    slope = None
    if "num_kv_blocks_used" in values:
        slope = _kv_slope(it, values["num_kv_blocks_used"], fraction, ok, safe)
    return np.where(run, end, seg_end), values, slope


def _kv_slope(
    it: Mapping[str, np.ndarray],
    mean: np.ndarray,
    fraction: np.ndarray,
    ok: np.ndarray,
    length: np.ndarray,
) -> np.ndarray:
    """Per run row, the slope of the line with the row's KV integral and first moment
    (``kv_block_s2``, engine/rows.py; a line ``mean + s (t - mid)`` on ``[0, D]`` has moment
    ``mean D^2 / 2 + s D^3 / 12``); in rows without the moment, the line from
    ``2 x mean - last`` to the last tick's blocks (``num_kv_blocks_used``, the run's most).
    Both ends of the line stay >= 0 (``|s| D / 2 <= mean``)."""
    half_rise = np.asarray(it["num_kv_blocks_used"]) * fraction - mean
    if "kv_block_s2" in it:
        # 0 where written without it (or a run that used no blocks: its mean is 0 too)
        moment = np.asarray(it["kv_block_s2"])
        centred = moment - mean * length * length / 2.0
        half_rise = np.where(moment > 0, 6.0 * centred / (length * length), half_rise)
    half_rise = np.clip(half_rise, -mean, mean)
    return np.where(ok, 2.0 * half_rise / length, 0.0)


def ramp_at(times: np.ndarray, a: np.ndarray, b: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """``sum_i slope_i / 2 x (t - a_i)(t - b_i)`` over the intervals with ``a_i < t < b_i``, at
    each ``t`` of the sorted ``times``: the integral up to ``t`` of ``slope_i x (s - mid_i)``
    on ``[a_i, b_i]``, a ramp through 0 at the interval's middle (0 at and past its end)."""
    out = np.zeros(times.size)
    sel = slope != 0
    if not sel.any():
        return out
    a, b, slope = a[sel], b[sel], slope[sel]
    first = np.searchsorted(times, a, side="right")
    num = np.maximum(np.searchsorted(times, b, side="left") - first, 0)
    total = int(num.sum())
    if total == 0:
        return out
    row = np.repeat(np.arange(a.size), num)
    index = np.arange(total) - np.repeat(np.cumsum(num) - num, num) + first[row]
    t = times[index]
    weights = slope[row] / 2.0 * (t - a[row]) * (t - b[row])
    out += np.bincount(index, weights=weights, minlength=times.size)
    return out


def state_integral_at(
    times: np.ndarray, a: np.ndarray, b: np.ndarray, v: np.ndarray, slope: np.ndarray | None
) -> np.ndarray:
    """``integral_at`` of the segments, plus their ramps (``row_states``' KV slope)."""
    g = integral_at(times, a, b, v)
    return g if slope is None else g + ramp_at(times, a, b, slope)


def time_weighted(
    a: np.ndarray,
    b: np.ndarray,
    v: np.ndarray,
    *,
    window: tuple[float, float],
    scale: float,
    peak: float,
    num_points: int = DEFAULT_SERIES_POINTS,
    slope: np.ndarray | None = None,
) -> TimeSeriesStats:
    """Mean and downsampled series of ``sum_i v_i * 1[a_i <= t < b_i] / scale`` over ``window``
    (plus the segments' ramps ``slope``, ``row_states``).

    Args:
        a, b: segment starts and ends.
        v: segment values (non-negative).
        window: (start, end) of the makespan.
        scale: divisor (total KV blocks for a fraction, number of replicas for a mean).
        peak: the maximum to report (the caller knows how to normalise it).
        num_points: bins in the series.
        slope: per segment, the slope of a ramp with integral 0 added to its value (None:
            none; ``row_states``).
    """
    t0, t1 = window
    span = t1 - t0
    if span <= 0 or v.size == 0:
        return TimeSeriesStats(mean=0.0, max=peak)
    edges = np.linspace(t0, t1, num_points + 1)
    g = state_integral_at(edges, a, b, v.astype(np.float64), slope)
    return series_from_integrals(edges, g, scale, peak)


def series_from_integrals(
    edges: np.ndarray, g: np.ndarray, scale: float, peak: float
) -> TimeSeriesStats:
    """Mean and per-bin series from ``G`` (``integral_at``) at the bin ``edges`` of the window
    (``edges[0]``, ``edges[-1]``): what ``time_weighted`` reports, for integrals summed over
    chunks of rows too."""
    span = edges[-1] - edges[0]
    # Values are non-negative; clamp the cumulative sums' rounding (~1e-16 relative) at 0.
    per_bin = np.maximum(0.0, np.diff(g) / (np.diff(edges) * scale))
    mean = max(0.0, float((g[-1] - g[0]) / (span * scale)))
    centres = (edges[:-1] + edges[1:]) / 2
    return TimeSeriesStats(
        mean=mean,
        max=peak,
        # 6 significant digits: plenty for a plot, and it hides the cumulative sums' rounding.
        series_t_s=tuple(float(f"{x:.6g}") for x in centres),
        series=tuple(float(f"{x:.6g}") for x in per_bin),
    )


def busy_time_by_replica(
    replica_id: np.ndarray, start_s: np.ndarray, end_s: np.ndarray, replica_ids: list[int]
) -> dict[int, float]:
    """Length of the union of each replica's iteration intervals (overlaps counted once)."""
    busy: dict[int, float] = {}
    for rid in replica_ids:
        mask = replica_id == rid
        st, en = start_s[mask], end_s[mask]
        if st.size == 0:
            busy[rid] = 0.0
            continue
        order = np.argsort(st, kind="stable")
        st, en = st[order], en[order]
        reach = np.concatenate(([-np.inf], np.maximum.accumulate(en)[:-1]))
        busy[rid] = float(np.maximum(0.0, en - np.maximum(st, reach)).sum())
    return busy
