"""MoE fits priced on a GPU they were not measured on (``opmodels.moe_layer.for_gpu``).

A Hopper fit of an arch-bound kernel (FlashInfer CUTLASS) prices an Ada or Ampere GPU through
the portable kernel measured beside it; bandwidth- and peak-bound terms move with the target's
data sheet; the fixed costs (the fused kernel's and the router's) move with the SM clock.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from servesim.perf.fitting.moe_kernels import kernel_archs
from servesim.perf.opmodels.moe_layer import MoELayerFit, for_gpu, moe_layer_s
from servesim.specs.catalog import get_gpu

L40S = get_gpu("l40s")  # 864 GB/s, 362 TFLOP/s bf16, 733 fp8, Ada
H200 = get_gpu("h200-sxm")
A100 = get_gpu("a100-80gb")  # no fp8 peak

# a serial (p = 1) layer with no streaming or per-expert terms: time = fixed + reads + math
PORTABLE = MoELayerFit(
    weight_bytes=1.0,
    compute_dtype="fp8",
    fixed_s=20e-6,
    stream_hidden=0.0,
    stream_inter=0.0,
    mem_eff=0.8,
    compute_eff=0.5,
    tile_rows=16.0,
    overlap_p=1.0,
    fit_gpu="h100-sxm",
    kernel="vllm_fp8moe_triton_tritonexperts",
)
HOPPER_ONLY = replace(
    PORTABLE,
    fixed_s=50e-6,
    mem_eff=0.3,
    kernel="vllm_fp8moe_flashinfer_cutlass_flashinferexperts",
    archs=("hopper", "blackwell"),
    portable=PORTABLE,
)
SHAPE = {
    "num_tokens": 1,
    "hidden": 4096,
    "inter": 14336,
    "topk": 2,
    "num_experts": 8,
    "ep": 1,
    "assignments": 2.0,
    "experts_touched": 2.0,
    "padded": {16: 32.0},  # two experts, one 16-row tile each
    "max_pairs": 1.0,
}
ELEMS = 3 * 4096 * 14336  # gate, up, down of one expert


def test_small_token_layer_on_gpu_without_tables_streams_its_bytes() -> None:
    # L40S is Ada: the CUTLASS fit is replaced by the Triton one measured on the same H100;
    # 1 token reads 2 experts' fp8 weights at 80% of L40S's 864 GB/s, and 32 padded rows of math;
    # the 20 us fixed cost at H100's 1980 MHz takes 20 x 1980 / 2520 = 15.71 us at L40S's clock
    reads = 2 * ELEMS * 1.0 / (864e9 * 0.8)
    math = 2.0 * 32 * ELEMS / (733e12 * 0.5)
    expected = 20e-6 * 1980 / 2520 + reads + math
    assert moe_layer_s(HOPPER_ONLY, L40S, **SHAPE) == pytest.approx(expected, rel=1e-9)
    # 2 x 176.2M bytes at 691 GB/s: the memory-bound term dominates
    assert reads == pytest.approx(509.7e-6, rel=1e-3)


def test_same_architecture_keeps_the_measured_kernel() -> None:
    reads = 2 * ELEMS / (4.8e12 * 0.3)
    math = 2.0 * 32 * ELEMS / (1979e12 * 0.5)
    assert H200.hbm_bandwidth_bytes_per_s == pytest.approx(4.8e12)
    assert moe_layer_s(HOPPER_ONLY, H200, **SHAPE) == pytest.approx(50e-6 + reads + math)


def test_missing_fp8_peak_prices_math_at_bf16() -> None:
    moved = for_gpu(HOPPER_ONLY, A100)
    assert moved.compute_dtype == "bf16"
    assert moved.fixed_s == pytest.approx(20e-6 * 1980 / 1410)  # A100 boost 1410 MHz
    assert moved.fit_gpu == A100.name and for_gpu(moved, A100) is moved


def test_fit_on_its_own_gpu_is_untouched() -> None:
    h100 = get_gpu("h100-sxm")
    assert for_gpu(HOPPER_ONLY, h100) is HOPPER_ONLY
    legacy = replace(HOPPER_ONLY, fit_gpu="")  # fits from before the GPU was recorded
    assert for_gpu(legacy, L40S) is legacy


def test_nested_portable_fit_round_trips_json() -> None:
    data = HOPPER_ONLY.to_dict()
    assert data["portable"]["kernel"] == PORTABLE.kernel
    back = MoELayerFit.from_dict(data)
    assert back.archs == ("hopper", "blackwell") and back.portable is not None
    assert back.portable.fixed_s == pytest.approx(20e-6)
    assert (
        MoELayerFit.from_dict({k: v for k, v in data.items() if k != "portable"}).portable is None
    )


def test_kernel_architectures() -> None:
    # vLLM's Hopper pick only: Blackwell runs FlashInfer TRTLLM-gen (test_moe_blackwell_fp8)
    assert kernel_archs("vllm_modeloptfp8moe_flashinfer_cutlass_flashinferexperts") == ("hopper",)
    # Hopper-only too, but kept: its only Hopper stand-in is another quantisation method
    assert kernel_archs("vllm_gptossmxfp4moe_triton_oaitritonmxfp4expertsmonolithic") == ()
    assert kernel_archs("vllm_fp8moe_triton_tritonexperts") == ()
    assert kernel_archs("vllm_compressedtensorswna16marlinmoe_marlin_marlinexperts") == ()


def test_router_and_fixed_costs_scale_with_the_sm_clock() -> None:
    # H100 (1980 MHz) -> A100 (1410 MHz): the fused kernel's 20 us and the router's 8 us are
    # cycle counts, 28.09 and 11.23 us there; H100 -> H200 (same clock): unchanged
    fit = replace(PORTABLE, router_fixed_s=8e-6)
    a100 = for_gpu(fit, A100)
    assert a100.fixed_s == pytest.approx(28.085e-6, rel=1e-4)
    assert a100.router_fixed_s == pytest.approx(11.234e-6, rel=1e-4)
    h200 = for_gpu(fit, H200)
    assert (h200.fixed_s, h200.router_fixed_s) == (fit.fixed_s, fit.router_fixed_s)
