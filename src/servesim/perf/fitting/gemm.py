"""Fit the GEMM opmodel (``servesim.perf.opmodels.gemm``) to aiconfigurator kernel tables.

Rows (``fitting.gemm_rows``) are single GEMM calls (``gemm_perf.parquet``) plus the
activation quantisation kernels of the fp8 path (``quantize`` tables, summed per ``(m, k)``
into the dynamic kernel's time).

Per kernel format (``bf16``, ``fp8``, ``fp8_block``) the mechanistic parameters are fitted by
robust least squares on log time over a fixed subsample of the rows, the token-bucket tile
layout chosen among a few candidates by the same cost; a coarse log-grid correction over
``(m, n, k)`` is then fitted to what is left on every row.

Special cases, decided from the tables themselves:

* quantisation tables whose floor is above the fp8 GEMM table's own floor cannot be what that
  table's rows contain (SGLang's ``quantize`` tables time a ~7.5 us path; its fp8 GEMM rows
  start at ~4.4 us): the same GPU's vLLM quantisation tables are used instead; a GPU without
  any (L40S) uses ``DEFAULT_QUANT`` (fitted on H100 vLLM 0.24) on its own bandwidth;
* fp8_block tables timed without CUDA graphs (a floor of tens of microseconds, e.g. vLLM
  DeepGEMM on H100 ~60-90 us, Triton on L40S ~350 us) are fitted only on rows at least
  ``EAGER_MARGIN`` times that floor, where the GPU work dominates; the small-shape terms
  (floor, memory latency, K loop, L2) come from the stack's fp8 fit (or its bf16 fit) and no
  grid is fitted, so decode-size predictions carry graph-replay costs, not the eager floor.

Run ``python -m servesim.perf.fitting.gemm_report`` for the held-out report (shape-wise 4-fold
cross-validation per stack, leave-one-GPU-out from H100, the legacy curve as baseline).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from servesim.perf.fitting.gemm_arrays import (
    L2_GAIN_MAX,
    PARAM_BOUND,
    TILE_LAYOUTS,
    formula_array,
    pack_fit,
    quant_array,
    unpack_fit,
)
from servesim.perf.fitting.gemm_rows import (
    DATASHEET_SMS_L2,
    DTYPE_LABELS,
    EAGER_FLOOR_S,
    EAGER_MARGIN,
    MIN_SHAPES,
    SMALL_TOKENS,
    STACKS,
    eager_floor_s,
    eager_mask,
    load_rows,
    row_floors,
    with_datasheet,
)
from servesim.perf.fitting.heldout import Rows, fit_log_grid, take
from servesim.perf.opmodels.deepgemm import single_wave_config
from servesim.perf.opmodels.gemm import (
    ELEMENT_BYTES,
    HOPPER_RESIDENCY,
    PEAK_DTYPE,
    REF_L2_BYTES,
    GemmFit,
    QuantFit,
    gemm_time_s,
    sm_residency,
)
from servesim.specs.gpu import GPUSpec

# The family module's interface (``fitting.build``: ``fit``, ``predict``; ``eager_mask`` for
# scoring; the report: ``load_rows``, ``STACKS``) stays importable from here.
__all__ = [
    "DATASHEET_SMS_L2",
    "DEFAULT_QUANT",
    "DTYPE_LABELS",
    "GRID_AXES",
    "SMALL_TOKENS",
    "STACKS",
    "eager_mask",
    "fit",
    "fit_block",
    "fit_dtype",
    "fit_quant",
    "load_rows",
    "predict",
    "with_datasheet",
]

#: Rows per parametric fit (a fixed subsample: the fits stay a few seconds each).
FIT_ROWS = 8000
#: Activation quantisation of a GPU without quantize tables (fitted on H100 vLLM 0.24.0).
DEFAULT_QUANT = QuantFit(
    floor_s=2.50443e-6,
    k_s=1.78296e-10,
    bytes_per_elem=2.89273,
    row_s=1.62095e-9,
    overlap=4.18797,
    spill_bytes=4.22712,
    spill_k=30496.0,
)
# correction grid axes (log2 of m, n, k): 11 x 9 x 9 = 891 values
GRID_AXES = (
    (0.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 15.0),
    (5.0, 7.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 16.0),
    (5.0, 7.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 16.0),
)
# parameter vector (see _unpack): log floor, logit mem_eff, log mem_latency, logit l2_gain/max,
# log l2_frac, log kloop_s, log kloop_sat, logit compute_eff, log k_half, logit wave_waste,
# log (overlap - 1), log row_s, log scale of the 16-64, 64-128 and 128-256 token buckets
_X0 = np.array(
    [
        np.log(2.5e-6),
        2.0,
        np.log(2e-6),
        np.log(0.3 / (L2_GAIN_MAX - 0.3)),  # logit(0.3 / L2_GAIN_MAX)
        np.log(0.2),
        np.log(2e-9),
        np.log(2000.0),
        1.5,
        np.log(100.0),
        -2.0,
        np.log(1.0),
        np.log(1e-10),
        0.0,
        0.0,
        0.0,
    ]
)
_SCALE_PRIOR = 3.0  # weight of the pull of the bucket scales towards 1


# ---- fits -----------------------------------------------------------------------------------
def fit_quant(
    rows: Rows,
    bw: float,
    residency: tuple[int, int] = HOPPER_RESIDENCY,
    l2_bytes: float = REF_L2_BYTES,
) -> QuantFit:
    """The quantisation kernel's constants from its rows (``op == "quantize"``), measured on
    a GPU of ``bw`` B/s whose SMs hold ``residency`` = (threads, blocks), ``l2_bytes`` of L2."""
    from scipy.optimize import least_squares

    m, k, t = rows["m"], rows["k"], rows["latency_s"]

    def unpack(x: np.ndarray) -> QuantFit:
        return QuantFit(
            floor_s=math.exp(x[0]),
            k_s=math.exp(x[1]),
            bytes_per_elem=math.exp(x[2]),
            row_s=math.exp(x[3]),
            overlap=1.0 + math.exp(x[4]),
            spill_bytes=math.exp(x[5]),
            spill_k=math.exp(x[6]),
            sm_elem_s=math.exp(x[7]),
            l2_frac=math.exp(x[8]),
        )

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(quant_array(unpack(x), m, k, bw, residency, l2_bytes)) - np.log(t)

    # sm_elem_s start: H100 m = 1024, k = 8192 (8.4 M elements, L2-resident) takes ~10 us
    x0 = np.log([2e-6, 2e-10, 3.0, 1e-9, 1.0, 2.0, 8000.0, 1.2e-12, 0.5])
    result = least_squares(residual, x0, loss="soft_l1", f_scale=0.05, max_nfev=2000)
    return unpack(result.x)


def _subsample(num: int, size: int, seed: int = 0) -> np.ndarray:
    if num <= size:
        return np.arange(num)
    return np.sort(np.random.default_rng(seed).choice(num, size, replace=False))


def _fit_params(
    rows: Rows,
    gpu: GPUSpec,
    label: str,
    layout: str,
    x0: np.ndarray,
    free: np.ndarray,
    extra: dict,
    max_nfev: int,
) -> tuple[GemmFit, float]:
    """Least squares over the ``free`` entries of the parameter vector (the rest held)."""
    from scipy.optimize import least_squares

    m, n, k, t = rows["m"], rows["n"], rows["k"], rows["latency_s"]
    logt = np.log(t)
    prior_idx = [i for i in (12, 13, 14) if free[i]]

    def full(z: np.ndarray) -> np.ndarray:
        x = x0.copy()
        x[free] = z
        return x

    def residual(z: np.ndarray) -> np.ndarray:
        x = full(z)
        pred = formula_array(unpack_fit(x, label, layout, **extra), gpu, m, n, k)
        r = np.log(pred) - logt
        return np.concatenate([r, _SCALE_PRIOR * 0.05 * x[prior_idx]])

    start = np.clip(x0[free], -PARAM_BOUND + 1e-6, PARAM_BOUND - 1e-6)
    result = least_squares(
        residual,
        start,
        bounds=(-PARAM_BOUND, PARAM_BOUND),
        loss="soft_l1",
        f_scale=0.05,
        max_nfev=max_nfev,
    )
    x = full(result.x)
    return unpack_fit(x, label, layout, **extra), float(result.cost)


def fit_dtype(
    rows: Rows, gpu: GPUSpec, label: str, quant: QuantFit | None, grid: bool = True
) -> GemmFit:
    """One kernel format: the mechanism on a subsample (best tile layout), DeepGEMM's
    single-wave scales when the table times DeepGEMM (``single_wave_scales``), then the grid."""
    gpu = with_datasheet(gpu)
    extra = {
        "quant": quant,
        "ref_num_sms": gpu.num_sms or 132,
        "ref_l2_bytes": float(gpu.l2_cache_bytes or 50 * 2**20),
    }
    free = np.ones(_X0.size, dtype=bool)
    # layout choice on a small subsample, then the full subsample from the best start
    small = take(rows, _subsample(rows["m"].size, FIT_ROWS // 3, seed=1))
    trials = []
    for layout in TILE_LAYOUTS:
        fit, cost = _fit_params(small, gpu, label, layout, _X0, free, extra, max_nfev=400)
        trials.append((cost, layout, fit))
    _, layout, start = min(trials, key=lambda c: c[0])
    sub = take(rows, _subsample(rows["m"].size, FIT_ROWS))
    fit, _ = _fit_params(sub, gpu, label, layout, pack_fit(start), free, extra, max_nfev=2000)
    notes = f"{label}: mechanism on {sub['m'].size} of {rows['m'].size} rows, tiles {layout}"
    fit = dataclasses.replace(fit, notes=notes)
    if is_deepgemm(rows):
        scales = single_wave_scales(fit, rows, gpu)
        notes += f"; DeepGEMM single-wave scales of {len(scales)} configurations"
        fit = dataclasses.replace(fit, single_wave_scales=scales, notes=notes)
    if grid:
        fit = _with_grid(fit, rows, gpu)
    return fit


def is_deepgemm(rows: Rows) -> bool:
    """Every row times DeepGEMM's kernel (SGLang ``sglang_deepgemm_gemm_nt_f8f8bf16``)."""
    kernels = rows["kernel"]
    return bool(kernels.size) and all("deepgemm" in str(x).lower() for x in set(kernels))


