"""What the cluster layer asks a replica (``Replica.decoding``, ``num_kv_tokens``,
``detach``), answered without reaching into its engines' state."""

from __future__ import annotations

import pytest

from servesim.core.events import EventLoop
from servesim.engine.records import SimulationRecords
from servesim.engine.replica import Replica
from servesim.engine.sequence import Seq, SeqStatus
from tests.engine.fakes import ConstantPerf, req, setup


def _replica() -> tuple[Replica, EventLoop, SimulationRecords]:
    loop, records = EventLoop(), SimulationRecords()
    replica = Replica(
        0, setup(), ConstantPerf(0.1), records, loop, lambda: float("inf"), skip_ahead=False
    )
    return replica, loop, records


def test_decoding_requests_newest_first_and_their_kv_tokens() -> None:
    replica, loop, _ = _replica()
    seqs = [Seq(req(i, 0.0, 40, 50), i) for i in range(3)]
    for seq in seqs:
        replica.submit(seq, 0.0)
    loop.run(until_s=0.35)  # one prefill step (0.1 s), then decodes at 0.2 and 0.3
    assert [s.sid for s in replica.decoding()] == [2, 1, 0]
    assert all(s.status == SeqStatus.DECODING for s in seqs)
    # 40 prompt tokens + 3 emitted (first token and two decodes) - 1 not yet in KV
    assert replica.num_kv_tokens(seqs[0]) == 42
    assert replica.num_kv_tokens(Seq(req(9, 0.0, 40, 50), 9)) is None


def test_detach_releases_at_the_next_iteration_boundary() -> None:
    replica, loop, _ = _replica()
    seqs = [Seq(req(i, 0.0, 40, 50), i) for i in range(2)]
    for seq in seqs:
        replica.submit(seq, 0.0)
    loop.run(until_s=0.25)
    released: list[tuple[Seq | None, float]] = []
    assert replica.detach(seqs[0], lambda s, t: released.append((s, t)))
    assert not replica.detach(Seq(req(9, 0.0, 40, 50), 9), lambda s, t: None)
    assert not released  # not before the boundary
    loop.run(until_s=0.35)
    assert len(released) == 1 and released[0][0] is seqs[0]
    assert released[0][1] == pytest.approx(0.3)  # the next step's start
    assert seqs[0] not in replica.alive and seqs[0].status == SeqStatus.WAITING
    assert [s.sid for s in replica.decoding()] == [1]
