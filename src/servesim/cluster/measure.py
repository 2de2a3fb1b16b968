"""Cutting a benchmark client's warm-up requests out of a run's records.

The warm-ups run alone before the measured requests, so they are the first request rows, the
iterations that started before the measured start and the token-gap samples before the first
measured one. Tables that spilled to disk (long runs) are cut a chunk at a time into new
spilled tables, so the cut never holds a whole table in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from servesim.cluster.stats import ClusterStats
from servesim.engine.columns import RequestTable, _ChunkedColumns
from servesim.engine.records import ITERATION_COLUMNS, REQUEST_COLUMNS, SimulationRecords

Chunk = dict[str, np.ndarray]


def without_warmups(
    records: SimulationRecords, num_warmup_rows: int, start_s: float, first_gap: int
) -> SimulationRecords:
    """``records`` less the first ``num_warmup_rows`` requests, the iterations that started
    before ``start_s`` and the token gaps before sample ``first_gap`` (warm-ups run alone,
    before the measured requests). Counter ``num_warmup_requests`` says how many were cut."""
    out = SimulationRecords(
        replicas=records.replicas,
        slo_classes=list(records.slo_classes),
        end_s=records.end_s,
        counters=dict(records.counters),
    )
    out.count("num_warmup_requests", num_warmup_rows)
    if records.requests.is_spilled:
        rows = _after_row(records.requests.chunks(), num_warmup_rows)
        out.requests = RequestTable.from_chunks(REQUEST_COLUMNS, rows)
    else:
        req = records.requests.view()
        _copy_rows(req, np.arange(num_warmup_rows, records.requests.size), out.requests)
    if records.iterations.is_spilled:
        kept = (
            {k: v[c["start_s"] >= start_s] for k, v in c.items()}
            for c in records.iterations.chunks()
        )
        out.iterations = _ChunkedColumns.from_chunks(ITERATION_COLUMNS, kept)
    else:
        it = records.iterations.view()
        _copy_rows(it, np.flatnonzero(it["start_s"] >= start_s), out.iterations)
    out.token_gaps = records.token_gaps.tail(first_gap)
    return out


def _after_row(chunks: Iterable[Chunk], first: int) -> Iterator[Chunk]:
    """The rows from index ``first`` on, chunk by chunk."""
    start = 0
    for chunk in chunks:
        size = len(next(iter(chunk.values())))
        lo = max(first - start, 0)
        if lo < size:
            yield {k: v[lo:] for k, v in chunk.items()}
        start += size


def _copy_rows(src: dict[str, np.ndarray], rows: np.ndarray, dst: Any) -> None:
    for _ in range(rows.size):
        dst.append_row()
    for name, values in src.items():
        dst.column(name)[: rows.size] = values[rows]


def stats_without_warmups(stats: ClusterStats, num_warmup_rows: int) -> None:
    """Drop, in place, the cluster figures of the first ``num_warmup_rows`` requests (their
    KV transfers and admission refusals) and renumber the rest's request rows."""
    keep = [i for i, row in enumerate(stats.transfer_rows) if row >= num_warmup_rows]
    stats.transfer_rows = [stats.transfer_rows[i] - num_warmup_rows for i in keep]
    stats.transfer_s = [stats.transfer_s[i] for i in keep]
    stats.transfer_bytes = [stats.transfer_bytes[i] for i in keep]
    rows = stats.admission_rows
    stats.admission_rows = [r - num_warmup_rows for r in rows if r >= num_warmup_rows]
    stats.num_admission_rejected = len(stats.admission_rows)