def single_wave_scales(
    fit: GemmFit, rows: Rows, gpu: GPUSpec
) -> tuple[tuple[int, int, float], ...]:
    """Per DeepGEMM configuration that runs a shape in one wave, the median of measured over
    formula time of the GEMM kernel (quantisation taken out) over its rows; configurations seen
    in fewer than ``MIN_SHAPES`` weight shapes keep 1. SGLang's H100 and H200 tables: 128 x 192,
    256 x 96 and 256 x 128 in one wave take 1.8-2.3x the formula, every other configuration
    0.85-1.3x (``python -m servesim.perf.fitting.gemm_deepgemm``)."""
    m, n, k, t = rows["m"], rows["n"], rows["k"], rows["latency_s"]
    sms = gpu.num_sms or fit.ref_num_sms
    base = formula_array(dataclasses.replace(fit, single_wave_scales=()), gpu, m, n, k)
    quant = 0.0 * base
    if fit.quant is not None:
        l2 = gpu.l2_cache_bytes or fit.ref_l2_bytes
        quant = quant_array(fit.quant, m, k, gpu.hbm_bandwidth_bytes_per_s, sm_residency(gpu), l2)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (a, b) in enumerate(zip(m, n, strict=True)):
        cfg = single_wave_config(math.ceil(a), int(b), sms)
        if cfg is not None and t[i] > quant[i]:
            groups.setdefault(cfg, []).append(i)
    out = []
    for cfg, idx in sorted(groups.items()):
        if len(set(rows["shape_key"][idx])) < MIN_SHAPES:
            continue
        ratio = (t[idx] - quant[idx]) / (base[idx] - quant[idx])
        out.append((cfg[0], cfg[1], float(np.median(ratio))))
    return tuple(out)


