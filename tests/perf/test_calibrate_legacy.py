"""The legacy (vllm-0.6) stack's pricing: the structured GEMM model fitted to Vidur's tables and
vLLM's fused residual add + RMSNorm, with hand-computed expectations."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from factories import h100, llama31_70b

from servesim.perf.calibration import FUSED_NORM, calibration_from_dict
from servesim.perf.graph import PlanGraph
from servesim.perf.kernel_set import KernelSet
from servesim.perf.kernel_shapes import GemmShape
from servesim.perf.types import ReplicaPlan

# A structured GEMM fit chosen so the formula can be followed by hand: one tile bucket of
# 128 x 128, no wave waste, no K loop or L2 gain, a p-norm of 2 over compute and memory.
GEMM_FIT = {
    "dtype": "bf16",
    "weight_bytes": 2.0,
    "act_bytes": 2.0,
    "out_bytes": 2.0,
    "floor_s": 5e-6,
    "mem_eff": 1.0,
    "mem_latency_s": 0.0,
    "l2_gain": 0.0,
    "l2_frac": 0.1,
    "kloop_s": 0.0,
    "kloop_sat": 1e9,
    "compute_eff": 0.75,
    "k_half": 0.0,
    "wave_waste": 0.0,
    "overlap": 2.0,
    "row_s": 0.0,
    "buckets": [[None, 128, 128, 1.0]],
}
ELEMENTWISE = {
    "norm": {"mem_eff": 0.4, "launch_s": 3e-6},
    "add": {"mem_eff": 0.9, "launch_s": 1e-6},
    "rope": {"mem_eff": 0.5, "launch_s": 2e-6},
    "activation": {"mem_eff": 0.6, "launch_s": 2e-6},
    "embedding": {"mem_eff": 0.2, "launch_s": 3e-6},
}


def _calibration(gemm_fit: dict | None = GEMM_FIT, elementwise: dict = ELEMENTWISE):
    entry = {
        "calibrated": True,
        "ref_peak_flops_per_s": 989.4e12,
        "ref_hbm_bytes_per_s": 3.35e12,
        "gemm": {"e_max": 0.75, "m_half": 32.0, "kn_half": 1.0, "mem_eff": 1.0},
        "elementwise": elementwise,
    }
    if gemm_fit is not None:
        entry["gemm_fit"] = gemm_fit
    return calibration_from_dict({"gpus": {"h100": entry}, "default_gpu": entry})


def test_legacy_gemm_runs_the_structured_model_by_hand() -> None:
    kernels = KernelSet(_calibration(), "vllm-0.6", h100())
    # Llama-70B TP4 up+gate projection at a 512-token chunk: m=512, k=8192, n=14336
    t = kernels.gemm_s(GemmShape(512, 14336, 8192), 989.4e12)
    # compute: 4 x 112 tiles of 128 x 128 over 132 SMs = 3.39 waves (no waste), each tile
    # 2 x 128 x 128 x 8192 FLOPs -> 2 x 128 x 128 x 448 x 8192 = 120,259,084,288 FLOPs at 75%
    t_c = 120_259_084_288 / (989.4e12 * 0.75)  # 162.06 us
    # memory (weights cold): 8192 x 14336 x 2 + 512 x 8192 x 2 + 512 x 14336 x 2 bytes
    t_m = 257_949_696 / 3.35e12  # 77.00 us
    assert t == pytest.approx(5e-6 + math.hypot(t_c, t_m), rel=1e-9)  # 184.42 us
    assert t == pytest.approx(184.42e-6, rel=1e-4)


def test_legacy_weight_only_gemm_streams_packed_weights_by_hand() -> None:
    kernels = KernelSet(_calibration(), "vllm-0.6", h100())
    # W4A16 (int4 weights, 16-bit activations): the same tiles and math as the 16-bit GEMM,
    # the weight read at half a byte: 58,720,256 + 8,388,608 + 14,680,064 bytes
    t = kernels.gemm_s(GemmShape(512, 14336, 8192, None, 0.5, 2.0), 989.4e12)
    t_c = 120_259_084_288 / (989.4e12 * 0.75)
    t_m = 81_788_928 / 3.35e12  # 24.41 us
    assert t == pytest.approx(5e-6 + math.hypot(t_c, t_m), rel=1e-9)  # 168.89 us


def test_legacy_gemm_keeps_the_roofline_without_a_fit_or_for_fp8() -> None:
    shape = GemmShape(512, 14336, 8192)
    plain = KernelSet(_calibration(gemm_fit=None), "vllm-0.6", h100())
    fitted = KernelSet(_calibration(), "vllm-0.6", h100())
    assert plain.gemm_s(shape, 989.4e12) != fitted.gemm_s(shape, 989.4e12)
    # fp8 W8A8 (8-bit activations, fp8 peak): no Vidur table, the roofline curve either way
    fp8 = GemmShape(512, 14336, 8192, None, 1.0, 1.0)
    assert plain.gemm_s(fp8, 1978.9e12) == fitted.gemm_s(fp8, 1978.9e12)


def test_fused_add_norm_is_one_streaming_kernel_by_hand() -> None:
    cal = _calibration()
    # derived: the norm's fixed cost, the add's streaming efficiency
    curve = cal.for_gpu("h100-sxm").elementwise[FUSED_NORM]
    assert (curve.launch_s, curve.mem_eff) == (3e-6, 0.9)
    graph = PlanGraph(ReplicaPlan(llama31_70b(), h100(), tp=4), cal)
    ops = {op.name: op for op in graph.token_ops(512)}
    norm = ops["input_norm"]
    # read x and the residual, write both: 8 bytes x 512 tokens x 8192 = 33,554,432 bytes
    assert norm.num_bytes == norm.count * 33_554_432
    per_layer = 3e-6 + 33_554_432 / (3.35e12 * 0.9)  # 14.13 us (the plain-norm curve: 28.0)
    assert norm.time_s == pytest.approx(norm.count * per_layer, rel=1e-9)
    assert ops["post_attn_norm"].time_s == pytest.approx(norm.time_s, rel=1e-12)


def test_a_calibration_with_its_own_fused_norm_curve_keeps_it() -> None:
    own = {**ELEMENTWISE, FUSED_NORM: {"mem_eff": 0.7, "launch_s": 2e-6}}
    curve = _calibration(elementwise=own).for_gpu("h100").elementwise[FUSED_NORM]
    assert (curve.launch_s, curve.mem_eff) == (2e-6, 0.7)


def _shared_data() -> Path | None:
    root = Path(os.environ.get("SERVESIM_SHARED_DATA", Path(__file__).parents[3] / "shared/data"))
    return root if (root / "profiling" / "vidur" / "compute" / "h100").is_dir() else None


@pytest.mark.skipif(_shared_data() is None, reason="needs ../shared/data (Vidur tables)")
def test_the_structured_fit_beats_the_roofline_on_held_out_70b_prefill_rows() -> None:
    from servesim.perf.calibrate import _split
    from servesim.perf.calibrate_data import GEMM_OPS, read_vidur_compute
    from servesim.perf.calibrate_legacy import fit_structured_gemm, structured_gemm_predict

    samples = read_vidur_compute(_shared_data(), "a40")
    train, test = _split([s for s in samples if s.op in GEMM_OPS and s.time_s > 0])
    fit = fit_structured_gemm(train, "a40")
    rows = [s for s in test if 256 < s.num_tokens <= 2048]
    pred = structured_gemm_predict(fit, rows, "a40")
    mape = sum(abs(p - s.time_s) / s.time_s for p, s in zip(pred, rows, strict=True)) / len(rows)
    assert mape < 0.09  # 8.1% held out (the roofline curve: 8.9%)
