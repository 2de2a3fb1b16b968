"""Fit the GEMM opmodel (``servesim.perf.opmodels.gemm``) to aiconfigurator kernel tables.

Rows are single GEMM calls (``gemm_perf.parquet``: ``gemm_dtype``, ``m``, ``n``, ``k``,
``latency`` in ms) plus the activation quantisation kernels of the fp8 path (``quantize``
tables: ``computescale_perf`` + ``scale_matrix_perf``, summed per ``(m, k)``: vLLM's
computescale column is "dynamic minus static" quantisation, so the sum is the dynamic kernel).

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
from pathlib import Path

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
from servesim.perf.fitting.heldout import (
    Rows,
    concat,
    fit_log_grid,
    take,
)
from servesim.perf.fitting.tables import find_tables, read_columns, select
from servesim.perf.opmodels.gemm import (
    ELEMENT_BYTES,
    PEAK_DTYPE,
    GemmFit,
    QuantFit,
    gemm_time_s,
)
from servesim.specs.gpu import GPUSpec

#: Table format label -> report label (other formats of the tables are not fitted).
DTYPE_LABELS = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8_block"}
#: Stacks with a gemm table: (gpu folder, catalog GPU, framework, version).
STACKS = (
    ("h100_sxm", "h100-sxm", "vllm", "0.24.0"),
    ("h100_sxm", "h100-sxm", "sglang", "0.5.14"),
    ("h200_sxm", "h200", "vllm", "0.24.0"),
    ("h200_sxm", "h200", "vllm", "0.22.0"),
    ("h200_sxm", "h200", "sglang", "0.5.14"),
    ("a100_sxm", "a100-80gb", "vllm", "0.14.0"),
    ("l40s", "l40s", "vllm", "0.24.0"),
)
#: SMs and L2 per catalog GPU (NVIDIA architecture whitepapers / data sheets), used only when
#: the catalog spec does not carry them: H100 SXM5 132 SMs 50 MB; H200 the same GH100
#: configuration; A100 SXM4 108 SMs 40 MB; L40S 142 SMs 96 MB.
DATASHEET_SMS_L2 = {
    "h100-sxm": (132, 50 * 2**20),
    "h200": (132, 50 * 2**20),
    "a100-80gb": (108, 40 * 2**20),
    "a100-40gb": (108, 40 * 2**20),
    "l40s": (142, 96 * 2**20),
}
SMALL_TOKENS = 256
#: A format needs this many (n, k) shapes to be fitted.
MIN_SHAPES = 4
#: Rows per parametric fit (a fixed subsample: the fits stay a few seconds each).
FIT_ROWS = 8000
#: An fp8_block table is eager-timed when its small-shape floor exceeds this ...
EAGER_FLOOR_S = 15e-6
#: ... and is then fitted on rows at least this many times that floor.
EAGER_MARGIN = 3.0
#: Activation quantisation of a GPU without quantize tables (fitted on H100 vLLM 0.24.0).
DEFAULT_QUANT = QuantFit(
    floor_s=2.47e-6,
    k_s=1.749e-10,
    bytes_per_elem=3.006,
    row_s=1.199e-9,
    overlap=2.585,
    spill_bytes=4.467,
    spill_k=40318.0,
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


# ---- rows ---------------------------------------------------------------------------------
def load_rows(root: Path, gpu_folder: str, framework: str, version: str) -> Rows | None:
    """GEMM rows of one stack plus the quantisation rows its fp8 path uses (None: no table)."""
    refs = find_tables(root)
    found = select(refs, gpu=gpu_folder, family="gemm", framework=framework, version=version)
    found = [r for r in found if r.table == "gemm_perf"]
    if not found:
        return None
    cols = read_columns(found[0])
    keep = np.array([d in DTYPE_LABELS for d in cols["gemm_dtype"]])
    m = cols["m"][keep].astype(float)
    n = cols["n"][keep].astype(float)
    k = cols["k"][keep].astype(float)
    dtype = np.array([DTYPE_LABELS[d] for d in cols["gemm_dtype"][keep]], dtype=object)
    rows: Rows = {
        "latency_s": cols["latency"][keep].astype(float) * 1e-3,
        "m": m,
        "n": n,
        "k": k,
        "op": np.full(m.shape, "gemm", dtype=object),
        "dtype": dtype,
        "regime": _regimes(m),
        "kernel": np.asarray(cols["kernel_source"][keep], dtype=object),
        "shape_key": _shape_keys(n, k),
    }
    shapes = {d: len(set(zip(n[dtype == d], k[dtype == d], strict=True))) for d in set(dtype)}
    rows = take(rows, np.array([shapes[d] >= MIN_SHAPES for d in dtype]))
    rows = take(rows, rows["latency_s"] > 0)
    if not any(d in ("fp8", "fp8_block") for d in set(rows["dtype"])):
        return rows
    fp8 = rows["latency_s"][rows["dtype"] == "fp8"]
    gemm_floor = float(np.min(fp8)) if fp8.size else math.inf
    quant = _quant_rows(refs, gpu_folder, framework, version, gemm_floor)
    return concat([rows, quant]) if quant is not None else rows


def _quant_rows(
    refs: list, gpu: str, framework: str, version: str, gemm_floor: float
) -> Rows | None:
    """The quantisation rows of the stack, else of the same GPU's vLLM (see module doc)."""
    candidates = [(framework, version)]
    others = sorted(
        {(r.framework, r.version) for r in select(refs, gpu=gpu, family="quantize")},
        key=lambda fv: (fv[0] != "vllm", fv[0], [-int(p) for p in fv[1].split(".") if p.isdigit()]),
    )
    candidates += [fv for fv in others if fv not in candidates]
    for fw, ver in candidates:
        parts = select(refs, gpu=gpu, family="quantize", framework=fw, version=ver)
        tables = {r.table: r for r in parts}
        if "computescale_perf" not in tables or "scale_matrix_perf" not in tables:
            continue
        total: dict[tuple[float, float], float] = {}
        for name in ("computescale_perf", "scale_matrix_perf"):
            cols = read_columns(tables[name])
            for a, b, t in zip(cols["m"], cols["k"], cols["latency"], strict=True):
                total[(float(a), float(b))] = total.get((float(a), float(b)), 0.0) + float(t)
        keys = sorted(total)
        lat = np.array([total[x] for x in keys]) * 1e-3
        if lat.min() > gemm_floor:  # slower than the whole fp8 GEMM: not what its rows hold
            continue
        m = np.array([a for a, _ in keys])
        k = np.array([b for _, b in keys])
        zeros = np.zeros_like(m)
        return {
            "latency_s": lat,
            "m": m,
            "n": zeros,
            "k": k,
            "op": np.full(m.shape, "quantize", dtype=object),
            "dtype": np.full(m.shape, "fp8", dtype=object),
            "regime": _regimes(m),
            "kernel": np.full(m.shape, f"{fw} {ver} quantize", dtype=object),
            "shape_key": _shape_keys(zeros, k),
        }
    return None


