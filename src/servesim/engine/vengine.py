"""``VirtualEngine``: one scheduler's iteration loop (schedule -> time -> complete -> repeat).

Tokens are emitted at the end of an iteration: the first when the iteration that completes the
prompt ends (recorded one host overhead later when the scheduler models vLLM V0's async output
processing, and the engine's output latency later for a front end that streams them, see
``VirtualEngine._output_lag``). An engine that schedules ``k`` steps ahead (vLLM V1 async
scheduling, SGLang's and TensorRT-LLM's overlap schedulers: ``admission_lag_steps``) forms
step N+1 while step N runs, so a request entering during step N first joins step N+1+k; the
engine keeps such requests in ``arrivals`` until the step they can join is formed (an idle
engine takes them at once). When a scheduler says its decision is stable
(``can_skip``), a run of decode-only iterations is advanced inside one event, iteration by
iteration with the perf model queried for each shape, up to the first one that an arrival, the
duration limit, a finish or a missing KV block could change, so results equal those of
stepping one event at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from servesim.core.events import EventPriority
from servesim.engine.batch import Batch
from servesim.engine.contracts import (
    ContractError,
    KVCapacityError,
    check_batch,
    check_state,
    scheduler_name,
)
from servesim.engine.features import StepFeaturesMixin
from servesim.engine.handoff import KVHandoffMixin
from servesim.engine.rows import DecodeRun, append_batch_row, append_run_row, write_request
from servesim.engine.schedulers.base import ReplicaScheduler
from servesim.engine.sequence import Seq, SeqStatus
from servesim.engine.state import ReplicaState
from servesim.perf.types import BatchShape, StageTimes

if TYPE_CHECKING:
    from servesim.engine.replica import Replica

_PERF_CACHE_LIMIT = 65_536


class VirtualEngine(KVHandoffMixin, StepFeaturesMixin):
    """Runs one scheduler's batches on its replica's stages."""

    def __init__(
        self,
        replica: Replica,
        index: int,
        scheduler: ReplicaScheduler,
        state: ReplicaState,
        clock_limit: Callable[[], float],
        *,
        skip_ahead: bool,
        check_invariants: bool,
        admission_lag_steps: int = 0,
        output_latency_s: float = 0.0,
        output_per_seq_s: float = 0.0,
    ) -> None:
        self.replica = replica
        self.index = index
        self.scheduler = scheduler
        self.state = state
        self.clock_limit = clock_limit  # earliest external event (next arrival, stop time)
        # Speculative decodes keep a varying number of tokens per step, and LoRA steps cost
        # what their adapters do: both are stepped one iteration at a time.
        self.skip_ahead = (
            skip_ahead
            and getattr(scheduler, "supports_skip", False)
            and state.speculator is None
            and state.adapters is None
            and state.hybrid is None  # its split may change every step
        )
        self.check_invariants = check_invariants
        self.policy_name = scheduler_name(scheduler)  # as contract errors name it
        # a user policy's decodes are checked one by one (contracts.check_batch's scan)
        self.scan_batches = check_invariants or not (
            type(scheduler).__module__.startswith("servesim.engine.")
            and getattr(scheduler.config, "kind", "") != "custom"
        )
        # vLLM V0's async output processing (see _output_lag)
        self.stamps_after_next_step = bool(getattr(scheduler, "async_output_processing", False))
        self.output_latency_s = output_latency_s
        self.output_per_seq_s = output_per_seq_s  # EngineTiming.output_per_seq_s
        self.admission_lag_steps = admission_lag_steps
        # Requests that entered while steps they cannot join were already formed, as
        # (entry time, request), in entry order; only with admission_lag_steps > 0.
        self.arrivals: deque[tuple[float, Seq]] = deque()
        # Start times of the last admission_lag_steps steps launched (empty when idle): the
        # oldest is when the step now being formed was formed in the engine.
        self.step_starts: deque[float] = deque(maxlen=max(admission_lag_steps, 1))
        self.busy = False
        self.loop = replica.loop
        self.records = replica.records
        # called with each request that leaves (finished) this engine
        self.on_done: Callable[[Seq], None] = lambda seq: None
        self._init_handoff()

    def num_unfinished(self) -> int:
        """Requests queued, running or swapped here."""
        state = self.state
        queued = self.scheduler.num_queued(state) + len(self.incoming) + len(self.arrivals)
        return len(state.running) + len(state.swapped) + queued

    def add_request(self, seq: Seq, now: float) -> None:
        """A request enters the engine loop at ``now`` (queued for the first step it can
        join; an idle engine starts after every event at this instant, so simultaneous
        entries batch together)."""
        if self.admission_lag_steps:
            self.arrivals.append((now, seq))
        else:
            self.state.waiting.append(seq)
        if not self.busy:
            self.busy = True
            self.loop.schedule(now, self.start, now, priority=EventPriority.STEP_START)

    def _admit_arrivals(self, cutoff_s: float) -> None:
        """Queue for scheduling the requests that entered by ``cutoff_s``."""
        arrivals, waiting = self.arrivals, self.state.waiting
        while arrivals and arrivals[0][0] <= cutoff_s:
            waiting.append(arrivals.popleft()[1])

    # ---- one iteration -------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Form and launch the next batch, or go idle."""
        state = self.state
        state.num_swap_in_blocks = state.num_swap_out_blocks = 0
        state.num_preempted_this_step = state.num_decode_blocks_granted = 0
        if self.outgoing:
            self._release_outgoing(now)
        if self.incoming:
            self._admit_incoming(now)
        if self.arrivals:
            # Scheduling k steps ahead: the step formed now was formed, in the engine, when
            # the oldest of the last k steps was launched.
            self._admit_arrivals(self.step_starts[0] if self.step_starts else now)
        batch = self._schedule(now)
        if batch is None and self.arrivals:
            # Nothing formed ahead: the idle engine loop takes the new requests now.
            self._admit_arrivals(now)
            batch = self._schedule(now)
        if batch is None:
            self.busy = False
            self.step_starts.clear()
            if self.check_invariants:
                state.check()
            return
        self.busy = True
        if self.admission_lag_steps:
            self.step_starts.append(now)
        batch.start_s = now
        batch.num_queued = self.scheduler.num_queued(state) + len(state.swapped)
        batch.num_kv_blocks_used = state.blocks.num_used
        if state.speculator:
            times = self._spec_times(batch)
        elif state.hybrid is not None:
            times = self._hybrid_times(batch)
        else:
            times = self.perf(self._shape(batch))
        replica = self.replica
        num_swap = batch.num_swap_in_blocks + batch.num_swap_out_blocks
        swap_s = 0.0
        if num_swap:
            swap_s = num_swap * replica.swap_s_per_block + replica.swap_latency_s
            per_block = replica.swap_bytes_per_block
            self.records.count("swap_in_bytes", int(batch.num_swap_in_blocks * per_block))
            self.records.count("swap_out_bytes", int(batch.num_swap_out_blocks * per_block))
        if state.adapters is not None:
            times, load_s = self._with_lora(batch, times)
            swap_s += load_s
        end = replica.reserve(now, times.stage_s, times.overhead_s + swap_s)
        if (
            self.skip_ahead
            and not batch.prefills
            and not num_swap
            and not state.ready
            and not self.arrivals  # they join a later step: step to it
            and not state.num_preempted_this_step  # freed blocks may admit a queued request
            and len(batch.decodes) == len(state.group.members)
            and self.scheduler.can_skip(state)
        ):
            end, times = self._skip(batch, now, end, times)
        self.loop.schedule(end, self._complete, batch, times, priority=EventPriority.STEP_END)

    def _schedule(self, now: float) -> Batch | None:
        """The scheduler's next batch, checked against the engine's contracts."""
        state = self.state
        try:
            batch = self.scheduler.schedule(now, state)
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
        return batch

    def perf(self, shape: BatchShape) -> StageTimes:
        """Iteration time of ``shape`` (memoised by shape)."""
        cache = self.replica.perf_cache
        times = cache.get(shape)
        if times is None:
            times = self.replica.perf.iteration_time(self.replica.plan, shape)
            if len(cache) >= _PERF_CACHE_LIMIT:
                cache.clear()
            cache[shape] = times
        return times  # type: ignore[return-value]

    def _shape(self, batch: Batch) -> BatchShape:
        num_p = p_tok = cxk = csq = maxc = 0
        for seq, chunk in batch.prefills:
            num_p += 1
            p_tok += chunk
            cxk += chunk * seq.num_computed
            csq += chunk * chunk
            maxc = max(maxc, chunk)
        decodes = batch.decodes
        ctx_sum = max_ctx = 0
        if decodes:
            state = self.state
            if len(decodes) == state.num_decoding:
                group = state.group
                ctx_sum = group.ctx_sum
                max_ctx = group.max_context() if group.members else 0
                for seq in state.ready:
                    ctx = seq.num_prompt_tokens + seq.num_emitted
                    ctx_sum += ctx
                    max_ctx = max(max_ctx, ctx)
            else:
                contexts = [state.context(seq) for seq in decodes]
                ctx_sum, max_ctx = sum(contexts), max(contexts)
        return BatchShape(
            num_prefill_seqs=num_p,
            num_prefill_tokens=p_tok,
            prefill_chunk_x_context=cxk,
            prefill_chunk_sq=csq,
            max_prefill_chunk_tokens=maxc,
            num_decode_seqs=len(decodes),
            decode_context_tokens=ctx_sum,
            max_decode_context_tokens=max_ctx,
        )

    def _complete(self, batch: Batch, times: StageTimes) -> None:
        now = self.loop.now
        state = self.state
        stamp = now + self._output_lag(times)
        if batch.decodes:
            if state.speculator is None:
                self._decode_tick(batch.decodes, stamp)
            else:
                self._spec_tick(batch.decodes, stamp)
        ready = state.ready
        # Outputs handed to the front end ahead of the next first token (output_per_seq_s).
        ahead = len(batch.decodes)
        for seq, chunk in batch.prefills:
            seq.num_computed += chunk
            if seq.prompt_keys and seq.can_register:
                self._register(seq)
            if seq.num_computed >= seq.prefill_target:
                del state.prefilling[seq]
                ahead += 1
                first = seq.num_emitted == 0
                self._emit(seq, stamp)
                if first and self.output_per_seq_s:
                    # Only the client's first-token time waits; gaps count from the step.
                    seq.first_token_s = stamp + ahead * self.output_per_seq_s
                if seq.num_emitted >= seq.num_output_tokens:
                    self._finish(seq, max(stamp, seq.first_token_s))
                elif self.replica.on_prefilled is not None:
                    self._hand_off(seq, now)
                else:
                    seq.status = SeqStatus.DECODING
                    ready[seq] = None
        self._record(batch, times, now - batch.start_s)
        self.scheduler.on_batch_done(batch, now)
        if self.check_invariants:
            state.check()  # full recount (tests)
        else:
            state.blocks.check()  # O(1): free + used + cached-evictable == total
        self.start(now)

    def _output_lag(self, times: StageTimes) -> float:
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

    def _decode_tick(self, decodes: list[Seq], now: float) -> None:
        state = self.state
        group = state.group
        if len(decodes) == state.num_decoding:
            joiners = list(state.ready) if state.ready else []
        else:
            chosen = set(decodes)
            for seq in [s for s in group.members if s not in chosen]:
                group.leave(seq)  # skipped this tick: its next gap is its own
                state.ready[seq] = None
            joiners = [s for s in decodes if s not in group.members]
        for seq in group.advance(now):
            self._finish(seq, now)
        for seq in joiners:
            del state.ready[seq]
            self._emit(seq, now)
            if seq.num_emitted >= seq.num_output_tokens:
                self._finish(seq, now)
            else:
                group.join(seq)

    def _skip(
        self, batch: Batch, now: float, end: float, times: StageTimes
    ) -> tuple[float, StageTimes]:
        """Complete decode-only iterations in place while nothing can change the schedule;
        returns the end and times of the iteration left in flight.

        With nothing queued or stalled, a finish only shrinks the decode set (every built-in
        scheduler then decodes the rest), so the run goes on through finishes; otherwise a
        finish, like a missing block or the next arrival, ends the run.
        """
        state = self.state
        group = state.group
        blocks = state.blocks
        limit = self.clock_limit()
        # (a prefill stalled for blocks would resume once a finish frees some)
        through_finishes = not (
            state.swapped or state.prefilling or self.scheduler.num_queued(state)
        )
        segment = DecodeRun(now, len(group.members), batch.num_queued)
        start = now
        while end < limit:
            nxt = group.tick + 1
            finishers = group.finishing(nxt) if group.next_finish_tick() <= nxt else []
            if finishers and (not through_finishes or len(finishers) >= len(group.members)):
                break
            need = group.num_blocks_needed(1)
            need -= sum(1 for s in finishers if (s.gkey + nxt - 1) % group.block_size == 0)
            if need > blocks.num_available:
                break
            stamp = end + self._output_lag(times)
            done = group.advance(stamp)
            assert len(done) == len(finishers)
            segment.add(times)
            for seq in done:
                self._finish(seq, stamp)
            if done:
                self._flush(segment, end)
                segment = DecodeRun(end, len(group.members), batch.num_queued)
            if self.check_invariants:
                state.check()
            blocks.allocate(need)
            start = end
            if self.admission_lag_steps:
                self.step_starts.append(start)
            shape = BatchShape(
                num_decode_seqs=len(group.members),
                decode_context_tokens=group.ctx_sum,
                max_decode_context_tokens=group.max_context(),
            )
            times = self.perf(shape)
            end = self.replica.reserve(start, times.stage_s, times.overhead_s)
        self._flush(segment, start)
        if len(batch.decodes) != len(group.members):
            batch.decodes = list(group.members)
        batch.start_s = start
        batch.num_kv_blocks_used = blocks.num_used
        return end, times

    def _flush(self, segment: DecodeRun, end_s: float) -> None:
        """Record a run of identical decode iterations as one row (``repeat`` = its length)."""
        if not segment.num_ticks:
            return
        self.scheduler.on_decode_ticks(self.state, segment.num_ticks)
        self.records.count("num_skipped_iterations", segment.num_ticks)
        append_run_row(
            self.records, self.replica.replica_id, segment, end_s, self.state.blocks.num_used
        )

    # ---- per-request bookkeeping ---------------------------------------------------------
    def _register(self, seq: Seq) -> None:
        """Cache the prompt blocks the last chunk completed (prefix caching)."""
        keys = seq.prompt_keys
        assert keys is not None
        full = min(seq.num_computed // self.state.block_size, len(keys))
        blocks = self.state.blocks
        for j in range(len(seq.block_keys), full):
            if not blocks.register(keys[j]):
                seq.can_register = False
                return
            seq.block_keys.append(keys[j])
            seq.num_private -= 1

    def _emit(self, seq: Seq, now: float) -> None:
        if seq.num_emitted == 0:
            seq.first_token_s = now
        else:
            gap = now - seq.last_token_s
            if gap > seq.max_gap_s:
                seq.max_gap_s = gap
            self.records.token_gaps.add(gap, 1)
        seq.num_emitted += 1
        seq.last_token_s = now

    def _finish(self, seq: Seq, now: float) -> None:
        self.state.finish(seq)
        self.scheduler.on_finish(seq)
        self.replica.forget(seq)
        write_request(self.records, seq, completion_s=now)
        self.on_done(seq)

    def _record(self, batch: Batch, times: StageTimes, duration_s: float) -> None:
        append_batch_row(
            self.records,
            self.replica.replica_id,
            batch,
            times,
            duration_s,
            self.state.num_preempted_this_step,
        )
