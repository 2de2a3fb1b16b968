"""The GEMM formula on numpy arrays: the inner loop of the GEMM fit.

``formula_array`` is ``servesim.perf.opmodels.gemm.gemm_time_s`` without its grid, vectorised
(tested equal to it); ``_pack``/``_unpack`` map a ``GemmFit`` to the fit's bounded parameter
vector.
"""

from __future__ import annotations

import math

import numpy as np

from servesim.perf.opmodels.deepgemm import single_wave_config
from servesim.perf.opmodels.gemm import (
    ELEMENT_BYTES,
    HOPPER_RESIDENCY,
    QUANT_BLOCK_THREADS,
    QUANT_WORKING_BYTES,
    REF_L2_BYTES,
    REF_QUANT_BLOCKS,
    GemmFit,
    QuantFit,
    sm_residency,
)
from servesim.specs.gpu import GPUSpec

#: The L2 gain is bounded: Hopper's L2 serves ~2-3x its HBM bandwidth.
L2_GAIN_MAX = 4.0
#: Bucket bounds (tokens): the kernels' dispatch switches tiles at 64, 128 and 256 tokens.
BUCKETPARAM_BOUNDS = (16.0, 64.0, 128.0, 256.0, math.inf)
#: Candidate (tile_m, tile_n) per bucket; the fit keeps the one of lowest cost.
TILE_LAYOUTS = {
    "64x128": ((64, 128),) * 5,
    "128x128": ((128, 128),) * 5,
    "dispatch": ((64, 64), (64, 64), (64, 128), (128, 128), (128, 128)),
    "dispatch-2sm": ((64, 64), (64, 64), (64, 128), (128, 128), (256, 128)),
}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


PARAM_BOUND = 60.0  # |entries| of the parameter vector (exp(-60) ~ 1e-26: "zero")


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1.0 - p))


def unpack_fit(x: np.ndarray, label: str, layout: str, **extra: object) -> GemmFit:
    w, a, o = ELEMENT_BYTES[label]
    scales = (1.0, math.exp(x[12]), math.exp(x[13]), math.exp(x[14]), 1.0)
    tiles = TILE_LAYOUTS[layout]
    buckets = tuple(
        (bound, int(t[0]), int(t[1]), s)
        for bound, t, s in zip(BUCKETPARAM_BOUNDS, tiles, scales, strict=True)
    )
    return GemmFit(
        dtype=label,
        weight_bytes=w,
        act_bytes=a,
        out_bytes=o,
        floor_s=math.exp(x[0]),
        mem_eff=_sigmoid(x[1]),
        mem_latency_s=math.exp(x[2]),
        l2_gain=L2_GAIN_MAX * _sigmoid(x[3]),
        l2_frac=math.exp(x[4]),
        kloop_s=math.exp(x[5]),
        kloop_sat=math.exp(x[6]),
        compute_eff=_sigmoid(x[7]),
        k_half=math.exp(x[8]),
        wave_waste=_sigmoid(x[9]),
        overlap=1.0 + math.exp(x[10]),
        row_s=math.exp(x[11]),
        buckets=buckets,
        **extra,  # type: ignore[arg-type]
    )


def pack_fit(fit: GemmFit) -> np.ndarray:
    """Inverse of ``_unpack`` (bucket scales of the three middle buckets)."""
    s = [b[3] for b in fit.buckets]
    x = np.array(
        [
            _log(fit.floor_s),
            _logit(fit.mem_eff),
            _log(fit.mem_latency_s),
            _logit(fit.l2_gain / L2_GAIN_MAX),
            _log(fit.l2_frac),
            _log(fit.kloop_s),
            _log(fit.kloop_sat),
            _logit(fit.compute_eff),
            _log(fit.k_half),
            _logit(fit.wave_waste),
            _log(fit.overlap - 1.0),
            _log(fit.row_s),
            _log(s[1]),
            _log(s[2]),
            _log(s[3]),
        ]
    )
    return np.clip(x, -PARAM_BOUND, PARAM_BOUND)


