"""A skipped run's iteration row (engine/rows.py ``DecodeRun``) brings its ticks' integrals
``kv_block_s`` and ``seq_s``: the summary holds their mean over the run's whole duration,
uncut, while its start still ends the replica's earlier row, in memory and streamed alike."""

from __future__ import annotations

import pytest

from servesim.engine.records import SimulationRecords
from servesim.metrics.streaming import IterationPass
from servesim.metrics.summary import _over_time
from tests.metrics.factories import add_iteration, replica


def _log(overlap: bool) -> SimulationRecords:
    rec = SimulationRecords(replicas=[replica(0)], end_s=3.0)  # 100 KV blocks
    # a single iteration [0, 1] (or [0, 2], overlapped as a pipeline's engines do)
    add_iteration(rec, start=0.0, duration=2.0 if overlap else 1.0, seqs=2, kv_blocks=10)
    # a run [1, 3] of two ticks: 20 blocks for 1 s then 30 for 1 s (peak 30), 2 seqs
    add_iteration(
        rec, start=1.0, duration=2.0, seqs=2, kv_blocks=30, repeat=2, kv_block_s=50.0, seq_s=4.0
    )
    return rec


@pytest.mark.parametrize("overlap", [False, True])
def test_a_runs_integrals_give_the_means_of_its_ticks(overlap: bool) -> None:
    rec = _log(overlap)
    it = rec.iterations.view()
    window = (0.0, 3.0)
    kv, batch, _ = _over_time(rec, it, window)
    # the single iteration holds until the run starts (1 s), the run its 50 block-seconds:
    # (10 x 1 + 50) / (3 s x 100 blocks); sequences (2 x 1 + 4) / 3 s; peaks 30 / 100 and 2
    assert kv.mean == pytest.approx(60 / 300, rel=1e-15)
    assert batch.mean == pytest.approx(6 / 3, rel=1e-15)
    assert (kv.max, batch.max) == (0.3, 2.0)
    for cut in (1, 2):  # the streamed pass, one chunk or a row per chunk
        stream = IterationPass(rec.replicas, window)
        for i in range(0, 2, cut):
            stream.add({k: v[i : i + cut] for k, v in it.items()})
        stream.finish()
        s_kv, s_batch = stream.over_time()
        assert s_kv.mean == pytest.approx(kv.mean, rel=1e-12)
        assert s_batch.mean == pytest.approx(batch.mean, rel=1e-12)
        assert (s_kv.max, s_batch.max) == (kv.max, batch.max)


def test_a_log_without_the_integrals_is_spanned_row_by_row() -> None:
    # a log written before the columns existed (an older --out directory read back)
    rec = _log(False)
    it = {k: v for k, v in rec.iterations.view().items() if k not in ("kv_block_s", "seq_s")}
    kv, _, _ = _over_time(rec, it, (0.0, 3.0))
    assert kv.mean == pytest.approx((10 * 1 + 30 * 2) / 300, rel=1e-15)
