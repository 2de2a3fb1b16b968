"""The fp8 path's activation quantisation kernel: per-row cost by resident blocks per SM."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from factories import h100

from servesim.perf.fitting.gemm_arrays import quant_array
from servesim.perf.opmodels.gemm import (
    HOPPER_RESIDENCY,
    REF_QUANT_BLOCKS,
    QuantFit,
    quant_blocks_per_sm,
    sm_residency,
)
from servesim.specs.catalog import get_gpu

# only the per-row term: no floor, no serial reduction, no bytes; overlap 1 (a plain sum)
ROWS_ONLY = QuantFit(floor_s=0.0, k_s=0.0, bytes_per_elem=0.0, row_s=1e-9, overlap=1.0)
ADA = (1536, 24)


def test_blocks_per_sm_follow_the_launch() -> None:
    # one block of min(k, 256) threads per token; Hopper SMs hold 2048 threads and 32 blocks
    assert REF_QUANT_BLOCKS == 8  # 2048 // 256
    assert quant_blocks_per_sm(4096) == 8
    assert quant_blocks_per_sm(128) == 16  # 2048 // 128
    assert quant_blocks_per_sm(64) == 32  # 2048 // 64 = 32, the block limit
    assert quant_blocks_per_sm(32) == 32  # 2048 // 32 = 64, capped at 32 blocks
    # Ada (compute capability 8.9): 1536 threads and 24 blocks per SM
    assert quant_blocks_per_sm(4096, ADA) == 6
    assert quant_blocks_per_sm(32, ADA) == 24


def test_short_rows_cost_less_per_row() -> None:
    bw, m = 3.35e12, 1000.0
    # row_s is stated at 8 blocks per SM: 1000 rows x 1 ns x 8 / blocks
    assert ROWS_ONLY.time_s(m, 4096, bw) == pytest.approx(1000e-9)
    assert ROWS_ONLY.time_s(m, 128, bw) == pytest.approx(500e-9)
    assert ROWS_ONLY.time_s(m, 32, bw) == pytest.approx(250e-9)
    # on Ada the long rows pack 6 blocks: 8 / 6 of Hopper's per-row cost
    assert ROWS_ONLY.time_s(m, 4096, bw, ADA) == pytest.approx(1000e-9 * 8 / 6)


def test_array_form_matches() -> None:
    q = dataclasses.replace(ROWS_ONLY, floor_s=2e-6, k_s=2e-10, bytes_per_elem=3.0, overlap=2.5)
    m = np.array([1.0, 300.0, 4096.0, 32768.0, 32768.0])
    k = np.array([32.0, 64.0, 128.0, 256.0, 16384.0])
    for res in (HOPPER_RESIDENCY, ADA):
        one = [q.time_s(a, b, 3.35e12, res) for a, b in zip(m, k, strict=True)]
        np.testing.assert_allclose(quant_array(q, m, k, 3.35e12, res), one, rtol=1e-12)


def test_residency_by_gpu() -> None:
    assert sm_residency(h100()) == (2048, 32)
    assert sm_residency(get_gpu("l40s")) == ADA
    assert sm_residency(get_gpu("a100-80gb")) == (2048, 32)
