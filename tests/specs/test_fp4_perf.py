"""NVFP4 W4A4 GEMM prices: the bytes and FLOP time on a B200 by hand, the weight-only
fallback on an H100, and the op graph of a ModelOpt NVFP4 checkpoint on each."""

from __future__ import annotations

import dataclasses
import math

import pytest

from servesim.perf.calibration import load_calibration
from servesim.perf.graph import PlanGraph
from servesim.perf.kernel_set import KernelSet
from servesim.perf.kernel_shapes import FP4_LABELS, GemmShape
from servesim.perf.kernels import legacy_gemm_fit
from servesim.perf.op_query import op_time_s
from servesim.perf.opmodels.fp4 import FP4_BYTES, fp4_gemm_fit, fp4_quant_fit, is_derived
from servesim.perf.opmodels.gemm import GemmFit, QuantFit, gemm_time_s
from servesim.perf.types import ReplicaPlan
from servesim.specs.catalog import get_gpu
from servesim.specs.dtypes import DType
from servesim.specs.model import ModelSpec

STACK = "vllm-0.24"


def _fp8_fit(**changes: object) -> GemmFit:
    """An fp8 fit whose time is a plain sum of compute and memory (no floors, no latency)."""
    base = GemmFit(
        dtype="fp8",
        weight_bytes=1.0,
        act_bytes=1.0,
        out_bytes=2.0,
        floor_s=0.0,
        mem_eff=0.9,
        mem_latency_s=0.0,
        l2_gain=0.0,
        l2_frac=0.2,
        kloop_s=0.0,
        kloop_sat=2000.0,
        compute_eff=0.8,
        k_half=0.0,
        wave_waste=0.0,
        overlap=1.0,
        row_s=0.0,
        buckets=((math.inf, 128, 128, 1.0),),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_nvfp4_gemm_bytes_and_flop_time_on_b200_by_hand() -> None:
    b200 = get_gpu("b200")  # fp4 9 PF dense, 8 TB/s, 148 SMs
    fit = fp4_gemm_fit(_fp8_fit())
    assert (fit.dtype, fit.weight_bytes, fit.act_bytes, fit.out_bytes) == ("fp4", 0.5625, 0.5625, 2)
    m = n = k = 8192
    # 64 x 64 tiles of 128 x 128 over 148 SMs: 27.7 waves, no tail lost (wave_waste 0), so
    # the compute term is 2 m n k / (fp4 peak x 0.8) = 1.0995e12 / 7.2e15 = 152.7 us
    compute_s = 2.0 * m * n * k / (9.0e15 * 0.8)
    # weights and activations at 0.5625 B (nibble + e4m3 scale per 16), bf16 out:
    # 67.1 M x (0.5625 + 0.5625 + 2) = 209.7 MB at 8 TB/s x 0.9 = 29.1 us
    nbytes = k * n * 0.5625 + m * k * 0.5625 + m * n * 2.0
    assert nbytes == 209_715_200
    memory_s = nbytes / (8.0e12 * 0.9)
    assert gemm_time_s(fit, b200, m, n, k) == pytest.approx(compute_s + memory_s, rel=1e-12)
    assert compute_s + memory_s == pytest.approx(181.8e-6, rel=1e-3)
    # the same shape in fp8 runs at half the peak and reads 1 B per weight and input
    fp8 = gemm_time_s(_fp8_fit(), b200, m, n, k)
    fp8_bytes = k * n * 1.0 + m * k * 1.0 + m * n * 2.0
    assert fp8 == pytest.approx(2 * compute_s + fp8_bytes / (8.0e12 * 0.9), rel=1e-12)


def test_the_fp4_quantisation_kernel_writes_fewer_bytes() -> None:
    fp8 = QuantFit(floor_s=2e-6, k_s=1e-10, bytes_per_elem=3.0, row_s=1e-9, overlap=1.0)
    fp4 = fp4_quant_fit(fp8)
    # bf16 read (2 B) + nibble and e4m3 scale per 16 written (0.5625 B) against 2 + 1 for fp8
    assert fp4.bytes_per_elem == pytest.approx(3.0 * 2.5625 / 3.0)
    bw = 8.0e12
    m, k = 64, 8192
    extra = fp8.time_s(m, k, bw) - fp4.time_s(m, k, bw)
    assert extra == pytest.approx((3.0 - 2.5625) * m * k / bw, rel=1e-9)
    with_quant = fp4_gemm_fit(_fp8_fit(quant=fp8))
    assert with_quant.quant == fp4


def test_shipped_b200_fp4_is_derived_from_its_fp8_fit_and_fp8_is_untouched() -> None:
    cal, b200 = load_calibration(), get_gpu("b200")
    kernels = KernelSet(cal, STACK, b200)
    fp4, fp8 = kernels._gemm["fp4"], kernels._gemm["fp8"]
    assert is_derived(fp4) and not is_derived(fp8)
    assert fp4 == fp4_gemm_fit(fp8)
    shape = (4096, 8192, 8192)
    t4 = kernels.gemm_s(GemmShape(*shape, "fp4", 0.5, 0.5), b200.peak_flops(DType.FP4))
    t8 = kernels.gemm_s(GemmShape(*shape, "fp8", 1.0, 1.0), b200.peak_flops(DType.FP8))
    assert t4 == gemm_time_s(fp4, b200, *shape, l2_warm=False)
    assert t8 == gemm_time_s(fp8, b200, *shape, l2_warm=False)
    assert 0.5 * t8 < t4 < t8  # twice the peak, ~half the bytes, the same floors
    assert op_time_s("b200", "gemm", dtype="nvfp4", m=4096, n=8192, k=8192).time_s == t4


def test_h100_runs_nvfp4_weight_only_by_hand() -> None:
    h100 = get_gpu("h100-sxm")
    m, n, k = 256, 8192, 8192
    fp4 = op_time_s(h100, "gemm", dtype="fp4", m=m, n=n, k=k).time_s
    a16 = op_time_s(h100, "gemm", dtype="nvfp4-a16", m=m, n=n, k=k).time_s
    # Marlin NVFP4 (weight-only, bf16 activations): the legacy stack's 16-bit GEMM model
    # (fitted to Vidur's cuBLAS rows) streaming 0.5 B per weight, a serving step's cold weight
    legacy = legacy_gemm_fit(KernelSet(load_calibration(), STACK, h100).legacy)
    assert legacy is not None and legacy.weight_bytes == 2.0
    hand = gemm_time_s(dataclasses.replace(legacy, weight_bytes=0.5), h100, m, n, k, False)
    assert fp4 == a16 == pytest.approx(hand, rel=1e-12)
    bf16 = op_time_s(h100, "gemm", stack="vllm-0.6", dtype="bf16", m=m, n=n, k=k).time_s
    assert fp4 < bf16  # the same kernel model, a quarter of the weight bytes


def _nvfp4_llama() -> ModelSpec:
    cfg = {
        "model_type": "llama",
        "hidden_size": 4096,
        "num_hidden_layers": 4,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "quantization_config": {
            "quant_method": "modelopt",
            "quantization": {"quant_algo": "NVFP4", "group_size": 16, "exclude_modules": []},
        },
    }
    return ModelSpec.from_hf_config(cfg, name="llama-nvfp4")


@pytest.mark.parametrize(
    ("gpu", "label", "act", "in_bytes"),
    [("b200", "fp4", DType.FP4, 0.5), ("h100-sxm", None, DType.BF16, 2.0)],
)
def test_modelopt_checkpoint_groups(gpu: str, label: str | None, act: DType, in_bytes: float):
    spec = get_gpu(gpu)
    plan = ReplicaPlan(_nvfp4_llama(), spec, kernel_stack=STACK)
    graph = PlanGraph(plan, load_calibration())
    for group in ("attention", "dense_mlp"):
        g = graph.groups[group]
        assert g.gemm_label == label and g.in_bytes == in_bytes
        assert g.weight_bytes == 0.5625  # the checkpoint's scales are read with its weights
        assert g.peak_flops_per_s == spec.peak_flops(act)
    if label == "fp4":
        assert not graph.is_calibrated  # derived from fp8: no fp4 tables anywhere


def test_mxfp4_w4a4_on_mi355x_reads_its_own_bytes() -> None:
    assert tuple(FP4_BYTES) == FP4_LABELS
    mx = fp4_gemm_fit(_fp8_fit(), "mxfp4_w4a4")
    assert (mx.weight_bytes, mx.act_bytes) == (0.53125, 0.53125)  # nibble + e8m0 per 32
    mi355x = get_gpu("mi355x")  # fp4 10.07 PF dense, 8 TB/s, 256 CUs
    m = n = k = 8192
    compute_s = 2.0 * m * n * k / (mi355x.peak_flops(DType.FP4) * 0.8)
    nbytes = k * n * 0.53125 * 2 + m * n * 2.0
    memory_s = nbytes / (mi355x.hbm_bandwidth_bytes_per_s * 0.9)
    # 64 x 64 tiles over 256 CUs: 16 whole waves
    assert gemm_time_s(mx, mi355x, m, n, k) == pytest.approx(compute_s + memory_s, rel=1e-12)
    shipped = op_time_s(mi355x, "gemm", dtype="mxfp4-w4a4", m=4096, n=8192, k=8192).time_s
    fp8 = op_time_s(mi355x, "gemm", dtype="fp8", m=4096, n=8192, k=8192).time_s
    nvfp4 = op_time_s(mi355x, "gemm", dtype="nvfp4", m=4096, n=8192, k=8192).time_s
    mxfp4 = op_time_s(mi355x, "gemm", dtype="mxfp4", m=4096, n=8192, k=8192).time_s
    assert shipped < fp8 < nvfp4 == mxfp4  # NVFP4 is weight-only on CDNA 4
