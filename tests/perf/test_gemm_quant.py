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


# ---- L2-resident activations stream at the SMs' rate ----------------------------------------
ELEMS_ONLY = QuantFit(
    floor_s=0.0, k_s=0.0, bytes_per_elem=3.0, row_s=0.0, overlap=1.0, sm_elem_s=1e-12, l2_frac=0.5
)
L2 = 50 * 2**20


def test_hbm_term_counts_only_what_spills_the_l2() -> None:
    bw = 3.35e12
    no_sm = dataclasses.replace(ELEMS_ONLY, sm_elem_s=0.0)
    # working set 3 m k = half the L2 x 0.5: x = 1, so half the HBM time counts
    m, k = L2 * 0.5 / 3.0 / 4096, 4096
    assert no_sm.time_s(m, k, bw, l2_bytes=L2) == pytest.approx(0.5 * 3.0 * m * k / bw)
    # x = 2: 16 / 17 of it; x = 1 / 4: 1 / 257
    assert no_sm.time_s(2 * m, k, bw, l2_bytes=L2) == pytest.approx(16 / 17 * 6.0 * m * k / bw)
    assert no_sm.time_s(m / 4, k, bw, l2_bytes=L2) == pytest.approx(0.75 * m * k / bw / 257)
    # l2_frac 0 (fits made before the L2 term): the whole HBM time
    whole = dataclasses.replace(no_sm, l2_frac=0.0)
    assert whole.time_s(m / 4, k, bw, l2_bytes=L2) == pytest.approx(0.75 * m * k / bw)


def test_resident_elements_cost_the_same_at_any_bandwidth() -> None:
    # 1024 x 4096 = 4.2 M elements, 12.6 MB working set (x = 0.48 at half of 50 MiB):
    # SM term 4.19 us; HBM term 12.6 MB / bw x 0.0505 (H100) = 0.19 us, plain sum (overlap 1)
    m, k = 1024.0, 4096.0
    x4 = (3.0 * m * k / (0.5 * L2)) ** 4
    h100 = ELEMS_ONLY.time_s(m, k, 3.35e12, l2_bytes=L2)
    h200 = ELEMS_ONLY.time_s(m, k, 4.8e12, l2_bytes=L2)
    assert h100 == pytest.approx(m * k * 1e-12 + 3.0 * m * k / 3.35e12 * x4 / (1 + x4))
    assert h200 / h100 > 0.97  # 1.43x the bandwidth, < 3% faster
    # far beyond the L2 the HBM term leads: the time goes by bandwidth
    big = 32768.0 * 16384 / (m * k)
    r = ELEMS_ONLY.time_s(m * big, k, 4.8e12, l2_bytes=L2) / ELEMS_ONLY.time_s(
        m * big, k, 3.35e12, l2_bytes=L2
    )
    assert r == pytest.approx((1e-12 + 3 / 4.8e12) / (1e-12 + 3 / 3.35e12), rel=1e-3)


def test_l2_term_array_form_and_round_trip() -> None:
    q = dataclasses.replace(ELEMS_ONLY, floor_s=2e-6, k_s=2e-10, row_s=1e-9, overlap=2.5)
    m = np.array([1.0, 300.0, 4096.0, 32768.0])
    k = np.array([64.0, 4096.0, 8192.0, 65536.0])
    one = [q.time_s(a, b, 3.35e12, HOPPER_RESIDENCY, L2) for a, b in zip(m, k, strict=True)]
    np.testing.assert_allclose(quant_array(q, m, k, 3.35e12, HOPPER_RESIDENCY, L2), one, rtol=1e-12)
    assert QuantFit.from_dict(q.to_dict()) == q
    # a stored fit without the new fields keeps the old formula
    old = {k: v for k, v in q.to_dict().items() if k not in ("sm_elem_s", "l2_frac")}
    assert QuantFit.from_dict(old).sm_elem_s == 0.0 and QuantFit.from_dict(old).l2_frac == 0.0


def test_transfer_scales_the_sm_term_by_sms_and_clock() -> None:
    from servesim.perf.opmodels.transfer import _adapt_gemm

    src, dst = get_gpu("h100"), get_gpu("l40s")
    params = {"fp8": {"floor_s": 1.0, "mem_latency_s": 1.0, "kloop_s": 1.0, "row_s": 1.0}}
    params["fp8"]["quant"] = {"floor_s": 1.0, "k_s": 1.0, "row_s": 1.0, "sm_elem_s": 2e-12}
    _adapt_gemm(params, src, dst)
    # donor SMs x clock over the target's: H100 132 x 1980 MHz, L40S 142 x 2520 MHz
    want = 2e-12 * (132 * 1980) / (142 * 2520)
    assert params["fp8"]["quant"]["sm_elem_s"] == pytest.approx(want)
    same = {"fp8": {"floor_s": 1.0, "mem_latency_s": 1.0, "kloop_s": 1.0, "row_s": 1.0}}
    same["fp8"]["quant"] = {"floor_s": 1.0, "k_s": 1.0, "row_s": 1.0, "sm_elem_s": 2e-12}
    _adapt_gemm(same, src, get_gpu("h200"))  # same SMs and clock: unchanged
    assert same["fp8"]["quant"]["sm_elem_s"] == pytest.approx(2e-12)
