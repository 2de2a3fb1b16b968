"""Issue 16 (bounded memory): tables past their budget spill to disk and lose nothing; the
summary of a spilled run matches the in-memory one (exactly where the sketches are exact,
within the sketch's bound otherwise); the warm-up cut stays exact."""

from __future__ import annotations

import gc
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import servesim.engine.columns as columns
import servesim.engine.records as records
import servesim.metrics.sketch as sketch
from servesim.api import simulate
from servesim.engine.columns import RequestTable, _Columns
from servesim.engine.records import TokenGapSamples
from servesim.report.outputs import request_chunks, write_run_outputs
from servesim.report.run_data import load_run, write_run_data

DTYPES = {"completion_s": np.float64, "reject_reason": np.int8, "x": np.int64}


def _left(chunk: dict[str, np.ndarray]) -> np.ndarray:
    return np.isfinite(chunk["completion_s"]) | (chunk["reject_reason"] != 0)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 60), st.integers(1, 8), st.integers(1, 9), st.randoms())
def test_request_rows_written_in_any_order_are_all_kept(
    num_rows: int, budget: int, chunk: int, rnd
) -> None:  # type: ignore[no-untyped-def]
    plain = _Columns(DTYPES)
    table = RequestTable(DTYPES, budget_rows=budget, chunk_rows=chunk, is_finished=_left)
    pending: list[int] = []
    for i in range(num_rows):
        for t in (plain, table):
            assert t.append_row(completion_s=math.nan, reject_reason=0, x=i) == i
        pending.append(i)
        rnd.shuffle(pending)
        while pending and rnd.random() < 0.6:  # requests leave in random order
            row = pending.pop()
            cols, j = table.locate(row)
            cols["completion_s"][j] = float(row)
            plain.column("completion_s")[row] = float(row)
    for row in pending:  # the rest leave at the end, read and written through column()
        table.column("completion_s")[row] = -1.0
        plain.column("completion_s")[row] = -1.0
    want = plain.view()
    got = columns.concat_chunks(table.chunks(), table._dtypes)
    for name in DTYPES:
        np.testing.assert_array_equal(got[name], want[name])
        np.testing.assert_array_equal(table.view()[name], want[name])
    rows = np.arange(num_rows)[::-1]
    np.testing.assert_array_equal(table.column("x")[rows], want["x"][rows])
    assert table.is_spilled == (num_rows >= budget)


def test_a_row_on_disk_cannot_be_written() -> None:
    table = RequestTable(DTYPES, budget_rows=2, chunk_rows=2, is_finished=_left)
    for i in range(5):
        table.append_row(completion_s=float(i), reject_reason=0, x=i)
    assert table._store is not None and table._store.num_rows == 4  # two chunks retired
    assert table.column("x")[1] == 1  # still readable, from disk
    np.testing.assert_array_equal(np.asarray(table.column("x")), np.arange(5))
    with pytest.raises(IndexError, match="on disk"):
        table.column("x")[1] = 7


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 50), st.integers(1, 7), st.integers(0, 60))
def test_token_gaps_spill_and_keep_their_index(num: int, budget: int, first: int) -> None:
    plain, spilled = TokenGapSamples(budget=10**9), TokenGapSamples(budget=budget)
    for k in range(num):
        for gaps in (plain, spilled):
            gaps.add(0.5 * k, k % 3 + 1)
    assert len(spilled.values_s) == spilled.num_samples == num  # the runner's warm-up index
    assert spilled == plain and spilled.is_spilled == (num >= budget)
    values, weights = plain.arrays()
    tail = spilled.tail(first)
    np.testing.assert_array_equal(tail.arrays()[0], values[first:])
    np.testing.assert_array_equal(tail.arrays()[1], weights[first:])


