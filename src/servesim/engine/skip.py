"""Skip-ahead: runs of decode-only steps that nothing can change, advanced inside one event.

When a scheduler says its decision is stable (``can_skip``), a run of decode-only iterations
is advanced iteration by iteration with the perf model queried for each shape, up to the
first one that an external event (the next arrival, the duration limit), a finish or a
missing KV block could change, so results equal those of stepping one event at a time.
With nothing queued or stalled, a finish only shrinks the decode set (every built-in
scheduler then decodes the rest), so the run goes on through finishes; otherwise a finish
ends it. One engine skips alone (``skip_alone``).

Pipeline-parallel replicas: a replica with ``pp`` stages runs ``pp`` virtual engines that
book one shared stage timeline
in the order their steps start, so one engine cannot run ahead alone (its bookings would
come before the others' and change every later time). When every engine of the replica has
a decode-only step in flight that nothing can change (``VirtualEngine.can_skip``), the
engines' step ends are replayed here in the event loop's own order -- by time, then by the
order they were scheduled -- each completing its tick and booking its next step on the
timeline, exactly as stepping one event at a time would, until the next external event,
a finish that must end a run, or a missing KV block. The steps then in flight go back to
the event loop in their order. Results are identical to stepping
(``tests/engine/test_skip_identity.py``).

A cluster layer's own events that read or move replica state (autoscaler and migration
rounds and stages, ``EngineHandle.bounds``) are in the clock limit too, and a finish that
stops the run (``stop_when``) ends a run there, the loop's clock at the finish
(``_after_finish``).

The per-replica arrival limits (``RoutedAhead``) and the bound of the replicas receiving
KV (``KVArrivalBound``) are in ``skip_bounds``.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING

from servesim.engine.batch import Batch
from servesim.engine.rows import DecodeRun, append_run_row
from servesim.perf.types import BatchShape, StageTimes

if TYPE_CHECKING:
    from servesim.engine.vengine import VirtualEngine


class PipelineSkip:
    """The joint skip-ahead of one replica's pipeline virtual engines (its siblings, not
    its owner)."""

    __slots__ = ("engines",)

    def __init__(self, engines: list[VirtualEngine]) -> None:
        self.engines = engines

    def try_skip(self) -> None:
        """Replay the engines' decode-only steps while all of them can skip."""
        engines = self.engines
        for engine in engines:
            flight = engine.in_flight
            if flight is None or not (engine.skip_ahead and engine.can_skip(flight[1])):
                return
        limit = engines[0].links.clock_limit()
        flights = [engine.in_flight for engine in engines]
        end, _, first = min((f[3], f[0], i) for i, f in enumerate(flights) if f is not None)
        if not end < limit or _next_need(engines[first], _through_finishes(engines[first])) is None:
            return  # nothing to replay: the steps in flight stay as scheduled
        self._replay(limit)

    def _replay(self, limit: float) -> None:
        engines = self.engines
        loop = engines[0].loop
        heap: list[tuple[float, int, int]] = []
        runs: list[_Run] = []
        rows: list[tuple[DecodeRun, float]] = []  # the rows finishes end, written at the end
        for i, engine in enumerate(engines):
            handle, batch, times, end = engine.in_flight  # type: ignore[misc]
            loop.cancel(handle)
            heap.append((end, handle, i))
            runs.append(_Run(engine, batch, times, end, rows))
        heapq.heapify(heap)
        order = max(h for _, h, _ in heap) + 1
        latest = _cut_first_ticks(runs)
        while heap and heap[0][0] < limit:
            end, _, i = heap[0]
            run = runs[i]
            num_done = run.num_finished
            if latest != i:
                # engine i's next step starts at ``end``: the replica's latest-started tick
                # (another engine's) holds its state until then (timeseries.iteration_spans)
                other = runs[latest]
                other.span = min(other.end, end) - other.start
            new_end = run.tick(end)
            if new_end is None:
                break
            latest = i
            heapq.heapreplace(heap, (new_end, order, i))
            order += 1
            if run.num_finished != num_done:
                limit = _after_finish(engines[0], limit, end)
        # Rows of a replica come in start order (the spilled summary's segment carry relies on
        # it, metrics/streaming.py): the replay's rows are written once, sorted by start.
        for end, _, i in sorted(heap, key=lambda entry: entry[1]):
            runs[i].relaunch(end)
        rows.sort(key=lambda row: row[0].start_s)
        engine = engines[0]
        for segment, end_s in rows:
            append_run_row(engine.records, engine.links.replica_id, segment, end_s, segment.kv_peak)


