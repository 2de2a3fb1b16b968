"""Iteration rows are written as tuples in ``ITERATION_COLUMNS`` order (engine/rows.py), and
request rows in ``REQUEST_COLUMNS`` order (``append_request_row``): each value must land in the
column it names, and buffered (or chunked) rows read back as stored."""

from __future__ import annotations

from typing import Any

import numpy as np

from servesim.engine.batch import Batch
from servesim.engine.columns import RequestTable
from servesim.engine.records import ITERATION_COLUMNS, REQUEST_COLUMNS, SimulationRecords
from servesim.engine.rows import DecodeRun, append_batch_row, append_run_row
from servesim.engine.sequence import Seq
from servesim.engine.simulation import append_request_row
from servesim.perf.types import StageTimes
from servesim.workload.request import Request
from tests.engine.fakes import req


def _row(records: SimulationRecords, index: int) -> dict[str, Any]:
    view = records.iterations.view()
    return {name: view[name][index].item() for name in ITERATION_COLUMNS}


def test_a_batch_row_puts_every_value_in_its_named_column() -> None:
    records = SimulationRecords()
    # real sequences: a compiled Batch (mypyc) checks its element types
    seqs = [Seq(req(i, 0.0, 10, 10), i) for i in range(3)]
    batch = Batch(prefills=[(seqs[0], 300), (seqs[1], 45)], decodes=[seqs[2]] * 7)
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
        "kv_block_s": 0.0,  # a single iteration's: left to the summary (engine/rows.py)
        "seq_s": 0.0,
        "kv_block_s2": 0.0,
    }


def test_a_run_row_puts_every_value_in_its_named_column() -> None:
    records = SimulationRecords()
    run = DecodeRun(1.0, 5, 2)
    for blocks, span in ((70, 0.5), (72, 0.25), (71, 0.25)):
        run.add(StageTimes((0.01,), 0.002, 10.0, 20.0, 0.5, 0.25), blocks, span)
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
        "kv_block_s": 70 * 0.5 + 72 * 0.25 + 71 * 0.25,  # blocks x span of each tick
        "seq_s": 5 * (0.5 + 0.25 + 0.25),
        # blocks x span x (offset + span / 2), each tick's offset left at 0 here
        "kv_block_s2": 70 * 0.5 * 0.25 + 72 * 0.25 * 0.125 + 71 * 0.25 * 0.125,
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


def test_a_request_row_puts_every_value_in_its_named_column() -> None:
    records = SimulationRecords()
    request = Request(41, 3.25, 900, 120, priority=2, user_id=7)
    row = append_request_row(records, request, 5, 1)
    view = records.requests.view()
    got = {name: view[name][row].item() for name in REQUEST_COLUMNS}
    nan_columns = {"first_scheduled_s", "first_token_s", "completion_s"}
    assert all(np.isnan(got.pop(name)) for name in nan_columns)
    assert got == {
        "request_id": 41,
        "replica_id": 5,
        "arrival_s": 3.25,
        "num_prompt_tokens": 900,
        "num_output_tokens": 120,
        "num_emitted_tokens": 0,
        "sum_tbt_s": 0.0,
        "max_tbt_s": 0.0,
        "num_preemptions": 0,
        "num_prefix_hit_tokens": 0,
        "priority": 2,
        "user_id": 7,
        "slo_class_index": 1,
        "reject_reason": 0,
        "decode_replica_id": -1,
    }


def test_request_rows_past_the_memory_budget_go_the_chunked_way() -> None:
    table = RequestTable(
        REQUEST_COLUMNS, budget_rows=4, chunk_rows=2, is_finished=lambda c: c["reject_reason"] >= 0
    )
    rows = [_append_to(table, i) for i in range(9)]
    assert rows == list(range(9)) and table.is_spilled
    np.testing.assert_array_equal(table.view()["request_id"], np.arange(9) * 10)


def _append_to(table: RequestTable, i: int) -> int:
    records = SimulationRecords(requests=table)
    return append_request_row(records, Request(10 * i, float(i), 100, 10), 0, 0)
