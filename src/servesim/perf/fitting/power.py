"""Fit the GPU power model (``servesim.perf.opmodels.power``) to measured board power.

Data: aiconfigurator's H200 vLLM 0.22.0 tables carry ``power`` (mean board power in W over a
>= ~1 s back-to-back replay, 0.3 s for kernels under 0.1 ms) beside ``latency``. Each row gives
one operating point: from its shape we count FLOPs and HBM bytes, divide by the measured
latency and the GPU's data-sheet peaks, and get the achieved compute and memory utilisation the
power model takes. ``load_rows`` returns the family-protocol Rows with ``power_w`` (the measured
power, the quantity scored) next to ``latency_s``; ``fit`` fits one :class:`PowerFit` per
operator class (least squares on relative error, deterministic); ``predict`` goes through the
runtime ``gpu_power_w``.

The readings carry the board's previous case. aiconfigurator's collector (``collector/collect.py``
``parallel_run``) runs one worker per GPU of the node, all taking cases from one queue, and logs
rows in completion order, so the case the same board ran before a row sits about
``BOARDS_SHARING_QUEUE`` rows earlier in its table; its sampler (``collector/helper.py``
``PowerMonitor``) reads NVML every 100 ms from the start of the replay, the first reading before
the new kernel has reached the sensor. Evidence (H200 vLLM 0.22.0): the residual of a fit without
this term correlates with the power predicted for the row k earlier, rising to 0.41 at k = 8 for
prefill attention (0.20 at k = 1) and staying at ~0.19 beyond, while the later rows correlate less
than the earlier ones in every table (the reading looks back, not forward). A measured reading is
therefore scored as ``own_share * P(own) + (1 - own_share) * P(previous case)``, ``own_share``
fitted per curve; the runtime draws ``P`` itself (serving replays no one else's kernels). The
GEMM table, though in the case generator's order (one board ran it in sequence), shows no such
carry-over: its fp8_block rows follow their bf16 twins (~570 W) and read ~190 W; a lag-1 blend
fits fp8_block's share at 1.0 and lends bf16 a 0.6 "share" that is the neighbouring shape's
physics, not its reading (a >= 1 s replay has ~10 readings of its own), so it keeps lag 8.

Report: ``python -m servesim.perf.fitting.power`` (shape-wise 4-fold CV per op class).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servesim.perf.fitting.heldout import Rows, concat, take
from servesim.perf.fitting.power_rows import (  # noqa: F401 (previous_case_columns: API)
    BOARDS_SHARING_QUEUE,
    TABLES,
    previous_case_columns,
)
from servesim.perf.fitting.tables import find_tables, read_columns, select
from servesim.perf.opmodels.power import PowerFit, PowerParams, curve_for
from servesim.specs.gpu import GPUSpec

# Dtype -> the tensor peak its FLOPs run at (fp8 W8A8 and block-fp8 run fp8 MMA; int4
# weight-only dequantises to bf16 MMA).
_PEAK_DTYPE = {
    "bfloat16": "bf16",
    "float16": "bf16",
    "fp8": "fp8",
    "fp8_block": "fp8",
    "int4_wo": "bf16",
}


#: Kernels under this latency were replayed for only 0.3 s (PROVENANCE.md): few NVML samples.
SHORT_WINDOW_LATENCY_S = 1e-4
_BOUNDS = ([0.0, 0.0, 0.2, 0.0, 0.2, 0.0, 0.0], [700.0, 3000.0, 4.0, 3000.0, 4.0, 1e-3, 1.0])
_X0 = (150.0, 500.0, 1.0, 300.0, 1.0, 5e-6, 0.8)
_X_SCALE = (100.0, 300.0, 0.5, 300.0, 0.5, 1e-5, 0.2)
#: at most this many rows per curve fit (a fixed stride: deterministic, keeps the fit ~seconds)
MAX_FIT_ROWS = 5000
#: an (op, dtype) pair gets a curve of its own from this many rows
MIN_DTYPE_ROWS = 500


def _regimes(rows: Rows) -> np.ndarray:
    """``short``: replayed for only 0.3 s (few NVML samples, noisy); ``long``: >= ~1 s."""
    window = np.where(rows["latency_s"] < SHORT_WINDOW_LATENCY_S, "short", "long")
    return window.astype(object)


def load_rows(root: Path, gpu_folder: str, framework: str, version: str) -> Rows | None:
    """Every power-carrying table of one GPU and stack as Rows (``power_w`` is scored), or
    None when that stack has no power columns."""
    parts = []
    for ref in select(find_tables(root), gpu=gpu_folder, framework=framework, version=version):
        build = TABLES.get((ref.family, ref.table))
        if build is None:
            continue
        cols = read_columns(ref)
        if "power" not in cols:
            continue
        rows = build(cols)
        rows["regime"] = _regimes(rows)
        parts.append(rows)
    return concat(parts) if parts else None


def utilisations(rows: Rows, gpu: GPUSpec, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(compute, memory) utilisation of each row on ``gpu``'s data-sheet peaks; ``prefix``
    ``"prev_"``: of the board's previous case (same op class and dtype: one table, one run)."""
    peak = np.array(
        [
            gpu.peak_flops(_PEAK_DTYPE.get(d, "bf16"))
            if op in ("gemm", "moe")
            else gpu.peak_flops("bf16")
            for op, d in zip(rows["op"], rows["dtype"], strict=True)
        ]
    )
    latency_s = rows[f"{prefix}latency_s"]
    u_c = rows[f"{prefix}flops"] / latency_s / peak
    u_m = rows[f"{prefix}hbm_bytes"] / latency_s / gpu.hbm_bandwidth_bytes_per_s
    return np.clip(u_c, 0.0, 1.0), np.clip(u_m, 0.0, 1.0)