def _cut_first_ticks(runs: list[_Run]) -> int:
    """Span the engines' steps in flight when a replay starts as ``iteration_spans`` spans
    their rows (each until the replica's next step start, at most its own end); the index of
    the latest-started one, whose span the next step start decides."""
    by_start = sorted(range(len(runs)), key=lambda i: runs[i].start)
    for a, b in itertools.pairwise(by_start):
        run = runs[a]
        run.span = min(run.end, runs[b].start) - run.start
    return by_start[-1]


def _through_finishes(engine: VirtualEngine) -> bool:
    """Whether a run may go on through finishes: nothing is queued, swapped or stalled (a
    prefill stalled for blocks would resume once a finish frees some)."""
    state = engine.state
    return not (state.swapped or state.prefilling or engine.scheduler.num_queued(state))


def _next_need(engine: VirtualEngine, through_finishes: bool) -> int | None:
    """Blocks the engine's next skipped tick needs, or None when it cannot be skipped."""
    state = engine.state
    need = state.group.next_tick_blocks(through_finishes)
    if need is None or need > state.blocks.num_available:
        return None
    return need


def skip_alone(engine: VirtualEngine, batch: Batch, times: StageTimes, end: float) -> None:
    """Advance ``engine``'s decode-only run from ``batch`` (booked to end at ``end``), then
    launch the step left in flight."""
    limit = engine.links.clock_limit()
    if not end < limit:
        # Nothing to skip (with many replicas, often: the next arrival anywhere is near):
        # launch as ``_Run.relaunch`` would after no ticks (``form`` set the batch's fields).
        engine.launch(batch, times, end)
        return
    run = _Run(engine, batch, times, end)
    run.limit = limit
    while end < run.limit:  # a finish re-reads it (``_Run.tick``)
        new_end = run.tick(end)
        if new_end is None:
            break
        end = new_end
    run.relaunch(end)


def _after_finish(engine: VirtualEngine, limit: float, end: float) -> float:
    """The run's limit after its tick ending at ``end`` finished a request. A ``stop_when``
    may have stopped the run there: the clock limit then drops to the stop (nothing else
    lowers it during a run: no event runs meanwhile), and the loop's clock is set to ``end``,
    the finish's own time, where stepping stops (``records.end_s``, the summary's window)."""
    now_limit = engine.links.clock_limit()
    if now_limit < limit:
        engine.loop.now = end
        return now_limit
    return limit


def _decode_times(engine: VirtualEngine, num: int, ctx_sum: int, max_ctx: int) -> StageTimes:
    """The stage times of a decode-only step of ``num`` sequences (the engine's fast path
    when its plan has one)."""
    if engine.price_plain is not None:
        return engine.price_plain(0, 0, 0, 0, 0, num, ctx_sum, max_ctx)
    return engine.price_shape(
        BatchShape(
            num_decode_seqs=num, decode_context_tokens=ctx_sum, max_decode_context_tokens=max_ctx
        )
    )


