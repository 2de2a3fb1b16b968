"""fp8 MoE on Blackwell: vLLM runs FlashInfer TRTLLM-gen there, not the FlashInfer CUTLASS kernel
the Hopper tables measure, so the fit's ``blackwell`` stand-in (the stack's bf16 structure at fp8
bytes and the fp8 peak, ``fitting.moe_kernels.blackwell_stand_in``) prices it; hand-computed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from servesim.perf.fitting.moe_kernels import blackwell_stand_in
from servesim.perf.opmodels.moe_layer import MoELayerFit, for_gpu, moe_layer_s
from servesim.specs.catalog import get_gpu

B200 = get_gpu("b200")  # Blackwell: 8 TB/s, 2250 TFLOP/s bf16, 4500 fp8 (dense)
L40S = get_gpu("l40s")
# serial (p = 1) layers without streaming: time = fixed + weight reads + math
BF16 = MoELayerFit(
    weight_bytes=2.0,
    compute_dtype="bf16",
    fixed_s=30e-6,
    stream_hidden=0.0,
    stream_inter=0.0,
    mem_eff=0.9,
    compute_eff=0.7,
    tile_rows=16.0,
    overlap_p=1.0,
    fit_gpu="h200-sxm",
    kernel="vllm_unquantizedfusedmoemethod_triton_tritonexperts",
)
TRITON_FP8 = replace(BF16, weight_bytes=1.0, compute_dtype="fp8", fixed_s=25e-6, mem_eff=0.7)
# the Hopper CUTLASS per-tensor fit: slower than bf16, as the H200 table measures it
CUTLASS_FP8 = replace(
    TRITON_FP8,
    fixed_s=50e-6,
    mem_eff=0.26,
    compute_eff=0.15,
    kernel="vllm_modeloptfp8moe_flashinfer_cutlass_flashinferexperts",
    archs=("hopper",),
    portable=TRITON_FP8,
)
FP8 = replace(CUTLASS_FP8, blackwell=blackwell_stand_in(BF16, CUTLASS_FP8, "fp8"))
# Mixtral-8x7B decode, 8 tokens on one GPU: all 8 experts touched, 16 pairs in 8 tiles of 16
DECODE = {
    "num_tokens": 8,
    "hidden": 4096,
    "inter": 14336,
    "topk": 2,
    "num_experts": 8,
    "ep": 1,
    "assignments": 16.0,
    "experts_touched": 8.0,
    "padded": {16: 128.0},
    "max_pairs": 2.0,
}
ELEMS = 3 * 4096 * 14336


def test_stand_in_is_bf16_structure_at_fp8_bytes_and_peak() -> None:
    stand_in = FP8.blackwell
    assert stand_in is not None
    assert (stand_in.weight_bytes, stand_in.compute_dtype) == (1.0, "fp8")
    assert (stand_in.fixed_s, stand_in.mem_eff, stand_in.compute_eff) == (30e-6, 0.9, 0.7)
    assert stand_in.kernel.startswith("derived-blackwell-fp8:") and stand_in.archs == ()


def test_b200_fp8_is_priced_by_the_stated_rule() -> None:
    # H200 (1980 MHz) -> B200: the fixed cost scales by the clock ratio (1 in the catalog here)
    from servesim.perf.opmodels.transfer import clock_ratio

    clock = clock_ratio(get_gpu("h200-sxm"), B200)
    reads = 8 * ELEMS * 1.0 / (8e12 * 0.9)  # 8 experts' fp8 weights at 90% of 8 TB/s
    math = 2.0 * 128 * ELEMS / (4500e12 * 0.7)  # 128 padded rows at 70% of the fp8 peak
    expected = 30e-6 * clock + reads + math
    assert moe_layer_s(FP8, B200, **DECODE) == pytest.approx(expected, rel=1e-9)
    assert reads == pytest.approx(195.8e-6, rel=1e-3)  # 1.41 GB at 7.2 TB/s


def test_b200_fp8_decode_is_not_slower_than_bf16() -> None:
    fp8 = moe_layer_s(FP8, B200, **DECODE)
    bf16 = moe_layer_s(BF16, B200, **DECODE)
    # bandwidth-bound: half the weight bytes, so close to half the time above the fixed cost
    assert fp8 < bf16
    assert (fp8 - 30e-6) / (bf16 - 30e-6) == pytest.approx(0.5, abs=0.02)
    # the Hopper CUTLASS fit carried as it was (the old rule) prices it 1.76x slower than bf16
    assert moe_layer_s(replace(CUTLASS_FP8, archs=("hopper", "blackwell")), B200, **DECODE) > bf16


def test_ada_keeps_the_portable_triton_fit() -> None:
    assert for_gpu(FP8, L40S).kernel == TRITON_FP8.kernel


def test_stand_in_round_trips_json_and_is_absent_when_none() -> None:
    back = MoELayerFit.from_dict(FP8.to_dict())
    assert back.blackwell is not None and back.blackwell.compute_dtype == "fp8"
    assert "blackwell" not in BF16.to_dict()


def test_shipped_b200_fp8_moe_is_the_h200_stand_in_and_beats_bf16() -> None:
    from servesim.perf.calibration import load_calibration
    from servesim.perf.kernel_set import KernelSet
    from servesim.perf.op_query import op_time_s

    shape = dict(num_tokens=64, hidden=4096, inter=14336, topk=2, num_experts=8, ep=1)
    fp8 = op_time_s(B200, "moe", dtype="fp8", **shape).time_s
    bf16 = op_time_s(B200, "moe", dtype="bf16", **shape).time_s
    assert fp8 < bf16  # Mixtral-8x7B decode step: bandwidth-bound, half the weight bytes
    fit = KernelSet(load_calibration(), "vllm-0.24", B200)._moe["fp8"]
    assert fit.archs == ("hopper",) and fit.blackwell is not None
    assert for_gpu(fit, B200).kernel.startswith("derived-blackwell-fp8:")
