"""Summary figures of tables read a chunk at a time (runs whose records outgrew memory).

``summarize`` takes this path for a table that spilled to disk (``is_spilled``) and the plain
path otherwise, so small runs are unchanged byte for byte. Here:

- **Requests**: counts, sums, min/max and SLO met-counts stream exactly; the TTFT, TPOT, E2E
  and queueing distributions go through ``LatencySketch`` (exact while under its budget, then
  every percentile within relative error ``alpha``; see ``servesim.metrics.sketch``).
- **Iterations**: each replica's state segments (``timeseries.iteration_spans``) need the
  replica's next row, so the last row of every replica is carried into the next chunk (a
  skipped run's row brings its own integrals, ``timeseries.row_states``); busy
  time carries each replica's reach; the time-weighted integrals at the series' bin edges add
  up over chunks (``timeseries.integral_at`` is a sum over rows), so the KV and batch means and
  series keep their totals exactly (up to float summation order). Exact when each replica's
  rows arrive in start order, as the engine appends them.
- **Token gaps**: one weighted ``LatencySketch`` over the chunks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from servesim.engine.records import RejectReason, ReplicaInfo
from servesim.metrics.binned import SegmentCarry
from servesim.metrics.efficiency import Efficiency, efficiency_from_totals
from servesim.metrics.sketch import LatencySketch
from servesim.metrics.slo import SLOResult, SLOSpec, attainment_from_counts, meets_targets
from servesim.metrics.stats import LatencyStats
from servesim.metrics.timeseries import (
    DEFAULT_SERIES_POINTS,
    TimeSeriesStats,
    integral_at,
    row_states,
    series_from_integrals,
    state_integral_at,
)

Chunk = dict[str, np.ndarray]
_STATE = ("num_kv_blocks_used", "num_seqs")  # the state columns the summary integrates
# a skipped run's own integrals (ITERATION_COLUMNS)
_RUN_INTEGRALS = ("kv_block_s", "seq_s", "kv_block_s2")


def request_latencies(
    req: Chunk, completed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TTFT, E2E, TPOT-for-SLO) for every request; NaN where not completed."""
    nan = np.full(completed.shape, np.nan)
    ttft = np.where(completed, req["first_token_s"] - req["arrival_s"], nan)
    e2e = np.where(completed, req["completion_s"] - req["arrival_s"], nan)
    out = req["num_output_tokens"]
    # vllm: TPOT = (latency - ttft) / (output_len - 1); 0 for one-token outputs in goodput.
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (e2e - ttft) / np.maximum(out - 1, 1), 0.0)
    tpot = np.where(completed, tpot, nan)
    return ttft, e2e, tpot


