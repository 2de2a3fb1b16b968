"""A serving GEMM reads its weight from HBM; the tables' replays read a small one from L2.

Hand-computed on a memory-only fit: mem_eff 0.5, latency 2 us, L2 gain 1.0 (twice the rate when
the working set is far under ``l2_frac`` x L2), compute and K loop negligible, plain max overlap.
"""

from __future__ import annotations

import dataclasses

import pytest

from servesim.perf.calibration import load_calibration
from servesim.perf.kernel_set import KernelSet
from servesim.perf.kernel_shapes import GemmShape
from servesim.perf.opmodels.gemm import gemm_time_s
from servesim.specs.catalog import get_gpu
from servesim.specs.dtypes import DType
from tests.perf.factories import gemm_fit

L40S = get_gpu("l40s")

_FIT = gemm_fit(mem_eff=0.5, mem_latency_s=2e-6, l2_gain=1.0, l2_frac=0.5)


def _memory(weight: float, rest: float, bw: float, capacity: float) -> tuple[float, float]:
    """(table, serving) memory time by hand."""
    x = (weight + rest) / capacity
    gain = 1.0 + 1.0 / (1.0 + x**4)
    table = ((weight + rest) / bw + 2e-6) / (0.5 * gain)
    serving = (weight / bw + 2e-6 + rest / bw / gain) / 0.5
    return table, serving


def test_a_small_weight_is_priced_from_hbm_in_serving_and_from_l2_in_the_tables() -> None:
    m, n, k = 1, 1024, 1024  # 2 MiB of weight, far under half of L40S's 96 MiB L2
    bw, capacity = L40S.hbm_bandwidth_bytes_per_s, 0.5 * L40S.l2_cache_bytes
    table, serving = _memory(2.0 * n * k, 2.0 * (m * k + m * n), bw, capacity)
    assert gemm_time_s(_FIT, L40S, m, n, k) == pytest.approx(table, rel=1e-3)
    assert gemm_time_s(_FIT, L40S, m, n, k, l2_warm=False) == pytest.approx(serving, rel=1e-3)
    assert serving / table == pytest.approx(2.0, rel=0.02)  # the whole L2 gain is lost


def test_a_weight_far_over_the_l2_costs_the_same_in_both() -> None:
    m, n, k = 16, 16384, 16384  # 512 MiB of weight: the tables streamed it from HBM too
    warm = gemm_time_s(_FIT, L40S, m, n, k)
    # x = 512 / 48 MiB: the tables kept a gain of 1 / (1 + x^4) ~ 8e-5
    assert gemm_time_s(_FIT, L40S, m, n, k, l2_warm=False) == pytest.approx(warm, rel=1e-4)


@pytest.mark.parametrize("m", [1, 64, 512, 4096])
def test_serving_is_never_faster_than_the_table_row(m: int) -> None:
    for n, k in ((1024, 4096), (4096, 4096), (8192, 8192)):
        warm = gemm_time_s(_FIT, L40S, m, n, k)
        assert gemm_time_s(_FIT, L40S, m, n, k, l2_warm=False) >= warm * (1.0 - 1e-12)


def test_the_kernel_set_prices_the_serving_condition() -> None:
    kernels = KernelSet(load_calibration(), "vllm-0.24", L40S)
    fit = kernels._gemm["bf16"]
    shape = GemmShape(1.0, 2048, 2048, "bf16", 2.0, 2.0)
    t = kernels.gemm_s(shape, L40S.peak_flops(DType.BF16))
    assert t == gemm_time_s(fit, L40S, 1.0, 2048, 2048, l2_warm=False)
    assert t > 1.2 * gemm_time_s(fit, L40S, 1.0, 2048, 2048)  # L40S's fitted L2 gain: 1.37


def test_a_gpu_without_l2_figure_uses_the_fits_reference_l2() -> None:
    gpu = dataclasses.replace(L40S, l2_cache_bytes=0)
    ref = dataclasses.replace(L40S, l2_cache_bytes=int(_FIT.ref_l2_bytes))
    assert gemm_time_s(_FIT, gpu, 1, 1024, 1024, l2_warm=False) == gemm_time_s(
        _FIT, ref, 1, 1024, 1024, l2_warm=False
    )
