"""The iteration log downsampled at a fixed budget: per replica, fixed-width time bins.

A million-request run has ~7M iteration rows; plots of queue length, batch size and KV use
over time need far fewer points. ``BinnedSeries`` keeps, per replica and bin, the time
integral of each state column (its step function, ``timeseries.iteration_spans``) and the sum
of each count column (by row start) and the token counts spread over each row's duration
(``SPREAD_COLUMNS``). Bins have width ``w`` from t = 0; when a segment reaches
past the last bin, adjacent bins merge in pairs and ``w`` doubles, so memory is
O(``num_bins``) however long the run, and merging loses nothing: **totals are exact** (every
segment's value x length lands in the bins, up to float summation order).

``rows()`` gives the bins back as iteration-like rows (``start_s``, ``duration_s``, the
time-weighted mean of each state column, the count and token sums with ``repeat`` 1), so
code that draws the log draws the downsampled one unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from servesim.metrics.timeseries import integral_at, row_states, state_integral_at

Chunk = dict[str, np.ndarray]

DEFAULT_NUM_BINS = 4096
STATE_COLUMNS = ("num_queued", "num_seqs", "num_kv_blocks_used")
COUNT_COLUMNS = ("num_preempted",)
# Token counts spread evenly over their row's own duration (the report's tokens/s): binned as
# the integral of tokens / duration, so each bin holds the tokens that fell in it.
SPREAD_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")
# The columns ``add`` reads (``num_decode_tokens`` is derived: decode seqs x repeat), the
# last three where present (``RUN_COLUMNS``).
INPUT_COLUMNS = (
    "replica_id",
    "start_s",
    "duration_s",
    *STATE_COLUMNS,
    *COUNT_COLUMNS,
    "num_prefill_tokens",
    "num_decode_seqs",
    "repeat",
    "kv_block_s",
    "seq_s",
    "kv_block_s2",
)
# A skipped run's integrals (engine/records.py ITERATION_COLUMNS), absent from older logs:
# with them a run's row bins as its ticks do (``timeseries.row_states``).
RUN_COLUMNS = ("kv_block_s", "seq_s", "kv_block_s2")


class SegmentCarry:
    """Each row's state segment end (``iteration_spans``' rule) over rows read in chunks.

    A segment ends at the row's end or its replica's next row start, whichever is first; the
    last row of each replica in a chunk waits for the next chunk. Exact when each replica's
    rows come in start order (as the engine appends them).
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: Chunk | None = None

    def feed(self, it: Chunk) -> Chunk:
        """Rows of ``it`` (and held ones) whose segment is known, with ``seg_end_s`` added."""
        rows = (
            it
            if self._held is None
            else {k: np.concatenate((self._held[k], v)) for k, v in it.items()}
        )
        order = np.lexsort((rows["start_s"], rows["replica_id"]))
        rows = {k: v[order] for k, v in rows.items()}
        rid = rows["replica_id"]
        end = rows["start_s"] + rows["duration_s"]
        is_last = np.ones(rid.size, dtype=bool)
        is_last[:-1] = rid[:-1] != rid[1:]
        seg_end = end.copy()
        seg_end[:-1] = np.where(is_last[:-1], end[:-1], np.minimum(end[:-1], rows["start_s"][1:]))
        self._held = {k: v[is_last] for k, v in rows.items()}
        done = ~is_last
        out = {k: v[done] for k, v in rows.items()}
        out["seg_end_s"] = seg_end[done]
        return out

    def flush(self) -> Chunk | None:
        """The held rows: each replica's last segment ends with its own iteration."""
        held, self._held = self._held, None
        if held is None:
            return None
        held["seg_end_s"] = held["start_s"] + held["duration_s"]
        return held


