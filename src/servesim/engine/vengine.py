"""``VirtualEngine``: one scheduler's iteration loop (schedule -> time -> complete -> repeat).

Tokens are emitted at the end of an iteration: the first when the iteration that completes the
prompt ends (recorded one host overhead later when the scheduler models vLLM V0's async output
processing, and the engine's output latency later for a front end that streams them, see
``VirtualEngine.output_lag``). An engine that schedules ``k`` steps ahead (vLLM V1 async
scheduling, SGLang's and TensorRT-LLM's overlap schedulers: ``admission_lag_steps``) forms
step N+1 while step N runs, so a request entering during step N first joins step N+1+k; the
engine keeps such requests in ``arrivals`` until the step they can join is formed (an idle
engine takes them at once). Decode-only runs that nothing can change are advanced inside one
event (skip-ahead, engine/skip.py), with results equal to stepping one event at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from servesim.core.events import EventPriority
from servesim.engine.batch import Batch
from servesim.engine.contracts import (
    ContractError,
    KVCapacityError,
    check_batch,
    check_state,
    scheduler_name,
)
from servesim.engine.features import (
    batch_aggregates,
    batch_shape,
    hybrid_times,
    lora_times,
    spec_times,
)
from servesim.engine.handoff import KVInbox
from servesim.engine.links import EngineLinks
from servesim.engine.outbox import Outbox, Released
from servesim.engine.profiles.base import EngineTiming
from servesim.engine.rows import DecodeRun, append_batch_row, append_run_row, write_request
from servesim.engine.schedulers.base import ReplicaScheduler
from servesim.engine.schedulers.queues import RequestQueue
from servesim.engine.sequence import Seq, SeqStatus
from servesim.engine.skip import PipelineSkip, skip_alone
from servesim.engine.state import ReplicaState
from servesim.perf.fastcost import FastCost
from servesim.perf.types import StageTimes

if TYPE_CHECKING:
    from servesim.engine.dp_group import DPGroup


class VirtualEngine:
    """Runs one scheduler's batches on its replica's stages: ``schedule`` decides, the
    engine prices and books the batch, ``ReplicaState.apply`` keeps the books at its end."""

    def __init__(
        self,
        index: int,
        scheduler: ReplicaScheduler,
        state: ReplicaState,
        links: EngineLinks,
        *,
        skip_ahead: bool,
        check_invariants: bool,
        timing: EngineTiming | None = None,
    ) -> None:
        timing = timing or EngineTiming()
        scheduler.settle_contract()  # before any read of the contract (compiled build)
        self.index, self.scheduler, self.state, self.links = index, scheduler, state, links
        self.loop, self.records, self.price = links.loop, links.records, links.price
        # the pricer's own function (timeline.BatchPricer); FastCost.plain prices from aggregates
        fast = self.price_shape = links.price.fn
        self.price_plain = fast.plain if isinstance(fast, FastCost) and fast.simple else None
        self.reserve = links.timeline.reserve  # bound once: called every step
        # Speculative decodes keep a varying number of tokens per step, LoRA steps cost
        # what their adapters do, a hybrid split may change every step: all are stepped
        # one iteration at a time.
        plain = state.speculator is None and state.adapters is None and state.hybrid is None
        self.skip_ahead = skip_ahead and scheduler.supports_skip and plain
        self.check_invariants = check_invariants
        self.policy_name = scheduler_name(scheduler)  # as contract errors name it
        # a user policy's decodes are checked one by one (contracts.check_batch's scan)
        self.scan_batches = check_invariants or not scheduler.is_builtin
        self.fcfs_count, self.batch_done = _shortcuts(scheduler)
        # vLLM V0's async output processing (see output_lag)
        self.stamps_after_next_step = scheduler.async_output_processing
        self.output_latency_s = timing.output_latency_s
        self.output_per_seq_s = timing.output_per_seq_s  # EngineTiming.output_per_seq_s
        self.admission_lag_steps = timing.admission_lag_steps
        # Requests that entered while steps they cannot join were already formed, as
        # (entry time, request), in entry order; only with admission_lag_steps > 0.
        self.arrivals: deque[tuple[float, Seq]] = deque()
        # Start times of the last admission_lag_steps steps launched (empty when idle): the
        # oldest is when the step now being formed was formed in the engine.
        self.step_starts: deque[float] = deque(maxlen=max(self.admission_lag_steps, 1))
        self._init_runtime()

    def _init_runtime(self) -> None:
        """The state that changes while the run goes: busy flag, KV inbox and outbox,
        the step in flight, pipeline and DP-group ties, the leave callback."""
        self.busy = False
        # Sequences whose KV was computed elsewhere, admitted before each step.
        self.inbox = KVInbox(self.state, self.scheduler.max_num_seqs)
        # Decoding sequences to take off at the next iteration boundary (live migration).
        self.outbox = Outbox(self.state, self.scheduler, self.links)
        # Set on prefill-role replicas: called with (seq, now) once a prompt and its first
        # token are done; the sequence has left, its KV held until ``release_held``.
        self.on_prefilled: Callable[[Seq, float], None] | None = None
        # The step in flight (event handle, batch, times, end) and, on a pipeline-parallel
        # replica, the joint skip-ahead of its engines (engine/skip.py).
        self.in_flight: tuple[int, Batch, StageTimes, float] | None = None
        self.pipeline: PipelineSkip | None = None
        # A data-parallel-attention rank steps in lockstep with its group (engine/dp_group.py):
        # the group starts and completes its steps.
        self.group: DPGroup | None = None
        # called with each request that leaves (finished) this engine
        self.on_done: Callable[[Seq], None] = lambda seq: None

    @property
    def incoming(self) -> deque[Seq]:
        """Arrived sequences (KV computed elsewhere) not yet admitted."""
        return self.inbox.queue

    def num_unfinished(self) -> int:
        """Requests queued, running or swapped here."""
        state = self.state
        queued = self.scheduler.num_queued(state) + len(self.inbox) + len(self.arrivals)
        return len(state.running) + len(state.swapped) + queued

    # ---- requests in ---------------------------------------------------------------------
    def add_request(self, seq: Seq, now: float) -> None:
        """A request enters the engine loop at ``now`` (queued for the first step it can
        join; an idle engine starts after every event at this instant, so simultaneous
        entries batch together)."""
        if self.admission_lag_steps:
            self.arrivals.append((now, seq))
        else:
            self.state.waiting.append(seq)
        self._wake(now)

    def receive(
        self, seq: Seq, now: float, on_admitted: Callable[[float], None] | None = None
    ) -> None:
        """A sequence whose KV was computed elsewhere arrives (``KVInbox.receive``)."""
        self.inbox.receive(seq, now, on_admitted)
        self._wake(now)

    def admits_at_next_step(self, seq: Seq) -> bool:
        """True (and promised) when ``seq`` arriving now is sure to be admitted at the next
        step (``KVInbox.promise``)."""
        return self.inbox.promise(seq)

    def release_held(self, seq: Seq, now: float) -> None:
        """Free the KV held for ``seq`` after its hand-off; an idle engine wakes up, since
        the freed blocks may admit a queued prompt."""
        self.state.release_held(seq)
        if self.check_invariants:
            self.state.check()
        if self.scheduler.num_queued(self.state) or self.state.running:
            self._wake(now)

    def decoding_newest_first(self) -> list[Seq]:
        """Decoding requests here, most recently admitted first (migration candidates)."""
        return [s for s in reversed(self.state.running) if s.status == SeqStatus.DECODING]

    def num_kv_tokens(self, seq: Seq) -> int | None:
        """Tokens of KV a running ``seq`` holds here (None: not running here)."""
        if seq not in self.state.running:
            return None
        return seq.num_prompt_tokens + self.state.emitted(seq) - 1

    def detach(self, seq: Seq, done: Released) -> bool:
        """Mark a running ``seq`` to leave at the next iteration boundary (live migration);
        False when it is not running here (``Outbox.mark``)."""
        return self.outbox.mark(seq, done)

    def _wake(self, now: float) -> None:
        if self.group is not None:
            self.group.wake(now)
        elif not self.busy:
            self.busy = True
            self.loop.schedule(now, self.start, now, priority=EventPriority.STEP_START)

    def _admit_arrivals(self, cutoff_s: float) -> None:
        """Queue for scheduling the requests that entered by ``cutoff_s``."""
        arrivals, waiting = self.arrivals, self.state.waiting
        while arrivals and arrivals[0][0] <= cutoff_s:
            waiting.append(arrivals.popleft()[1])

    # ---- one iteration: schedule, time, complete -----------------------------------------
    def start(self, now: float) -> None:
        """Form and launch the next batch, or go idle."""
        batch = self.form(now)
        if batch is None:
            return
        times, host_s = self.times(batch)
        end = self.reserve(now, times.stage_s, times.overhead_s + host_s)
        # (a step with prefills never skips: can_skip's first test, made without the call)
        if not self.skip_ahead or batch.prefills or not self.can_skip(batch):
            self.launch(batch, times, end)
        elif self.pipeline is None:
            skip_alone(self, batch, times, end)
        else:  # pp > 1: the engines skip together
            self.launch(batch, times, end)
            self.pipeline.try_skip()

    def form(self, now: float) -> Batch | None:
        """The next batch, stamped as starting at ``now``; None when the engine goes idle."""
        batch = self._next_batch(now)
        if batch is None:
            self.busy = False
            self.step_starts.clear()
            if self.check_invariants:
                self.state.check()
            return None
        self.busy = True
        if self.admission_lag_steps:
            self.step_starts.append(now)
        state = self.state
        batch.start_s = now
        queued = len(state.waiting) if self.fcfs_count else self.scheduler.num_queued(state)
        batch.num_queued = queued + len(state.swapped)
        blocks = state.blocks
        batch.num_kv_blocks_used = blocks.num_private + blocks.num_cached_in_use  # num_used
        return batch

    def launch(self, batch: Batch, times: StageTimes, end: float) -> None:
        """Schedule the completion of ``batch`` (booked to end at ``end``)."""
        handle = self.loop.push(end, EventPriority.STEP_END, self._complete, (batch, times))
        self.in_flight = (handle, batch, times, end)

    def _next_batch(self, now: float) -> Batch | None:
        """Take what entered, then ask the scheduler for the next batch."""
        self.state.begin_step()
        if self.outbox.marked:
            self.outbox.release(now)
        if self.inbox.queue:
            self.inbox.admit(now)
        if self.arrivals:
            # Scheduling k steps ahead: the step formed now was formed, in the engine, when
            # the oldest of the last k steps was launched.
            self._admit_arrivals(self.step_starts[0] if self.step_starts else now)
        batch = self._schedule(now)
        if batch is None and self.arrivals:
            # Nothing formed ahead: the idle engine loop takes the new requests now.
            self._admit_arrivals(now)
            batch = self._schedule(now)
        return batch

    def _schedule(self, now: float) -> Batch | None:
        """The scheduler's next batch, checked against the engine's contracts."""
        state = self.state
        try:
            batch = self.scheduler.step(now, state)
        except KVCapacityError as exc:
            raise ContractError(self.policy_name, "kv-capacity", str(exc), now) from None
        check_batch(
            self.policy_name,
            self.scheduler,
            batch,
            state,
            now,
            state.num_decode_blocks_granted,
            self.scan_batches,
        )
        check_state(self.policy_name, state, now)
        return cast("Batch | None", batch)  # check_batch has checked the type

    def times(self, batch: Batch) -> tuple[StageTimes, float]:
        """The batch's stage times and the host-side time it adds (swap and LoRA copies)."""
        state = self.state
        count = self.records.count
        if state.speculator:
            times = spec_times(state.speculator, batch, state, self.price, self.price.perf)
        elif state.hybrid is not None:
            times = hybrid_times(batch, state, self.price, count)
        elif self.price_plain is not None:
            times = self.price_plain(*batch_aggregates(batch, state))
        else:
            times = self.price_shape(batch_shape(batch, state))
        num_swap = batch.num_swap_in_blocks + batch.num_swap_out_blocks
        host_s = 0.0  # SwapLink.time_s(0)
        if num_swap:
            swap = self.links.swap
            host_s = swap.time_s(num_swap)
            count("swap_in_bytes", int(batch.num_swap_in_blocks * swap.bytes_per_block))
            count("swap_out_bytes", int(batch.num_swap_out_blocks * swap.bytes_per_block))
        if state.adapters is not None:
            per = self.scheduler.num_tokens_per_decode
            times, load_s = lora_times(state.adapters, batch, times, per, count)
            host_s += load_s
        return times, host_s

    def can_skip(self, batch: Batch) -> bool:
        """True when the batch starts a run of decode-only iterations nothing can change."""
        state = self.state
        return (
            not batch.prefills
            and not (batch.num_swap_in_blocks or batch.num_swap_out_blocks)
            and not state.ready
            and not self.arrivals  # they join a later step: step to it
            and not state.num_preempted_this_step  # freed blocks may admit a queued request
            and not self.outbox.marked  # a migrating sequence leaves at the next boundary
            and len(batch.decodes) == len(state.group.members)
            and self.scheduler.can_skip(state)
        )

    def _complete(self, batch: Batch, times: StageTimes) -> None:
        """The batch has run: the state applies it, the scheduler hears of it, next step."""
        self.in_flight = None
        self.finish(batch, times)
        self.start(self.loop.now)

    def finish(self, batch: Batch, times: StageTimes) -> None:
        """Book the end of ``batch`` now: the state applies it, the scheduler hears of it."""
        now = self.loop.now
        state = self.state
        hand_off = self._hand_off if self.on_prefilled is not None else None
        # output_lag(times), inlined (every step)
        lag = times.overhead_s if self.stamps_after_next_step else 0.0
        stamp = now + (lag + self.output_latency_s if self.output_latency_s else lag)
        state.apply(batch, now, stamp, self.left, hand_off, self.output_per_seq_s)
        replica_id, num_preempted = self.links.replica_id, state.num_preempted_this_step
        append_batch_row(self.records, replica_id, batch, times, now - batch.start_s, num_preempted)
        if self.batch_done is not None:
            self.batch_done(batch, now)
        if self.check_invariants:
            state.check()  # full recount (tests)
        else:
            state.blocks.check()  # O(1): free + used + cached-evictable == total

    def output_lag(self, times: StageTimes) -> float:
        """Delay between an iteration's end and the time its tokens are recorded.

        vLLM 0.6 (V0) with async output processing (on by default with CUDA graphs, no PP)
        processes the output of step N inside step N+1: the model runner calls the engine's
        callback after launching step N+1's forward pass and before sampling, and that
        callback detokenizes, checks stops and takes the stats timestamps (TTFT, ITL, E2E).
        So tokens are stamped after the next step's host preparation (scheduling, input
        preparation, broadcast to the TP workers), i.e. one host overhead later; the host
        overhead of this step stands for the next one's. Sources: vLLM RFC #6913
        (asynchronous output processor) and ``execute_model`` in vLLM 0.6's model runner.

        A front end in another process (vLLM V1's API server, SGLang's detokenizer) adds its
        ``output_latency_s``: the tokens reach the client that much after the step.
        """
        lag = times.overhead_s if self.stamps_after_next_step else 0.0
        return lag + self.output_latency_s if self.output_latency_s else lag

    def flush(
        self,
        segment: DecodeRun,
        end_s: float,
        rows: list[tuple[DecodeRun, float]] | None = None,
    ) -> None:
        """Record a run of identical decode iterations as one row (``repeat`` = its length);
        with ``rows``, the row is left there for the caller to write (``PipelineSkip``
        writes a replay's rows in start order)."""
        if not segment.num_ticks:
            return
        self.scheduler.on_decode_ticks(self.state, segment.num_ticks)
        self.records.count("num_skipped_iterations", segment.num_ticks)
        if rows is not None:
            rows.append((segment, end_s))
            return
        append_run_row(self.records, self.links.replica_id, segment, end_s, segment.kv_peak)

    # ---- requests out -------------------------------------------------------------------
    def left(self, seq: Seq, completion_s: float) -> None:
        """A finished request has left the state's books: tell the others, write its row."""
        self.scheduler.notify_finish(seq)
        self.links.on_leave(seq)
        write_request(self.records, seq, completion_s=completion_s)
        self.on_done(seq)

    def _hand_off(self, seq: Seq, now: float) -> None:
        """A prefill-role replica is done with ``seq`` (prompt + first token, its KV held by
        the state): give it to ``on_prefilled`` (the cluster's KV transfer)."""
        self.scheduler.notify_finish(seq)
        self.links.on_leave(seq)
        callback = self.on_prefilled
        assert callback is not None
        callback(seq, now)


def _shortcuts(scheduler: ReplicaScheduler) -> tuple[bool, Callable[[Batch, float], None] | None]:
    """(queue count is ``len(waiting)``, the batch-done hook or None): an FCFS queue with the
    base class's hooks (declared on the class, so known at construction) has nothing to count
    and no one to tell when a batch ends, so the loop neither calls nor reads them."""
    kind, base = type(scheduler), ReplicaScheduler
    fcfs = type(scheduler.queue) is RequestQueue
    hooks = kind.notify_batch_done, kind.on_batch_done
    quiet = fcfs and hooks == (base.notify_batch_done, base.on_batch_done)
    done = None if quiet else scheduler.notify_batch_done  # (bound: the instance's)
    return fcfs and kind.num_queued is base.num_queued, done
