"""Iteration rows are written as tuples in ``ITERATION_COLUMNS`` order (engine/rows.py): each
value must land in the column it names, and buffered rows read back as stored."""

from __future__ import annotations

from typing import Any

import numpy as np

from servesim.engine.batch import Batch
from servesim.engine.records import ITERATION_COLUMNS, SimulationRecords
from servesim.engine.rows import DecodeRun, append_batch_row, append_run_row
from servesim.perf.types import StageTimes


def _row(records: SimulationRecords, index: int) -> dict[str, Any]:
    view = records.iterations.view()
    return {name: view[name][index].item() for name in ITERATION_COLUMNS}


def test_a_batch_row_puts_every_value_in_its_named_column() -> None:
    records = SimulationRecords()
    batch = Batch(prefills=[(object(), 300), (object(), 45)], decodes=[object()] * 7)  # type: ignore[list-item]
    batch.start_s, batch.num_queued, batch.num_kv_blocks_used = 2.5, 4, 123
    times = StageTimes((0.02,), 0.003, 1e12, 2e10, 9.5, 0.001)
    append_batch_row(records, 3, batch, times, 0.0235, 2)
    assert _row(records, 0) == {
        "replica_id": 3,
        "start_s": 2.5,
        "duration_s": 0.0235,
        "num_prefill_tokens": 345,
        "num_decode_seqs": 7,
        "num_seqs": 9,
        "num_kv_blocks_used": 123,
        "num_queued": 4,
        "flops": 1e12,
        "hbm_bytes": 2e10,
        "energy_j": 9.5,
        "repeat": 1,
        "host_s": 0.003,
        "comm_s": 0.001,
        "num_preempted": 2,
    }


def test_a_run_row_puts_every_value_in_its_named_column() -> None:
    records = SimulationRecords()
    run = DecodeRun(1.0, 5, 2)
    for _ in range(3):
        run.add(StageTimes((0.01,), 0.002, 10.0, 20.0, 0.5, 0.25))
    append_run_row(records, 1, run, 1.04, 77)
    assert _row(records, 0) == {
        "replica_id": 1,
        "start_s": 1.0,
        "duration_s": 1.04 - 1.0,
        "num_prefill_tokens": 0,
        "num_decode_seqs": 5,
        "num_seqs": 5,
        "num_kv_blocks_used": 77,
        "num_queued": 2,
        "flops": 30.0,
        "hbm_bytes": 60.0,
        "energy_j": 1.5,
        "repeat": 3,
        "host_s": 0.002 + 0.002 + 0.002,
        "comm_s": 0.75,
        "num_preempted": 0,
    }


def test_buffered_rows_across_chunks_read_back_in_order() -> None:
    records = SimulationRecords()
    table = records.iterations
    for i in range(10_000):  # past the write-out buffer (4,096 rows)
        table.append_row(replica_id=i % 3, start_s=i / 8, repeat=i)
    assert table.size == 10_000
    view = table.view()
    np.testing.assert_array_equal(view["repeat"], np.arange(10_000))
    np.testing.assert_array_equal(view["start_s"], np.arange(10_000) / 8)
    assert not view["num_preempted"].any()  # a column left out reads 0