class BinnedSeries:
    """Per-replica time bins of the iteration log (module docstring).

    Args:
        num_bins: bins per replica (the budget).
        width_s: initial bin width; doubles as the run grows past ``num_bins * width_s``.
    """

    def __init__(self, num_bins: int = DEFAULT_NUM_BINS, width_s: float = 2.0**-10) -> None:
        self.num_bins = num_bins
        self.width_s = width_s
        self.integrals: dict[int, dict[str, np.ndarray]] = {}
        self.counts: dict[int, dict[str, np.ndarray]] = {}
        self.tokens: dict[int, dict[str, np.ndarray]] = {}
        self.last_end_s = 0.0  # latest row end (start + duration)
        self._carry = SegmentCarry()

    def add(self, it: Chunk) -> None:
        """Fold in one chunk of iteration rows (chunks in row order)."""
        if it["start_s"].size == 0:
            return
        end = it["start_s"] + it["duration_s"]
        self.last_end_s = max(self.last_end_s, float(end.max()))
        while self.last_end_s > self.num_bins * self.width_s:
            self._merge()
        self._add_tokens(it)
        self._add_segments(self._carry.feed(it))

    def _add_tokens(self, it: Chunk) -> None:
        edges = np.arange(self.num_bins + 1) * self.width_s
        duration = np.maximum(it["duration_s"].astype(np.float64), 1e-12)
        a = it["start_s"].astype(np.float64)
        b = a + duration
        decode = it["num_decode_seqs"].astype(np.float64) * it["repeat"]
        spread = {"num_prefill_tokens": it["num_prefill_tokens"].astype(np.float64)}
        spread["num_decode_tokens"] = decode
        rid = it["replica_id"].astype(np.int64)
        for r in np.unique(rid):
            mask = rid == r
            tokens = self.tokens.setdefault(int(r), self._zeros(SPREAD_COLUMNS))
            for name in SPREAD_COLUMNS:
                rate = spread[name][mask] / duration[mask]
                tokens[name] += np.diff(integral_at(edges, a[mask], b[mask], rate))

    def finish(self) -> None:
        """Fold in the rows still held (call once, after the last chunk)."""
        held = self._carry.flush()
        if held is not None:
            self._add_segments(held)

    def _add_segments(self, seg: Chunk) -> None:
        if seg["start_s"].size == 0:
            return
        start = seg["start_s"].astype(np.float64)
        end = start + seg["duration_s"]
        seg_end, values, slope = row_states(seg, start, end, seg["seg_end_s"], STATE_COLUMNS)
        while float(seg_end.max()) > self.num_bins * self.width_s:
            self._merge()
        edges = np.arange(self.num_bins + 1) * self.width_s
        rid = seg["replica_id"].astype(np.int64)
        for r in np.unique(rid):
            mask = rid == r
            a, b = start[mask], seg_end[mask]
            integrals = self.integrals.setdefault(int(r), self._zeros(STATE_COLUMNS))
            for name in STATE_COLUMNS:
                ramp = slope[mask] if slope is not None and name == "num_kv_blocks_used" else None
                g = state_integral_at(edges, a, b, values[name][mask], ramp)
                integrals[name] += np.diff(g)
            counts = self.counts.setdefault(int(r), self._zeros(COUNT_COLUMNS))
            index = np.minimum((a / self.width_s).astype(np.int64), self.num_bins - 1)
            for name in COUNT_COLUMNS:
                w = seg[name][mask].astype(np.float64)
                counts[name] += np.bincount(index, weights=w, minlength=self.num_bins)

    def _zeros(self, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        return {name: np.zeros(self.num_bins) for name in names}

    def _merge(self) -> None:
        """Adjacent bins in pairs: the width doubles, the totals stay."""
        tables = (*self.integrals.values(), *self.counts.values(), *self.tokens.values())
        for table in tables:
            for name, values in table.items():
                merged = values.reshape(-1, 2).sum(axis=1)
                table[name] = np.concatenate((merged, np.zeros(self.num_bins - merged.size)))
        self.width_s *= 2.0

    def rows(self) -> Chunk:
        """The bins as iteration-like rows, replica by replica, up to ``last_end_s``: state
        columns hold each bin's time-weighted mean (integral / duration), counts their sum."""
        num_used = min(self.num_bins, max(1, math.ceil(self.last_end_s / self.width_s)))
        starts = np.arange(num_used) * self.width_s
        durations = np.minimum(self.width_s, self.last_end_s - starts)
        names = ("replica_id", "start_s", "duration_s", *STATE_COLUMNS, *COUNT_COLUMNS)
        out: dict[str, list[np.ndarray]] = {
            k: [] for k in (*names, "num_prefill_tokens", "num_decode_seqs", "repeat")
        }
        for r in sorted(self.integrals):
            out["replica_id"].append(np.full(num_used, r, dtype=np.int64))
            out["start_s"].append(starts)
            out["duration_s"].append(durations)
            for name in STATE_COLUMNS:
                out[name].append(self.integrals[r][name][:num_used] / durations)
            for name in COUNT_COLUMNS:
                out[name].append(self.counts[r][name][:num_used])
            out["num_prefill_tokens"].append(self.tokens[r]["num_prefill_tokens"][:num_used])
            out["num_decode_seqs"].append(self.tokens[r]["num_decode_tokens"][:num_used])
            out["repeat"].append(np.ones(num_used))
        return {k: np.concatenate(v) if v else np.empty(0) for k, v in out.items()}