@pytest.fixture
def tiny_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every table spills after a few rows; sketches stay exact (set per test)."""
    monkeypatch.setattr(columns, "REQUEST_BUDGET_ROWS", 40)
    monkeypatch.setattr(columns, "REQUEST_CHUNK_ROWS", 16)
    monkeypatch.setattr(columns, "ITERATION_BUDGET_ROWS", 50)
    monkeypatch.setattr(columns._ChunkedColumns.__init__, "__defaults__", (32, None))
    monkeypatch.setattr(records, "TOKEN_GAP_BUDGET", 200)


def _numbers(d: object, path: str = "") -> dict[str, object]:
    if isinstance(d, dict):
        return {k: v for key in d for k, v in _numbers(d[key], f"{path}.{key}").items()}
    if isinstance(d, list):
        return {k: v for i, x in enumerate(d) for k, v in _numbers(x, f"{path}[{i}]").items()}
    return {path: d}


CONFIG = {"num_requests": 400, "seed": 2, "slo": {"ttft_s": 0.5, "tpot_s": 0.04}}
WARMUP_CONFIG = {
    "num_requests": 120,
    "seed": 3,
    "workload": {
        "arrival": {"kind": "immediate"},
        "lengths": {"kind": "random", "input_len": 300, "output_len": 40, "range_ratio": 0.5},
        "client": {"max_concurrency": 4, "num_warmups": 40},
    },
}


@pytest.mark.parametrize("config", [CONFIG, WARMUP_CONFIG], ids=["slo", "warmups"])
def test_a_spilled_run_summarises_like_the_in_memory_run(
    config: dict[str, object], tiny_budgets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sketch, "DEFAULT_EXACT_BUDGET", 10**9)
    spilled = simulate(config)
    rec = spilled.records
    assert rec.requests.is_spilled and rec.iterations.is_spilled and rec.token_gaps.is_spilled
    monkeypatch.undo()
    plain = simulate(config)
    assert not plain.records.requests.is_spilled
    for name, col in plain.records.requests.view().items():  # every row, none lost
        np.testing.assert_array_equal(rec.requests.view()[name], col)
    assert rec.token_gaps == plain.records.token_gaps
    got, want = _numbers(spilled.summary.to_dict()), _numbers(plain.summary.to_dict())
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, float) and key.startswith((".efficiency", ".kv_", ".batch_")):
            # streamed sums of the iteration log add in another order
            assert got[key] == pytest.approx(value, rel=1e-9), key
        else:
            assert got[key] == value, key


def test_above_the_sketch_budget_percentiles_keep_the_bound(
    tiny_budgets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sketch, "DEFAULT_EXACT_BUDGET", 10)
    spilled = simulate(CONFIG).summary
    monkeypatch.undo()
    plain = simulate(CONFIG).summary
    alpha = sketch.DEFAULT_RELATIVE_ACCURACY
    for name in ("ttft", "tpot", "itl", "e2e", "queueing"):
        s, p = getattr(spilled, name), getattr(plain, name)
        assert (s.count, s.min_s, s.max_s) == (p.count, p.min_s, p.max_s)
        for q in ("p50_s", "p90_s", "p95_s", "p99_s"):
            exact = getattr(p, q)
            assert abs(getattr(s, q) - exact) <= alpha * exact * (1 + 1e-12), (name, q)
    assert spilled.slo == plain.slo  # counts stream exactly


@pytest.mark.parametrize("table_format", ["csv", "parquet"])
def test_a_spilled_run_written_with_out_has_every_row_on_disk(
    table_format: str, tiny_budgets: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if table_format == "parquet":
        pytest.importorskip("pyarrow")
    spilled = simulate(CONFIG)
    rec = spilled.records
    assert rec.requests.is_spilled and rec.iterations.is_spilled
    write_run_outputs(
        tmp_path,
        summary_json=spilled.to_json(),
        columns=spilled.requests_columns,
        table=spilled.requests_table,
        kv_utilization=spilled.summary.kv_utilization,
        table_format=table_format,
        chunks=lambda: request_chunks(rec.requests.chunks(), rec.slo_classes),
        num_rows=rec.requests.size,
    )
    write_run_data(tmp_path, rec, spilled.cluster, table_format)
    monkeypatch.undo()
    plain = simulate(CONFIG)
    run = load_run(tmp_path)
    want = plain.requests_columns()
    assert (
        set(run.requests) == set(want) and run.requests["request_id"].size == CONFIG["num_requests"]
    )
    for name, col in want.items():
        if col.dtype == object:
            assert run.requests[name].tolist() == col.tolist(), name
        else:
            np.testing.assert_array_equal(run.requests[name].astype(float), col.astype(float))
    it = plain.records.iterations.view()
    for name, col in it.items():
        np.testing.assert_array_equal(run.iterations[name].astype(float), col.astype(float))


def test_a_pickled_spilled_table_outlives_the_original() -> None:
    gaps = TokenGapSamples(budget=3)
    for k in range(8):
        gaps.add(0.25 * k, k + 1)
    assert gaps.is_spilled
    want = [a.tolist() for a in gaps.arrays()]
    data = pickle.dumps(gaps)
    del gaps
    gc.collect()  # the original's spill folder is removed with it
    copy = pickle.loads(data)
    assert [a.tolist() for a in copy.arrays()] == want and len(copy.values_s) == 8


def test_write_outputs_streams_a_spilled_run(
    tiny_budgets: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``api.write_outputs`` hands a spilled request table over chunk by chunk (the whole-table
    builder is never called) and writes the same rows as an in-memory run."""
    from servesim.api import Result, write_outputs

    spilled = simulate(CONFIG)
    assert spilled.records.requests.is_spilled

    def whole_table(self: Result) -> dict[str, np.ndarray]:
        raise AssertionError("the whole request table was built")

    with monkeypatch.context() as patch:
        patch.setattr(Result, "requests_columns", whole_table)
        write_outputs(spilled, tmp_path / "spilled", table_format="csv")
    monkeypatch.undo()
    write_outputs(simulate(CONFIG), tmp_path / "plain", table_format="csv")
    got = (tmp_path / "spilled" / "requests.csv").read_text()
    assert got == (tmp_path / "plain" / "requests.csv").read_text()
    assert got.count("\n") == CONFIG["num_requests"] + 1
