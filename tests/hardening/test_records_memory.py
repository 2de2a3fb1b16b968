"""Issue 16 (memory): the iteration table grows in fixed chunks (never a doubling copy), and
summaries read the tables without copying them; results are identical to the plain columns."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.api import simulate
from servesim.engine.records import ITERATION_COLUMNS, TokenGapSamples, _ChunkedColumns, _Columns

DTYPES = {"a": np.int64, "b": np.float64}


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(-5, 5), st.floats(-1e3, 1e3)), max_size=40),
    chunk_rows=st.integers(1, 7),
    budget_rows=st.sampled_from([0, 3, 10, None]),  # None: the default (never reached here)
)
def test_chunked_columns_hold_the_same_rows_as_plain_columns(
    rows: list[tuple[int, float]], chunk_rows: int, budget_rows: int | None
) -> None:
    plain = _Columns(DTYPES, capacity=1)
    chunked = _ChunkedColumns(DTYPES, chunk_rows, budget_rows=budget_rows)
    for a, b in rows:
        assert plain.append_row(a=a, b=b) == chunked.append_row(a=a, b=b)
    assert chunked.size == plain.size == len(rows)
    # spilled once a chunk starts at a row past the budget
    chunk_starts = range(chunk_rows, len(rows), chunk_rows)
    budget = 1 << 62 if budget_rows is None else budget_rows
    assert chunked.is_spilled == any(i >= budget for i in chunk_starts)
    want = plain.view()
    streamed = list(chunked.chunks())
    for name in DTYPES:
        joined = np.concatenate([c[name] for c in streamed]) if streamed else np.empty(0)
        np.testing.assert_array_equal(joined, want[name])
    for copy in (True, False):
        got = chunked.view(copy=copy)
        for name in DTYPES:
            assert got[name].dtype == want[name].dtype
            np.testing.assert_array_equal(got[name], want[name])
    if rows:  # column() brings a spilled table back into memory; writes persist
        chunked.column("a")[: len(rows)] = 9
        chunked.append_row(a=1, b=0.0)
        assert chunked.view()["a"].tolist() == [9] * len(rows) + [1]


def test_chunked_column_writes_persist_and_appends_continue() -> None:
    cols = _ChunkedColumns(DTYPES, chunk_rows=3)
    for i in range(7):  # three chunks
        cols.append_row(a=i, b=float(i))
    cols.column("a")[:7] = np.arange(7) * 10  # joins the chunks, writes through
    cols.append_row(a=70, b=7.0)
    np.testing.assert_array_equal(cols.view()["a"], np.arange(8) * 10)
    np.testing.assert_array_equal(cols.view()["b"], np.arange(8, dtype=float))


def test_an_empty_chunked_table_views_as_empty_columns() -> None:
    view = _ChunkedColumns(ITERATION_COLUMNS).view()
    assert set(view) == set(ITERATION_COLUMNS) and all(v.size == 0 for v in view.values())


def test_token_gap_views_match_copies() -> None:
    gaps = TokenGapSamples()
    for k in range(5):
        gaps.add(0.01 * k, k + 1)
    copies, views = gaps.arrays(), gaps.arrays(copy=False)
    for c, v in zip(copies, views, strict=True):
        np.testing.assert_array_equal(c, v)


def test_a_run_spanning_several_chunks_gives_the_same_summary_as_one_chunk(
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    config = {"num_requests": 60, "seed": 3}
    one_chunk = simulate(config)
    # the same run with tiny chunks: many joins, the same rows and figures
    monkeypatch.setattr(_ChunkedColumns.__init__, "__defaults__", (4, None))
    many_chunks = simulate(config)
    assert many_chunks.records.iterations.size > 4 * 10  # over ten chunks, joined by summarize
    assert many_chunks.to_json() == one_chunk.to_json()
    a, b = one_chunk.records.iterations.view(), many_chunks.records.iterations.view()
    for name in ITERATION_COLUMNS:
        np.testing.assert_array_equal(a[name], b[name])
