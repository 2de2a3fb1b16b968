"""W4A4 MoE experts (NVFP4 on Blackwell, MXFP4-W4A4): derived from the measured w4a16 MoE fit
by the rule in ``opmodels/moe_fp4.py`` (issue 13), and the public op query prices a format's
experts exactly as the op graph does."""

from __future__ import annotations

from dataclasses import replace

import pytest

from servesim.perf.calibration import load_calibration
from servesim.perf.kernel_set import KernelSet
from servesim.perf.kernel_shapes import moe_label
from servesim.perf.op_query import op_time_s
from servesim.perf.opmodels.moe_fp4 import fp4_moe_fit, fp4_moe_fits, is_derived
from servesim.perf.opmodels.moe_layer import MoELayerFit
from servesim.specs.catalog import get_gpu
from servesim.specs.dtypes import DType
from tests.perf.factories import moe_fit

W4A16 = moe_fit(
    weight_bytes=0.53125,
    stream_hidden=1.0,
    stream_inter=1.0,
    mem_eff=0.8,
    compute_eff=0.5,
    tile_rows=64,
    kernel="triton_mxfp4",
)
SHAPE = {"num_tokens": 4096, "hidden": 2880, "inter": 2880, "topk": 4, "num_experts": 128}


def test_the_rule_changes_only_the_format_terms() -> None:
    fit = fp4_moe_fit(W4A16, "fp4")
    # NVFP4: a nibble + one e4m3 scale per 16 elements = 0.5 + 1/16 = 0.5625 B
    assert (fit.weight_bytes, fit.compute_dtype) == (0.5625, "fp4")
    assert fit.fixed_s == W4A16.fixed_s and fit.mem_eff == W4A16.mem_eff
    assert fit.compute_eff == W4A16.compute_eff and is_derived(fit) and not is_derived(W4A16)
    assert fp4_moe_fit(W4A16, "mxfp4_w4a4").weight_bytes == 0.53125  # one e8m0 per 32
    with pytest.raises(ValueError, match="4-bit weight-only"):
        fp4_moe_fit(MoELayerFit(2.0, "bf16", 0, 0, 0, 1, 1, 1, 1), "fp4")
    with pytest.raises(ValueError, match="unknown fp4 kernel"):
        fp4_moe_fit(W4A16, "int4")
    fits = fp4_moe_fits({"mxfp4": W4A16})
    assert sorted(fits) == ["fp4", "mxfp4", "mxfp4_w4a4"]
    assert fp4_moe_fits({"bf16": W4A16}) == {"bf16": W4A16}  # no donor: nothing derived


def test_labels_follow_where_w4a4_computes_natively() -> None:
    assert moe_label(DType.FP4, DType.FP4) == "fp4"
    assert moe_label(DType.MXFP4_W4A4, DType.FP4) == "mxfp4_w4a4"
    assert moe_label(DType.FP4, DType.BF16) == "mxfp4"  # weight-only fallback (Hopper)


def test_blackwell_nvfp4_experts_run_fp4_math_and_hopper_falls_back_to_w4a16() -> None:
    b200 = op_time_s("b200", "moe", dtype="nvfp4", **SHAPE)
    b200_w4a16 = op_time_s("b200", "moe", dtype="mxfp4", **SHAPE)
    # same 4-bit weight stream, fp4 MMAs instead of bf16 ones: faster when math counts
    assert b200.time_s < 0.8 * b200_w4a16.time_s
    h100 = op_time_s("h100-sxm", "moe", dtype="nvfp4", **SHAPE)
    assert h100.time_s == op_time_s("h100-sxm", "moe", dtype="nvfp4-a16", **SHAPE).time_s


def test_the_op_query_prices_4bit_experts_with_their_measured_moe_fit() -> None:
    # H100 gpt-oss MXFP4 rows are measured: the query must use that fit, not the legacy
    # grouped-GEMM roofline, and read the packed bytes (0.53125 B, not 0.5)
    from servesim.perf.kernel_shapes import MoeShape
    from servesim.perf.moe import busiest_device, expert_frequencies
    from servesim.specs.model import MoESpec

    gpu = get_gpu("h100-sxm")
    spec = MoESpec(num_experts=128, num_experts_per_token=4, expert_ffn_size=2880)
    load = busiest_device(expert_frequencies(spec, (), 0.0), 4096, 4, 1)
    shape = MoeShape(4096, 2880, 2880, 4, 128, 1, load.assignments, load.experts_touched)
    kernels = KernelSet(load_calibration(), "vllm-0.24", gpu)
    fit_s = kernels.moe_experts_s(
        replace(shape, label="mxfp4", weight_bytes=0.53125), gpu.peak_flops(DType.BF16)
    )
    assert op_time_s("h100-sxm", "moe", dtype="mxfp4", **SHAPE).time_s == fit_s
    legacy_s = kernels.moe_experts_s(replace(shape, label=None, weight_bytes=0.5), 1e15)
    assert fit_s != legacy_s
