"""Moving a request's KV between engines: prefill hand-off, held KV, receive-side admission.

``KVHandoffMixin`` is part of ``VirtualEngine`` (servesim.engine.vengine): a prefill-role
replica hands a finished prompt to the cluster's KV transfer and keeps its KV until the
destination has it; a decode-side engine admits arrived sequences FCFS as memory allows
(DistServe) and may promise admission at the next step so the sender frees its copy early;
live migration takes decoding sequences off at an iteration boundary.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from servesim.core.events import EventPriority
from servesim.engine.schedulers.base import ReplicaScheduler
from servesim.engine.sequence import Seq, SeqStatus
from servesim.engine.state import ReplicaState

if TYPE_CHECKING:
    from servesim.core.events import EventLoop
    from servesim.engine.replica import Replica


class KVHandoffMixin:
    """The hand-off, hold and receive-admission half of ``VirtualEngine``."""

    replica: Replica
    scheduler: ReplicaScheduler
    state: ReplicaState
    loop: EventLoop
    busy: bool
    check_invariants: bool
    start: Callable[[float], None]  # VirtualEngine.start: form and launch the next batch

    def _init_handoff(self) -> None:
        """Empty hand-off state (called from ``VirtualEngine.__init__``)."""
        # Sequences whose prompt KV was computed elsewhere (disaggregated prefill, migration)
        # and has arrived here; admitted FCFS before each step as KV blocks allow.
        self.incoming: deque[Seq] = deque()
        # The head ``num_promised`` of ``incoming`` are sure to be admitted at the next step
        # (``admits_at_next_step``); the others call their ``on_admitted`` entry (if any)
        # when admitted, so that the sender keeps their KV until then.
        self.num_promised = 0
        self.num_promised_blocks = 0
        self.on_admitted: dict[Seq, Callable[[float], None]] = {}
        # Decoding sequences to take off this engine at the next iteration boundary (live
        # migration), each with the callback that gets it once its KV is released here.
        self.outgoing: dict[Seq, Callable[[Seq | None, float], None]] = {}

    def _hand_off(self, seq: Seq, now: float) -> None:
        """A prefill-role replica is done with ``seq`` (prompt + first token): give it to the
        replica's ``on_prefilled`` callback (the cluster's KV transfer). Its KV stays allocated
        here until ``release_held`` (the destination has pulled it)."""
        self.state.hold(seq)
        self.scheduler.on_finish(seq)
        self.replica.forget(seq)
        seq.status = SeqStatus.WAITING
        callback = self.replica.on_prefilled
        assert callback is not None
        callback(seq, now)

    def release_held(self, seq: Seq, now: float) -> None:
        """Free the KV ``_hand_off`` kept for ``seq``; an idle engine wakes up, since the
        freed blocks may admit a queued prompt."""
        self.state.release_held(seq)
        if self.check_invariants:
            self.state.check()
        if not self.busy and (self.scheduler.num_queued(self.state) or self.state.running):
            self.busy = True
            self.loop.schedule(now, self.start, now, priority=EventPriority.STEP_START)

    def admits_at_next_step(self, seq: Seq) -> bool:
        """True when ``seq``, arriving in ``incoming`` now, is sure to be admitted at the next
        step: every sequence ahead of it is, and slots and blocks above the watermark are
        left for all of them (nothing allocates here before that step, finishes only free).
        Such an arrival is promised its memory: the sender may free its copy now."""
        state = self.state
        if len(self.incoming) != self.num_promised:
            return False
        if len(state.running) + self.num_promised >= self.scheduler.max_num_seqs:
            return False
        need = self._incoming_blocks(seq)
        if not state.blocks.can_allocate(self.num_promised_blocks + need, keep_watermark=True):
            return False
        self.num_promised += 1
        self.num_promised_blocks += need
        return True

    def _incoming_blocks(self, seq: Seq) -> int:
        kv_tokens = seq.num_prompt_tokens + seq.num_emitted - 1
        return -(-kv_tokens // self.state.block_size)

    def _release_outgoing(self, now: float) -> None:
        """Take the sequences marked for migration off this engine (still decoding here:
        released; otherwise, e.g. preempted or finished meanwhile, the callback gets None)."""
        outgoing, self.outgoing = self.outgoing, {}
        for seq, callback in outgoing.items():
            if seq.status != SeqStatus.DECODING or seq not in self.state.running:
                callback(None, now)
                continue
            self.state.finish(seq)  # leaves the decode group (writes back its counters)
            self.scheduler.on_finish(seq)
            self.replica.forget(seq)
            seq.status = SeqStatus.WAITING
            callback(seq, now)

    def _admit_incoming(self, now: float) -> None:
        """Admit arrived sequences (prompt KV computed elsewhere) as decoding, FCFS, while
        sequence slots and KV blocks above the watermark allow (DistServe: decode-side
        admission waits for memory)."""
        state = self.state
        blocks = state.blocks
        limit = self.scheduler.max_num_seqs
        while self.incoming and len(state.running) < limit:
            seq = self.incoming[0]
            need = self._incoming_blocks(seq)
            if not blocks.can_allocate(need, keep_watermark=True):
                assert not self.num_promised, "a promised admission found no memory"
                break
            self.incoming.popleft()
            if self.num_promised:
                self.num_promised -= 1
                self.num_promised_blocks -= need
            else:
                callback = self.on_admitted.pop(seq, None)
                if callback is not None:
                    callback(now)  # the sender held its copy until now
            blocks.allocate(need)
            seq.num_private = need
            seq.block_keys = []
            seq.num_computed = seq.prefill_target
            seq.status = SeqStatus.DECODING
            if math.isnan(seq.first_scheduled_s):
                seq.first_scheduled_s = now
            if math.isnan(seq.first_token_s):
                # The user's stream starts at the decode replica (vLLM/Dynamo disaggregation).
                seq.first_token_s = seq.last_token_s = now
            state.running[seq] = None
            state.ready[seq] = None