def _regimes(m: np.ndarray) -> np.ndarray:
    return np.where(m <= SMALL_TOKENS, f"m<={SMALL_TOKENS}", f"m>{SMALL_TOKENS}").astype(object)


def _shape_keys(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    keys = np.empty(n.shape, dtype=object)
    keys[:] = [(int(a), int(b)) for a, b in zip(n, k, strict=True)]
    return keys


def with_datasheet(gpu: GPUSpec) -> GPUSpec:
    """``gpu`` with its SM count and L2 filled from ``DATASHEET_SMS_L2`` when it lacks them."""
    if gpu.num_sms and gpu.l2_cache_bytes:
        return gpu
    sms, l2 = DATASHEET_SMS_L2.get(gpu.name, (0, 0))
    return dataclasses.replace(
        gpu, num_sms=gpu.num_sms or sms, l2_cache_bytes=gpu.l2_cache_bytes or l2
    )


# ---- fits -----------------------------------------------------------------------------------
def fit_quant(rows: Rows, bw: float) -> QuantFit:
    """The quantisation kernel's constants from its rows (``op == "quantize"``)."""
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
        )

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(quant_array(unpack(x), m, k, bw)) - np.log(t)

    x0 = np.log([2e-6, 2e-10, 3.0, 1e-9, 1.0, 2.0, 8000.0])
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
    """One kernel format: the mechanism on a subsample (best tile layout), then the grid."""
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
    if grid:
        fit = _with_grid(fit, rows, gpu)
    return fit


def _with_grid(fit: GemmFit, rows: Rows, gpu: GPUSpec) -> GemmFit:
    base = formula_array(fit, gpu, rows["m"], rows["n"], rows["k"])
    coords = np.stack([rows["m"], rows["n"], rows["k"]], axis=1)
    log_ratio = np.log(rows["latency_s"] / base)
    correction = fit_log_grid(coords, log_ratio, GRID_AXES)
    return dataclasses.replace(fit, correction=correction, notes=fit.notes + "; log-grid (m, n, k)")


def row_floors(rows: Rows) -> np.ndarray:
    """Per row, the floor of its kernel: median latency of that kernel's rows with a small
    weight (``n k <= 2**20``) and ``m <= 4096``, whose GPU work is a few microseconds."""
    out = np.zeros(rows["latency_s"].shape)
    for kernel in set(rows["kernel"]):
        own = rows["kernel"] == kernel
        small = own & (rows["n"] * rows["k"] <= 2**20) & (rows["m"] <= 4096)
        pool = rows["latency_s"][small] if small.any() else rows["latency_s"][own]
        out[own] = float(np.median(pool))
    return out


def eager_floor_s(rows: Rows) -> float:
    """The table's typical kernel floor (median over its rows of their kernel's floor)."""
    return float(np.median(row_floors(rows))) if rows["latency_s"].size else 0.0


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
            fit_quant(quant_rows, gpu.hbm_bandwidth_bytes_per_s)
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
    bw = gpu.hbm_bandwidth_bytes_per_s
    out = np.full(rows["latency_s"].shape, np.nan)
    for i, (op, label, m, n, k) in enumerate(
        zip(rows["op"], rows["dtype"], rows["m"], rows["n"], rows["k"], strict=True)
    ):
        if op == "quantize":
            if quant is not None:
                out[i] = quant.time_s(float(m), float(k), bw)
            continue
        f = fits.get(label)
        if f is None or f.peak_dtype not in gpu.peak_flops_per_s:
            continue
        t = gemm_time_s(f, gpu, float(m), int(n), int(k))
        out[i] = max(t, f.eager_floor_s)
    return out


# ---- scoring ---------------------------------------------------------------------------------
def eager_mask(rows: Rows) -> np.ndarray:
    """fp8_block rows of an eager-timed table within ``EAGER_MARGIN`` of their kernel's floor
    (left out of the scores: the table times the host there, not the GPU)."""
    out = np.zeros(rows["latency_s"].shape, dtype=bool)
    block = (rows["op"] == "gemm") & (rows["dtype"] == "fp8_block")
    if not block.any():
        return out
    part = take(rows, block)
    floors = row_floors(part)
    if np.median(floors) < EAGER_FLOOR_S:
        return out
    out[block] = part["latency_s"] < EAGER_MARGIN * floors
    return out