@dataclass(slots=True)
class RequestPass:
    """Streaming aggregates of the request rows (fed by ``add``, chunk by chunk)."""

    slo: SLOSpec | None
    class_names: list[str]
    num_requests: int = 0
    num_completed: int = 0
    first_arrival_s: float = math.inf
    last_arrival_s: float = -math.inf
    last_completion_s: float = -math.inf
    is_cut_short: bool = False  # some request NOT_FINISHED
    num_input_tokens: int = 0
    num_output_tokens: int = 0
    num_preemptions: int = 0
    num_prompt_scheduled: int = 0
    num_hit_tokens: int = 0
    rejected: dict[int, int] = field(default_factory=dict)
    ttft: LatencySketch = field(default_factory=LatencySketch)
    tpot: LatencySketch = field(default_factory=LatencySketch)
    e2e: LatencySketch = field(default_factory=LatencySketch)
    queueing: LatencySketch = field(default_factory=LatencySketch)
    slo_counts: dict[int, list[int]] = field(default_factory=dict)  # class -> [num, met]

    def add(self, req: Chunk) -> None:
        """Fold one chunk of request rows in."""
        reason = req["reject_reason"]
        completed = (reason == RejectReason.NONE) & np.isfinite(req["completion_s"])
        arrival = req["arrival_s"]
        self.num_requests += int(arrival.size)
        if arrival.size == 0:
            return
        self.first_arrival_s = min(self.first_arrival_s, float(arrival.min()))
        self.last_arrival_s = max(self.last_arrival_s, float(arrival.max()))
        self.is_cut_short |= bool((reason == RejectReason.NOT_FINISHED).any())
        if completed.any():
            self.last_completion_s = max(
                self.last_completion_s, float(req["completion_s"][completed].max())
            )
        ttft, e2e, tpot = request_latencies(req, completed)
        multi = completed & (req["num_output_tokens"] > 1)
        self.ttft.add(ttft[completed])
        self.tpot.add(tpot[multi])
        self.e2e.add(e2e[completed])
        self.queueing.add((req["first_scheduled_s"] - arrival)[completed])
        self.num_completed += int(completed.sum())
        self.num_input_tokens += int(req["num_prompt_tokens"][completed].sum())
        self.num_output_tokens += int(req["num_output_tokens"][completed].sum())
        self.num_preemptions += int(req["num_preemptions"].sum())
        scheduled = np.isfinite(req["first_scheduled_s"])
        self.num_prompt_scheduled += int(req["num_prompt_tokens"][scheduled].sum())
        self.num_hit_tokens += int(req["num_prefix_hit_tokens"][scheduled].sum())
        for r in RejectReason:
            if r != RejectReason.NONE:
                self.rejected[r] = self.rejected.get(r, 0) + int((reason == r).sum())
        if self.slo is not None:
            self._add_slo(req["slo_class_index"], ttft, tpot, completed)

    def _add_slo(
        self, class_index: np.ndarray, ttft: np.ndarray, tpot: np.ndarray, completed: np.ndarray
    ) -> None:
        assert self.slo is not None
        for index in np.unique(class_index):
            in_class = class_index == index
            targets = self.slo.targets_for(self.class_names[int(index)])
            met = meets_targets(ttft[in_class], tpot[in_class], completed[in_class], targets)
            counts = self.slo_counts.setdefault(int(index), [0, 0])
            counts[0] += int(in_class.sum())
            counts[1] += int(met.sum())

    def window(self, end_s: float) -> tuple[float, float]:
        """The measurement window (``summary._window``'s rule)."""
        if self.num_requests == 0:
            return 0.0, 0.0
        start = self.first_arrival_s
        if self.is_cut_short or self.num_completed == 0:
            return start, max(start, end_s)
        return start, self.last_completion_s

    def offered_rate(self) -> float | None:
        """Arrivals per second (``summary._offered_rate``'s rule)."""
        if self.num_requests < 2:
            return None
        span = self.last_arrival_s - self.first_arrival_s
        return (self.num_requests - 1) / span if span > 0 else None

    def slo_result(self, duration_s: float) -> SLOResult | None:
        """Attainment and goodput per class and overall."""
        if self.slo is None:
            return None
        goal = self.slo.attainment_target
        per_class = []
        for index in sorted(self.slo_counts):
            name = self.class_names[index]
            num, met = self.slo_counts[index]
            targets = self.slo.targets_for(name)
            per_class.append(attainment_from_counts(name, targets, num, met, duration_s, goal))
        num_all = sum(c[0] for c in self.slo_counts.values())
        met_all = sum(c[1] for c in self.slo_counts.values())
        overall = attainment_from_counts("all", None, num_all, met_all, duration_s, goal)
        return SLOResult(goal, overall, tuple(per_class))

    def latencies(self) -> dict[str, LatencyStats]:
        """The four request latency distributions, by summary field."""
        return {
            "ttft": self.ttft.stats(),
            "tpot": self.tpot.stats(),
            "e2e": self.e2e.stats(),
            "queueing": self.queueing.stats(),
        }