def _with_grid(fit: GemmFit, rows: Rows, gpu: GPUSpec) -> GemmFit:
    base = formula_array(fit, gpu, rows["m"], rows["n"], rows["k"])
    coords = np.stack([rows["m"], rows["n"], rows["k"]], axis=1)
    log_ratio = np.log(rows["latency_s"] / base)
    correction = fit_log_grid(coords, log_ratio, GRID_AXES)
    return dataclasses.replace(fit, correction=correction, notes=fit.notes + "; log-grid (m, n, k)")


def fit_block(rows: Rows, gpu: GPUSpec, quant: QuantFit | None, base: GemmFit | None) -> GemmFit:
    """fp8_block: a plain fit when graph-timed; on eager tables, the rows well above the floor
    with the small-shape terms of ``base`` (see module doc)."""
    floor = eager_floor_s(rows)
    if floor < EAGER_FLOOR_S or base is None:
        fit = fit_dtype(rows, gpu, "fp8_block", quant)
        return fit if floor < EAGER_FLOOR_S else dataclasses.replace(fit, eager_floor_s=floor)
    gpu = with_datasheet(gpu)
    cut = EAGER_MARGIN * row_floors(rows)
    kept = take(rows, rows["latency_s"] >= cut)
    if np.unique(kept["shape_key"]).size < MIN_SHAPES:
        kept = take(rows, rows["latency_s"] >= np.quantile(rows["latency_s"], 0.75))
    extra = {
        "quant": quant,
        "eager_floor_s": floor,
        "ref_num_sms": gpu.num_sms or 132,
        "ref_l2_bytes": float(gpu.l2_cache_bytes or 50 * 2**20),
    }
    x0 = pack_fit(
        dataclasses.replace(base, buckets=tuple((b[0], b[1], b[2], 1.0) for b in base.buckets))
    )
    # free: mem_eff, compute_eff, k_half, wave_waste, overlap, row_s
    free = np.zeros(_X0.size, dtype=bool)
    free[[1, 7, 8, 9, 10, 11]] = True
    trials = []
    sub = take(kept, _subsample(kept["m"].size, FIT_ROWS))
    for layout in TILE_LAYOUTS:
        fit, cost = _fit_params(sub, gpu, "fp8_block", layout, x0, free, extra, max_nfev=600)
        trials.append((cost, layout, fit))
    _, layout, fit = min(trials, key=lambda c: c[0])
    source = "fp8" if base.dtype == "fp8" else "bf16"
    notes = (
        f"fp8_block: eager-timed table (floor {floor * 1e6:.0f} us, not applied); mechanism on "
        f"{sub['m'].size} rows >= {EAGER_MARGIN:g}x their kernel's floor "
        f"(m >= {int(kept['m'].min())}), tiles {layout}; floor, memory latency, K loop and L2 "
        f"from the {source} fit; no grid"
    )
    return dataclasses.replace(fit, notes=notes)


