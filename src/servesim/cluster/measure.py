"""Cutting a benchmark client's warm-up requests out of a run's records.

The warm-ups run alone before the measured requests, so they are the first request rows, the
iterations that started before the measured start and the token-gap samples before the first
measured one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servesim.engine.records import SimulationRecords, TokenGapSamples


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
    req = records.requests.view()
    _copy_rows(req, np.arange(num_warmup_rows, records.requests.size), out.requests)
    it = records.iterations.view()
    _copy_rows(it, np.flatnonzero(it["start_s"] >= start_s), out.iterations)
    values, weights = records.token_gaps.arrays()
    out.token_gaps = TokenGapSamples()
    out.token_gaps.values_s.extend(values[first_gap:].tolist())
    out.token_gaps.weights.extend(weights[first_gap:].tolist())
    return out


def _copy_rows(src: dict[str, np.ndarray], rows: np.ndarray, dst: Any) -> None:
    for _ in range(rows.size):
        dst.append_row()
    for name, values in src.items():
        dst.column(name)[: rows.size] = values[rows]
