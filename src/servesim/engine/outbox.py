"""``Outbox``: the decoding sequences marked to leave an engine at its next iteration boundary
(live migration, ``cluster/migration.py``); the mirror of ``KVInbox`` (``engine/handoff.py``).

A sequence is marked while the step it runs in may still be in flight; it leaves only between
steps, when the engine forms its next batch, so its KV is released with the books complete:
still decoding here, it leaves the state (its decode-group counters written back), the
scheduler and the replica, and its callback gets it; otherwise (preempted or finished
meanwhile) the callback gets None.
"""

from __future__ import annotations

from collections.abc import Callable

from servesim.engine.links import EngineLinks
from servesim.engine.schedulers.base import ReplicaScheduler
from servesim.engine.sequence import Seq, SeqStatus
from servesim.engine.state import ReplicaState

__all__ = ["Outbox", "Released"]

# called with (the sequence released, or None when it could not leave, now)
Released = Callable[[Seq | None, float], None]


class Outbox:
    """Sequences to take off one engine at its next iteration boundary, in marking order."""

    def __init__(
        self, state: ReplicaState, scheduler: ReplicaScheduler, links: EngineLinks
    ) -> None:
        self.state, self.scheduler, self.links = state, scheduler, links
        # each marked sequence with the callback that gets it once its KV is released here
        self.marked: dict[Seq, Released] = {}

    def mark(self, seq: Seq, done: Released) -> bool:
        """Mark a running ``seq`` to leave at the next iteration boundary; False when it is
        not running here."""
        if seq not in self.state.running:
            return False
        self.marked[seq] = done
        return True

    def release(self, now: float) -> None:
        """Take the marked sequences off the engine (called before the next batch forms)."""
        marked, self.marked = self.marked, {}
        for seq, callback in marked.items():
            if seq.status != SeqStatus.DECODING or seq not in self.state.running:
                callback(None, now)
                continue
            self.state.take_off(seq)  # leaves the decode group (writes back its counters)
            self.scheduler.notify_finish(seq)
            self.links.on_leave(seq)
            callback(seq, now)