def _busy_w(x: np.ndarray, u_c: np.ndarray, u_m: np.ndarray, limit_w: float) -> np.ndarray:
    return np.minimum(limit_w, x[0] + x[1] * u_c ** x[2] + x[3] * u_m ** x[4])


def _curve_w(
    x: np.ndarray,
    util: tuple[np.ndarray, np.ndarray],
    prev_util: tuple[np.ndarray, np.ndarray],
    kernel_s: np.ndarray,
    limit_w: float,
) -> np.ndarray:
    """The reading ``predict`` scores, vectorised on the reference GPU: ``power_w_for_ratings``
    of the row blended with the previous case's steady draw by ``own_share`` (``x[6]``)."""
    busy_w = _busy_w(x, *util, limit_w)
    own_w = x[0] + (busy_w - x[0]) * kernel_s / (kernel_s + x[5])
    return x[6] * own_w + (1.0 - x[6]) * _busy_w(x, *prev_util, limit_w)


def _fit_curve(
    rows: Rows,
    util: tuple[np.ndarray, np.ndarray],
    prev_util: tuple[np.ndarray, np.ndarray],
    limit_w: float,
) -> PowerParams:
    """Robust least squares on log(pred / measured): symmetric in over/under prediction, so the
    median signed error stays near zero; soft-L1 because the short windows are noisy."""
    from scipy.optimize import least_squares

    stride = max(1, len(rows["power_w"]) // MAX_FIT_ROWS)
    util = (util[0][::stride], util[1][::stride])
    prev_util = (prev_util[0][::stride], prev_util[1][::stride])
    kernel_s, power_w = rows["latency_s"][::stride], rows["power_w"][::stride]
    # Each regime weighs half: a >= 1 s replay averages ~10 readings of its own kernel, a short
    # one 1-3 (the first of them the previous case's); short rows are 3-8x more numerous and,
    # unweighted, set the curve alone (decode's long rows then sit at -6 % median).
    short = kernel_s < SHORT_WINDOW_LATENCY_S
    share = short.mean()
    weight = np.sqrt(np.where(short, 0.5 / share, 0.5 / (1.0 - share))) if 0 < share < 1 else 1.0

    def residual(x: np.ndarray) -> np.ndarray:
        return weight * np.log(_curve_w(x, util, prev_util, kernel_s, limit_w) / power_w)

    sol = least_squares(
        residual,
        np.array(_X0),
        bounds=_BOUNDS,
        loss="soft_l1",
        f_scale=0.2,
        x_scale=np.array(_X_SCALE),
    )
    return PowerParams(*(float(f"{v:.5g}") for v in sol.x))


def _curve_keys(rows: Rows) -> list[tuple[str, np.ndarray]]:
    """(curve key, row mask) of every curve to fit: per (op, dtype), per op, pooled."""
    out = []
    for op in sorted(set(rows["op"])):
        is_op = rows["op"] == op
        dtypes = sorted(set(rows["dtype"][is_op]))
        for dtype in dtypes:
            mask = is_op & (rows["dtype"] == dtype)
            if len(dtypes) > 1 and mask.sum() >= MIN_DTYPE_ROWS:
                out.append((f"{op}:{dtype}", mask))
        out.append((op, is_op))
    out.append(("any", np.ones(len(rows["op"]), dtype=bool)))
    return out


def fit(rows: Rows, gpu: GPUSpec) -> dict:
    """Curves per (op, dtype), per op and pooled (``any``), JSON-ready."""
    u_c, u_m = utilisations(rows, gpu)
    p_c, p_m = utilisations(rows, gpu, "prev_")
    curves = {
        key: _fit_curve(take(rows, mask), (u_c[mask], u_m[mask]), (p_c[mask], p_m[mask]), gpu.tdp_w)
        for key, mask in _curve_keys(rows)
    }
    return PowerFit(gpu.name, gpu.idle_w, gpu.tdp_w, curves).to_dict()


def _scaled(fit: PowerFit, gpu: GPUSpec, curve: PowerParams) -> np.ndarray:
    """``curve`` as ``_curve_w`` parameters on ``gpu``: the ratings rule of
    ``power_w_for_ratings`` (static by idle power, dynamic terms by TDP - idle)."""
    dyn = (gpu.tdp_w - gpu.idle_w) / (fit.ref_tdp_w - fit.ref_idle_w)
    static_w = curve.static_w * gpu.idle_w / fit.ref_idle_w
    return np.array(
        [
            static_w,
            curve.compute_w * dyn,
            curve.compute_exp,
            curve.mem_w * dyn,
            curve.mem_exp,
            curve.kernel_gap_s,
            curve.own_share,
        ]
    )


def predict(params: dict, gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """Predicted reading (W) of each row: the runtime curve of the row (``gpu_power_w``; its
    kernel duration is its measured latency, one kernel replayed) blended by the curve's
    ``own_share`` with the steady draw of the board's previous case (module docstring).
    Vectorised per curve; ``tests/perf/test_power_measurement.py`` checks it against
    ``gpu_power_w`` row by row."""
    power_fit = PowerFit.from_dict(params)
    u_c, u_m = np.clip(utilisations(rows, gpu), 0.0, 1.0)
    p_c, p_m = np.clip(utilisations(rows, gpu, "prev_"), 0.0, 1.0)
    out = np.empty(len(u_c))
    pairs = list(zip(rows["op"], rows["dtype"], strict=True))
    for op, dtype in sorted(set(pairs)):
        mask = (rows["op"] == op) & (rows["dtype"] == dtype)
        x = _scaled(power_fit, gpu, curve_for(power_fit, op, dtype))
        out[mask] = _curve_w(
            x, (u_c[mask], u_m[mask]), (p_c[mask], p_m[mask]), rows["latency_s"][mask], gpu.tdp_w
        )
    return out


def report(
    root: Path,
    gpu: GPUSpec,
    gpu_folder: str = "h200_sxm",
    framework: str = "vllm",
    version: str = "0.22.0",
) -> list[dict]:
    """Shape-wise 4-fold CV error of power per (op, dtype, regime), plus ``all`` per op."""
    from servesim.perf.fitting.heldout import crossval_predictions, error_stats

    rows = load_rows(root, gpu_folder, framework, version)
    if rows is None:
        return []
    import sys

    pred = crossval_predictions(sys.modules[__name__], rows, gpu, num_folds=4)
    out = []
    groups = sorted(set(zip(rows["op"], rows["dtype"], rows["regime"], strict=True)), key=repr)
    groups += [(op, "all", "all") for op in sorted(set(rows["op"]))]
    for op, dtype, regime in groups:
        mask = rows["op"] == op
        if dtype != "all":
            mask &= (rows["dtype"] == dtype) & (rows["regime"] == regime)
        stats = error_stats(pred[mask], rows["power_w"][mask]).to_dict()
        out.append(
            {
                "gpu": gpu_folder,
                "stack": f"{framework}-{version}",
                "op": op,
                "dtype": dtype,
                "regime": regime,
                **stats,
            }
        )
    return out


if __name__ == "__main__":
    import json as _json

    from servesim.core.paths import shared_data_dir
    from servesim.perf.fitting.tables import aic_root
    from servesim.specs.catalog.gpus import get_gpu

    data = shared_data_dir()
    if data is None:
        raise SystemExit("no shared data folder (set SERVESIM_SHARED_DATA)")
    h200 = get_gpu("h200-sxm")
    all_rows = load_rows(aic_root(data), "h200_sxm", "vllm", "0.22.0")
    print(_json.dumps(fit(all_rows, h200), sort_keys=True))  # the full fit (default_power_fit)
    print(f"{'op':18} {'dtype':10} {'regime':6} {'n':>6} {'MAPE%':>6} {'med%':>6}")
    for r in report(aic_root(data), h200):
        print(
            f"{r['op']:18} {r['dtype']:10} {r['regime']:6} {r['n']:6d} {r['mape']:6.1f} "
            f"{r['median_signed']:6.1f}"
        )
