"""Kernel time formulas: a roofline with shape-dependent efficiencies and a launch latency.

The functions accept floats or numpy arrays (the calibration fits call them on arrays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from servesim.perf.calibration import AttentionCurve, ElementwiseCurve, GemmCurve, GpuCalibration

if TYPE_CHECKING:
    from servesim.perf.opmodels.gemm import GemmFit

Num = TypeVar("Num", float, np.ndarray)


def gemm_compute_eff(curve: GemmCurve, m: Num, k: Num, n: Num) -> Num:
    """Fraction of peak a GEMM of M tokens by a K x N weight reaches when compute-bound.

    Small M leaves tensor cores idle (too few tiles); thin K or N shards (high TP) do too.
    """
    h = curve.kn_half
    return curve.e_max * m / (m + curve.m_half) * k / (k + h) * n / (n + h)


def gemm_time_s(
    curve: GemmCurve,
    flops: Num,
    num_bytes: Num,
    m: Num,
    k: Num,
    n: Num,
    peak_flops_per_s: float,
    hbm_bytes_per_s: float,
) -> Num:
    """GEMM time: launch + smoothed max of compute time and memory time."""
    t_c = flops / (peak_flops_per_s * gemm_compute_eff(curve, m, k, n))
    t_m = num_bytes / (hbm_bytes_per_s * curve.mem_eff)
    s = curve.blend
    return curve.launch_s + (t_c**s + t_m**s) ** (1.0 / s)


def legacy_gemm_fit(cal: GpuCalibration) -> GemmFit | None:
    """The structured bf16 GEMM model fitted to this GPU's Vidur rows (``calibrate``), or None
    where the calibration has none (then the smoothed roofline ``gemm_time_s`` prices it).

    It is the vllm-0.24 stack's GEMM model (``opmodels.gemm``: tiles per token bucket, whole
    waves over the SMs, a p-norm overlap of memory, K loop and compute), refitted to the
    cuBLAS kernels Vidur timed: the roofline curve cannot step with whole waves of tiles
    (Llama-2-70B TP4, the layer's four GEMMs: 0.215 ms at 256 tokens, 0.323 at 384, 0.330 at
    512; Vidur h100 mlp.csv).
    """
    if not cal.gemm_fit:
        return None
    from servesim.perf.opmodels.gemm import GemmFit

    return GemmFit.from_dict(cal.gemm_fit)


def elementwise_time_s(curve: ElementwiseCurve, num_bytes: float, hbm_bytes_per_s: float) -> float:
    """A memory-bound kernel (norm, activation, rotary, add, embedding gather)."""
    return curve.launch_s + num_bytes / (hbm_bytes_per_s * curve.mem_eff)


def prefill_attention_eff(curve: AttentionCurve, mean_chunk_tokens: float) -> float:
    """FlashAttention compute efficiency for chunks of this mean length."""
    return curve.prefill_e_max * mean_chunk_tokens / (mean_chunk_tokens + curve.prefill_len_half)


def decode_attention_eff(curve: AttentionCurve, mean_context_tokens: float) -> float:
    """Paged-attention HBM efficiency for sequences of this mean context."""
    return (
        curve.decode_mem_eff * mean_context_tokens / (mean_context_tokens + curve.decode_ctx_half)
    )