class _Run:
    """One engine's run of skipped steps: its current segment and step in flight."""

    __slots__ = (
        "batch",
        "blocks",
        "end",
        "engine",
        "limit",
        "num_finished",
        "queued",
        "rows",
        "segment",
        "span",
        "split_first",
        "start",
        "through_finishes",
        "times",
    )

    def __init__(
        self,
        engine: VirtualEngine,
        batch: Batch,
        times: StageTimes,
        end: float,
        rows: list[tuple[DecodeRun, float]] | None = None,
    ) -> None:
        state = engine.state
        self.rows = rows  # where its rows wait to be written (None: written at once)
        self.engine = engine
        self.batch = batch
        self.num_finished = 0
        # the step in flight: its start, end, blocks used (after its allocations), and its
        # state's span once another engine's later step start has cut it (-1: until its end)
        self.start = batch.start_s
        self.end = end
        self.blocks = batch.num_kv_blocks_used
        self.span = -1.0
        self.times = times
        self.through_finishes = _through_finishes(engine)
        self.segment = DecodeRun(self.start, len(state.group.members), batch.num_queued)
        # What the run's later ticks would see when formed (``VirtualEngine.form``): nothing
        # joins or leaves the queue during a run, but a pipeline engine's step in flight was
        # formed before requests that arrived since (its first tick keeps its own count); a
        # lone engine's batch was formed just now.
        self.queued = batch.num_queued
        if rows is not None:
            queue = engine.scheduler
            waiting = len(state.waiting) if engine.fcfs_count else queue.num_queued(state)
            self.queued = waiting + len(state.swapped)
        self.split_first = rows is not None  # a pipeline replay's (see ``tick``)
        self.limit = math.inf  # a lone run's clock limit (``skip_alone``)

    def tick(self, end: float) -> float | None:
        """Complete the step in flight (it ends at ``end``) and book the next; its end, or
        None when this step must complete through the event loop instead."""
        engine = self.engine
        state = engine.state
        group = state.group
        need = _next_need(engine, self.through_finishes)
        if need is None:
            return None
        times = self.times
        stamp = end + engine.output_lag(times)
        span = self.span if self.span >= 0.0 else end - self.start
        segment = self.segment
        segment.add(times, self.blocks, span, self.start - segment.start_s)
        if state.apply_decode_tick(stamp, engine.left):
            self.num_finished += 1
            engine.flush(segment, end, self.rows)
            self.segment = DecodeRun(end, len(group.members), self.queued)
            if self.rows is None:  # alone (a pipeline replay keeps its own limit)
                self.limit = _after_finish(engine, self.limit, end)
        elif self.split_first:
            # A pipeline engine's first tick is its own row: its state holds over its span
            # (cut by the others' steps in flight, ``_cut_first_ticks``), its duration may
            # include a wait behind another engine's prefill, and its queue count is the one
            # its batch was formed with; later ticks alternate evenly (their rows then spread
            # evenly over time, ``timeseries.row_states``).
            self.split_first = False
            engine.flush(segment, end, self.rows)
            self.segment = DecodeRun(end, len(group.members), self.queued)
        if engine.check_invariants:
            state.check()
        state.grant_tick_blocks(need)
        self.start = end
        self.blocks = state.blocks.num_used
        self.span = -1.0
        if engine.admission_lag_steps:
            engine.step_starts.append(end)
        self.times = times = _decode_times(
            engine, len(group.members), group.ctx_sum, group.max_context()
        )
        self.end = engine.links.timeline.reserve(end, times.stage_s, times.overhead_s)
        return self.end

    def relaunch(self, end: float) -> None:
        """Give the step now in flight (ending at ``end``) back to the event loop."""
        engine = self.engine
        state = engine.state
        engine.flush(self.segment, self.start, self.rows)
        batch = self.batch
        if len(batch.decodes) != len(state.group.members):
            batch.decodes = list(state.group.members)
        if batch.start_s != self.start:  # it ran ticks: the step in flight is a later one
            batch.num_queued = self.queued
        batch.start_s = self.start
        batch.num_kv_blocks_used = state.blocks.num_used
        engine.launch(batch, self.times, end)
