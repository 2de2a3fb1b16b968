"""``KVInbox``: sequences whose KV was computed elsewhere, admitted here as memory allows.

A decode-role replica (disaggregated prefill) or a live-migration target receives sequences
whose prompt KV and first token arrive from another replica. Its engine admits them FCFS
before each step while sequence slots and KV blocks above the watermark allow (DistServe:
decode-side admission waits for memory), and may promise admission at the next step so the
sender frees its copy early. The inbox decides; ``ReplicaState.admit_received`` keeps the
books.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from servesim.engine.sequence import Seq
from servesim.engine.state import ReplicaState


class KVInbox:
    """Arrived sequences of one virtual engine, FCFS, and the admissions promised to them.

    Attributes:
        queue: arrived sequences not yet admitted, in arrival order.
        num_promised: the head ``num_promised`` of ``queue`` are sure to be admitted at the
            next step (``promise``); the others call their ``on_admitted`` entry (if any)
            when admitted, so that the sender keeps their KV until then.
        num_promised_blocks: KV blocks those promised admissions will take.
    """

    __slots__ = (
        "max_num_seqs",
        "num_promised",
        "num_promised_blocks",
        "on_admitted",
        "queue",
        "state",
    )

    def __init__(self, state: ReplicaState, max_num_seqs: int) -> None:
        self.state = state
        self.max_num_seqs = max_num_seqs
        self.queue: deque[Seq] = deque()
        self.num_promised = 0
        self.num_promised_blocks = 0
        self.on_admitted: dict[Seq, Callable[[float], None]] = {}

    def __len__(self) -> int:
        return len(self.queue)

    def receive(self, seq: Seq, now: float, on_admitted: Callable[[float], None] | None) -> None:
        """Queue an arrived sequence; ``on_admitted(t)`` is called once its KV has a home
        here: now when the next step is sure to admit it (``promise``), else on admission."""
        promised = self.promise(seq)
        if on_admitted is not None:
            if promised:
                on_admitted(now)
            else:
                self.on_admitted[seq] = on_admitted
        self.queue.append(seq)

    def promise(self, seq: Seq) -> bool:
        """True (and promised) when ``seq``, arriving now, is sure to be admitted at the next
        step: every sequence ahead of it is, and slots and blocks above the watermark are
        left for all of them (nothing allocates here before that step, finishes only free)."""
        state = self.state
        if len(self.queue) != self.num_promised:
            return False
        if len(state.running) + self.num_promised >= self.max_num_seqs:
            return False
        need = state.received_blocks(seq)
        if not state.blocks.can_allocate(self.num_promised_blocks + need, keep_watermark=True):
            return False
        self.num_promised += 1
        self.num_promised_blocks += need
        return True

    def admit(self, now: float) -> None:
        """Admit arrived sequences as decoding, FCFS, while slots and blocks allow."""
        state = self.state
        queue = self.queue
        while queue and len(state.running) < self.max_num_seqs:
            seq = queue[0]
            need = state.received_blocks(seq)
            if not state.blocks.can_allocate(need, keep_watermark=True):
                assert not self.num_promised, "a promised admission found no memory"
                break
            queue.popleft()
            if self.num_promised:
                self.num_promised -= 1
                self.num_promised_blocks -= need
            else:
                callback = self.on_admitted.pop(seq, None)
                if callback is not None:
                    callback(now)  # the sender held its copy until now
            state.admit_received(seq, need, now)
