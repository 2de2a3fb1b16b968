"""The GEMM wave-tail transfer rule: a Hopper bf16 fit on a pre-Hopper GPU (hand-computed)."""

from __future__ import annotations

import dataclasses

import pytest

from servesim.perf.opmodels.gemm import GemmFit, bf16_wave_waste, gemm_time_s
from servesim.perf.opmodels.transfer import adapt_params
from servesim.specs.catalog import get_gpu
from tests.perf.factories import gemm_fit

H100, A100, L40S, H200 = (get_gpu(n) for n in ("h100-sxm", "a100-80gb", "l40s", "h200-sxm"))

_FIT = gemm_fit()


def test_the_rule_by_kernel_family() -> None:
    assert bf16_wave_waste("hopper", "ada") == 1.0  # persistent -> one CTA per tile
    assert bf16_wave_waste("hopper", "ampere") == 1.0
    assert bf16_wave_waste("ampere", "hopper") == 0.0  # and back
    assert bf16_wave_waste("hopper", "hopper") is None  # same family: the fit's own
    assert bf16_wave_waste("ampere", "ada") is None
    assert bf16_wave_waste("hopper", "cdna3") is None  # a family the rule does not know
    assert bf16_wave_waste("", "ada") is None


def test_a_hopper_bf16_fit_loses_the_whole_tail_on_l40s_and_keeps_fp8_as_fitted() -> None:
    params = {"bf16": _FIT.to_dict(), "fp8": {**_FIT.to_dict(), "dtype": "fp8"}}
    params["bf16"]["wave_waste"] = params["fp8"]["wave_waste"] = 0.01
    out = adapt_params("gemm", params, H100, L40S)
    assert out["bf16"]["wave_waste"] == 1.0
    assert out["fp8"]["wave_waste"] == 0.01  # CUTLASS fp8 kernels: the fits agree already
    assert adapt_params("gemm", params, H100, H200)["bf16"]["wave_waste"] == 0.01
    assert adapt_params("gemm", params, A100, H100)["bf16"]["wave_waste"] == 0.0
    assert params["bf16"]["wave_waste"] == 0.01  # the donor's parameters are not changed


def test_one_tile_past_a_wave_costs_a_whole_wave_on_l40s() -> None:
    # 11 x 13 = 143 tiles of 128 x 128 on L40S's 142 SMs: the second wave holds one tile. With
    # the whole tail lost the compute is 2 full waves: 2 * 2 * 128 * 128 * 142 * k flops at the
    # peak (25.7 ns per k; the weights and activations stream in 7.1 ns per k, under it)
    gpu = dataclasses.replace(L40S, num_sms=142)
    fit = GemmFit.from_dict(adapt_params("gemm", {"bf16": _FIT.to_dict()}, H100, gpu)["bf16"])
    m, n, k = 11 * 128, 13 * 128, 4096
    peak = gpu.peak_flops_per_s[fit.peak_dtype]
    two_waves = 2 * 2.0 * 128 * 128 * 142 * k / peak
    assert gemm_time_s(fit, gpu, m, n, k) == pytest.approx(two_waves, rel=1e-3)
    # the Hopper fit as it was (tail hidden) prices 143 / 142 of a wave
    hidden = gemm_time_s(_FIT, gpu, m, n, k)
    assert hidden == pytest.approx(two_waves * 143 / 284, rel=1e-3)