def fit(rows: Rows, gpu: GPUSpec) -> dict:
    """JSON-ready parameters per kernel format (``bf16``, ``fp8``, ``fp8_block``)."""
    gpu = with_datasheet(gpu)
    quant_rows = take(rows, rows["op"] == "quantize")
    gemm = take(rows, rows["op"] == "gemm")
    labels = set(gemm["dtype"])
    quant = None
    if labels & {"fp8", "fp8_block"}:
        quant = (
            fit_quant(
                quant_rows,
                gpu.hbm_bandwidth_bytes_per_s,
                sm_residency(gpu),
                gpu.l2_cache_bytes or REF_L2_BYTES,
            )
            if quant_rows["m"].size
            else DEFAULT_QUANT
        )
    out: dict[str, GemmFit] = {}
    for label in ("bf16", "fp8"):
        if label in labels and PEAK_DTYPE[label] in gpu.peak_flops_per_s:
            part = take(gemm, gemm["dtype"] == label)
            out[label] = fit_dtype(part, gpu, label, quant if label != "bf16" else None)
    if "fp8_block" in labels and PEAK_DTYPE["fp8_block"] in gpu.peak_flops_per_s:
        part = take(gemm, gemm["dtype"] == "fp8_block")
        base = out.get("fp8")
        if base is None and "bf16" in out:
            w, a, o = ELEMENT_BYTES["fp8_block"]
            base = dataclasses.replace(
                out["bf16"],
                dtype="fp8_block",
                weight_bytes=w,
                act_bytes=a,
                out_bytes=o,
                correction=None,
            )
        out["fp8_block"] = fit_block(part, gpu, quant, base)
    return {label: f.to_dict() for label, f in out.items()}


def predict(params: dict, gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """Seconds per row through the runtime opmodel (NaN where no fit covers the row).

    fp8_block rows of an eager-timed table are scored as max(eager floor, GPU time): the
    runtime never adds that floor.
    """
    gpu = with_datasheet(gpu)
    fits = {label: GemmFit.from_dict(p) for label, p in params.items()}
    quant = next((f.quant for f in fits.values() if f.quant is not None), None)
    bw, residency = gpu.hbm_bandwidth_bytes_per_s, sm_residency(gpu)
    l2 = gpu.l2_cache_bytes or REF_L2_BYTES
    out = np.full(rows["latency_s"].shape, np.nan)
    for i, (op, label, m, n, k) in enumerate(
        zip(rows["op"], rows["dtype"], rows["m"], rows["n"], rows["k"], strict=True)
    ):
        if op == "quantize":
            if quant is not None:
                out[i] = quant.time_s(float(m), float(k), bw, residency, l2)
            continue
        f = fits.get(label)
        if f is None or f.peak_dtype not in gpu.peak_flops_per_s:
            continue
        t = gemm_time_s(f, gpu, float(m), int(n), int(k))
        out[i] = max(t, f.eager_floor_s)
    return out