def _log(x: float) -> float:
    return math.log(max(x, 1e-300))


def formula_array(
    fit: GemmFit, gpu: GPUSpec, m: np.ndarray, n: np.ndarray, k: np.ndarray
) -> np.ndarray:
    """``gemm_time_s`` on arrays, without the grid (used by the fits; tested equal)."""
    peak = gpu.peak_flops_per_s[fit.peak_dtype]
    bw = gpu.hbm_bandwidth_bytes_per_s
    sms = gpu.num_sms or fit.ref_num_sms
    l2 = gpu.l2_cache_bytes or fit.ref_l2_bytes
    tile_m = np.empty_like(m)
    tile_n = np.empty_like(m)
    scale = np.empty_like(m)
    lower = -math.inf
    for bound, tm, tn, s in fit.buckets:
        sel = (m > lower) & (m <= bound)
        tile_m[sel], tile_n[sel], scale[sel] = tm, tn, s
        lower = bound
    nbytes = k * n * fit.weight_bytes + m * k * fit.act_bytes + m * n * fit.out_bytes
    x = nbytes / (fit.l2_frac * l2)
    gain = 1.0 + fit.l2_gain / (1.0 + x**4)
    t_mem = (nbytes / bw + fit.mem_latency_s) / (fit.mem_eff * gain)
    t_k = fit.kloop_s * k / (1.0 + k / fit.kloop_sat)
    waves = np.ceil(m / tile_m) * np.ceil(n / tile_n) / sms
    waves = np.where(waves > 1.0, waves + fit.wave_waste * (np.ceil(waves) - waves), waves)
    t_c = 2.0 * tile_m * tile_n * sms * waves * (k + fit.k_half) / (peak * fit.compute_eff)
    p = fit.overlap
    big = np.maximum(np.maximum(t_c, t_mem), t_k)  # normalise: no overflow for large p
    body = big * ((t_c / big) ** p + (t_mem / big) ** p + (t_k / big) ** p) ** (1.0 / p)
    t = fit.floor_s + scale * body + fit.row_s * m
    if fit.single_wave_scales:
        t = t * single_wave_factors(fit, m, n, sms)
    if fit.quant is not None:
        t = t + quant_array(fit.quant, m, k, bw, sm_residency(gpu), l2)
    return t


def single_wave_factors(fit: GemmFit, m: np.ndarray, n: np.ndarray, sms: int) -> np.ndarray:
    """Per row, the fit's single-wave scale of its DeepGEMM configuration (1 where none)."""
    scales = {(b[0], b[1]): b[2] for b in fit.single_wave_scales}
    return np.array(
        [
            scales.get(single_wave_config(math.ceil(a), int(b), sms), 1.0)  # type: ignore[arg-type]
            for a, b in zip(m, n, strict=True)
        ]
    )


def quant_array(
    q: QuantFit,
    m: np.ndarray,
    k: np.ndarray,
    bw: float,
    residency: tuple[int, int] = HOPPER_RESIDENCY,
    l2_bytes: float = REF_L2_BYTES,
) -> np.ndarray:
    """``QuantFit.time_s`` on arrays."""
    a = q.k_s * k
    b = (q.bytes_per_elem + q.spill_bytes * k / (k + q.spill_k)) * m * k / bw
    if q.l2_frac > 0.0:
        x4 = (QUANT_WORKING_BYTES * m * k / (q.l2_frac * l2_bytes)) ** 4
        b = b * (x4 / (1.0 + x4))
    threads = np.minimum(np.maximum(np.floor(k), 1.0), QUANT_BLOCK_THREADS)
    blocks = np.minimum(residency[1], residency[0] // threads)
    c = q.row_s * m * REF_QUANT_BLOCKS / blocks
    e = q.sm_elem_s * m * k
    big = np.maximum(np.maximum(np.maximum(a, b), c), e)
    p = q.overlap
    norm = (a / big) ** p + (b / big) ** p + (c / big) ** p + (e / big) ** p
    return q.floor_s + big * norm ** (1.0 / p)