class IterationPass:
    """Streaming KV/batch time series, busy time and efficiency totals of the iteration log.

    Args:
        replicas: static facts per replica.
        window: (start, end) of the makespan.
        num_points: bins in the series.
    """

    def __init__(
        self,
        replicas: list[ReplicaInfo],
        window: tuple[float, float],
        num_points: int = DEFAULT_SERIES_POINTS,
    ) -> None:
        self.replicas = replicas
        self.window = window
        self.edges = np.linspace(window[0], window[1], num_points + 1)
        self.g_used = np.zeros(num_points + 1)
        self.g_seqs = np.zeros(num_points + 1)
        ids = [r.replica_id for r in replicas]
        self.busy = {rid: 0.0 for rid in ids}
        self._reach = {rid: -math.inf for rid in ids}
        lookup = np.zeros(max(ids, default=-1) + 1, dtype=np.float64)
        lookup[ids] = [r.num_kv_blocks for r in replicas]
        self._blocks = lookup
        self.kv_peak = self.seqs_peak = 0.0
        self.num_rows = 0
        self.flops = self.hbm_bytes = 0.0
        self.energy_j = {rid: 0.0 for rid in ids}
        self._carry = SegmentCarry()

    def add(self, it: Chunk) -> None:
        """Fold one chunk of iteration rows in (chunks in row order)."""
        rid = it["replica_id"].astype(np.int64)
        if rid.size == 0:
            return
        self.num_rows += int(rid.size)
        start = it["start_s"]
        end = start + it["duration_s"]
        used = it["num_kv_blocks_used"].astype(np.float64)
        seqs = it["num_seqs"].astype(np.float64)
        self.kv_peak = max(self.kv_peak, float((used / self._blocks[rid]).max()))
        self.seqs_peak = max(self.seqs_peak, float(seqs.max()))
        self.flops += float(it["flops"].sum())
        self.hbm_bytes += float(it["hbm_bytes"].sum())
        for r in self.energy_j:
            self.energy_j[r] += float(it["energy_j"][rid == r].sum())
        self._add_busy(rid, start, end)
        names = ("replica_id", "start_s", "duration_s", "repeat", *_STATE, *_RUN_INTEGRALS)
        self._integrate(self._carry.feed({k: it[k] for k in names if k in it}))

    def _add_busy(self, rid: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        for r in self.busy:
            mask = rid == r
            if not mask.any():
                continue
            st, en = start[mask], end[mask]
            order = np.argsort(st, kind="stable")
            st, en = st[order], en[order]
            before = np.maximum.accumulate(en)[:-1]
            reach = np.concatenate(([self._reach[r]], np.maximum(before, self._reach[r])))
            self.busy[r] += float(np.maximum(0.0, en - np.maximum(st, reach)).sum())
            self._reach[r] = max(self._reach[r], float(en.max()))

    def _integrate(self, seg: Chunk) -> None:
        if seg["start_s"].size:
            a = seg["start_s"]
            end = a + seg["duration_s"]
            b, values, slope = row_states(seg, a, end, seg["seg_end_s"], _STATE)
            self.g_used += state_integral_at(self.edges, a, b, values["num_kv_blocks_used"], slope)
            self.g_seqs += integral_at(self.edges, a, b, values["num_seqs"])

    def finish(self) -> None:
        """Fold in the held rows: each replica's last segment ends with its own iteration."""
        held = self._carry.flush()
        if held is not None:
            self._integrate(held)

    def over_time(self) -> tuple[TimeSeriesStats, TimeSeriesStats]:
        """KV utilisation and batch size (``summary._over_time``'s figures)."""
        t0, t1 = self.window
        span = t1 - t0
        total_blocks = float(sum(r.num_kv_blocks for r in self.replicas) or 1)
        if span <= 0 or self.num_rows == 0:
            return (
                TimeSeriesStats(mean=0.0, max=self.kv_peak),
                TimeSeriesStats(mean=0.0, max=self.seqs_peak),
            )
        kv = series_from_integrals(self.edges, self.g_used, total_blocks, self.kv_peak)
        scale = float(max(1, len(self.replicas)))
        return kv, series_from_integrals(self.edges, self.g_seqs, scale, self.seqs_peak)

    def efficiency(self, makespan_s: float, num_output_tokens: int) -> Efficiency:
        """Utilisation, cost and energy from the streamed totals."""
        return efficiency_from_totals(
            self.flops,
            self.hbm_bytes,
            self.energy_j,
            self.replicas,
            self.busy,
            makespan_s,
            num_output_tokens,
        )


def gap_stats(chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> LatencyStats:
    """ITL statistics of weighted token-gap chunks through one sketch."""
    sketch = LatencySketch()
    for values, weights in chunks:
        sketch.add(values, weights)
    return sketch.stats()


def fold(chunks: Iterator[Chunk] | Iterable[Chunk], into: RequestPass | IterationPass) -> None:
    """Feed every chunk to a pass."""
    for chunk in chunks:
        into.add(chunk)
