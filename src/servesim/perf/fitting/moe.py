"""Fit the MoE layer opmodel (``servesim.perf.opmodels.moe_layer``) to aiconfigurator tables.

Rows are whole MoE layers on one rank of the EP group (``moe_perf.parquet``). The load of the
measured rank is recomputed from the collector's routing generator (aiconfigurator
``collector/*/collect_moe.py``, ``balanced_logits`` and ``power_law_logits_v3``):

* ``balanced``: token ``i`` picks experts ``(i + j * ceil(E / k)) % E`` (spread over the
  stride when fewer tokens than the stride); the measured rank owns experts ``[0, E / ep)``.
* ``power_law_<alpha>``: each expert's token count is drawn i.i.d. from a bounded Pareto of
  exponent alpha on ``[1, 0.8 T]`` (``[0.01, 2]`` when ``T k <= E``), scaled and rounded to
  sum ``T k``; the EP group with the largest sum is swapped to rank 0, so the measured rank is
  the busiest one. The latency is the mean over 10 such draws; we average 16 seeded draws.

Run ``python -m servesim.perf.fitting.moe`` for the held-out report.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from importlib import import_module
from pathlib import Path

import numpy as np

from servesim.perf.fitting.heldout import (
    Rows,
    crossval_predictions,
    error_stats,
    fit_log_grid,
    group_report,
    take,
)
from servesim.perf.fitting.tables import find_tables, read_columns, select
from servesim.perf.opmodels.moe_layer import (
    NUM_MATRICES,
    MoELayerFit,
    compute_dtype_of,
    correction_coords,
    moe_layer_s,
    weight_bytes_of,
)
from servesim.specs.gpu import GPUSpec

#: Table format label -> report label.
DTYPE_LABELS = {
    "bfloat16": "bf16",
    "fp8": "fp8",
    "fp8_block": "fp8_block",
    "w4a16_mxfp4": "mxfp4",
    "int4_wo": "int4",
}
#: Stacks with a moe table: (gpu folder, catalog GPU, framework, version).
STACKS = (
    ("h100_sxm", "h100-sxm", "vllm", "0.24.0"),
    ("h100_sxm", "h100-sxm", "sglang", "0.5.14"),
    ("h200_sxm", "h200-sxm", "vllm", "0.24.0"),
    ("h200_sxm", "h200-sxm", "vllm", "0.22.0"),
    ("h200_sxm", "h200-sxm", "sglang", "0.5.14"),
    ("a100_sxm", "a100-80gb", "vllm", "0.14.0"),
    ("l40s", "l40s", "vllm", "0.24.0"),
)
#: Non-gated (squared-ReLU, two-matrix) experts: the Nemotron-3 shapes. Evidence: with three
#: matrices these rows come out 0.40 in log time too slow (log 3/2) at every token count, and
#: the one-token rows would need 4.1 TB/s on a 3.35 TB/s H100.
NON_GATED_SHAPES = frozenset(
    {(2688, 1856, 128, 6), (1024, 2688, 512, 22), (2048, 5120, 512, 22), (8192, 5120, 512, 22)}
)
#: A format needs this many model shapes to be fitted (vLLM 0.22 int4 has one row).
MIN_SHAPES = 3
NUM_DRAWS = 16
SMALL_TOKENS = 256
# correction grid axes (log2): tokens, pairs per touched expert, load imbalance
GRID_AXES = (
    (0.0, 2.0, 4.0, 6.0, 8.0, 11.0, 14.0),
    (0.0, 3.0, 6.0, 9.0, 12.0),
    (-1.0, 0.0, 1.0, 2.0),
)
# parameter vector: log fixed_s, log stream_h, log stream_i, logit mem, logit comp,
# log tile, log (p - 1)
_X0 = np.array([np.log(30e-6), np.log(4.0), np.log(4.0), 1.5, 0.0, np.log(64.0), 0.0])


def _fix_sum(counts: np.ndarray, target: int) -> np.ndarray:
    """The collector's rounding repair: +1 to the largest experts, -1 from the smallest."""
    delta = int(target - counts.sum())
    if delta == 0:
        return counts
    order = np.argsort(-counts, kind="stable")
    out = counts.copy()
    size = out.size
    if delta > 0:
        out += delta // size
        out[order[: delta % size]] += 1
        return out
    for i in range(-delta):
        index = order[-(i % size) - 1]
        out[index if out[index] > 0 else int(np.argmax(out))] -= 1
    return out


@cache
def collector_load(
    num_tokens: int, num_experts: int, topk: int, ep: int, alpha: float
) -> tuple[float, float]:
    """(assignments, experts touched) of the measured rank; ``alpha`` 0 means balanced."""
    local = num_experts // ep
    if alpha == 0.0:
        stride = -(-num_experts // topk)
        i = np.arange(num_tokens)[:, None]
        j = np.arange(topk)[None, :]
        if num_tokens >= stride:
            experts = (i + j * stride) % num_experts
        else:
            experts = np.floor(i * stride / num_tokens + j * stride).astype(np.int64) % num_experts
        mine = experts[experts < local]
        return float(mine.size), float(np.unique(mine).size)
    rng = np.random.default_rng([num_tokens, num_experts, topk, ep, int(alpha * 1000)])
    lo, hi = (1.0, 0.8 * num_tokens) if num_tokens * topk > num_experts else (0.01, 2.0)
    a = 1.0 - alpha
    x = ((hi**a - lo**a) * rng.random((NUM_DRAWS, num_experts)) + lo**a) ** (1.0 / a)
    target = num_tokens * topk
    counts = np.round(x / x.sum(axis=1, keepdims=True) * target)
    counts = np.stack([_fix_sum(c, target) for c in counts]).reshape(NUM_DRAWS, ep, local)
    sums = counts.sum(axis=2)
    best = np.argmax(sums, axis=1)
    draws = np.arange(NUM_DRAWS)
    touched = (counts[draws, best] > 0).sum(axis=1)
    return float(sums[draws, best].mean()), float(touched.mean())


def _primary_kernels(cols: dict[str, np.ndarray]) -> dict[str, str]:
    """Per table dtype, the kernel with most rows (ties by name): the stack's default path."""
    out: dict[str, str] = {}
    for dtype in sorted(set(cols["moe_dtype"])):
        sources = cols["kernel_source"][cols["moe_dtype"] == dtype]
        names, counts = np.unique(sources.astype(str), return_counts=True)
        out[str(dtype)] = str(names[np.lexsort((names, -counts))[0]])
    return out


def load_rows(root: Path, gpu_folder: str, framework: str, version: str) -> Rows | None:
    """The stack's MoE rows (default kernel per format) with the measured rank's loads."""
    refs = select(
        find_tables(root), gpu=gpu_folder, family="moe", framework=framework, version=version
    )
    if not refs:
        return None
    cols = read_columns(refs[0])
    primary = _primary_kernels(cols)
    keep = np.array(
        [
            d in DTYPE_LABELS and primary[d] == k
            for d, k in zip(cols["moe_dtype"], cols["kernel_source"], strict=True)
        ]
    )
    cols = {k: v[keep] for k, v in cols.items()}
    n = int(keep.sum())
    tokens = cols["num_tokens"].astype(np.int64)
    experts = cols["num_experts"].astype(np.int64)
    topk = cols["topk"].astype(np.int64)
    ep = cols["moe_ep_size"].astype(np.int64)
    hidden = cols["hidden_size"].astype(np.int64)
    alpha = np.array(
        [0.0 if d == "balanced" else float(d.split("_")[-1]) for d in cols["distribution"]]
    )
    loads = np.array(
        [
            collector_load(int(t), int(e), int(k), int(p), float(a))
            for t, e, k, p, a in zip(tokens, experts, topk, ep, alpha, strict=True)
        ]
    ).reshape(n, 2)
    dtype = np.array([DTYPE_LABELS[d] for d in cols["moe_dtype"]], dtype=object)
    skew = np.where(alpha == 0.0, "balanced", "skewed")
    size = np.where(tokens <= SMALL_TOKENS, f"tokens<={SMALL_TOKENS}", f"tokens>{SMALL_TOKENS}")
    rows: Rows = {
        "latency_s": cols["latency"].astype(float) * 1e-3,
        "shape_key": np.array(
            [
                f"{h}/{i}/{e}/{k}"
                for h, i, e, k in zip(hidden, cols["inter_size"], experts, topk, strict=True)
            ],
            dtype=object,
        ),
        "op": np.full(n, "moe", dtype=object),
        "dtype": dtype,
        "regime": np.array([f"{a}/{b}" for a, b in zip(size, skew, strict=True)], dtype=object),
        "num_tokens": tokens.astype(float),
        "hidden": hidden.astype(float),
        "inter": (cols["inter_size"] // cols["moe_tp_size"]).astype(float),
        "topk": topk.astype(float),
        "num_experts": experts.astype(float),
        "ep": ep.astype(float),
        "assignments": loads[:, 0],
        "experts_touched": loads[:, 1],
        "num_matrices": np.array(
            [
                2.0 if (h, i, e, k) in NON_GATED_SHAPES else float(NUM_MATRICES)
                for h, i, e, k in zip(hidden, cols["inter_size"], experts, topk, strict=True)
            ]
        ),
    }
    shapes = {d: len(set(rows["shape_key"][dtype == d])) for d in set(dtype)}
    return take(rows, np.array([shapes[d] >= MIN_SHAPES for d in dtype]))


def _unpack(x: np.ndarray, weight_bytes: float, compute_dtype: str) -> MoELayerFit:
    return MoELayerFit(
        weight_bytes=weight_bytes,
        compute_dtype=compute_dtype,
        fixed_s=float(np.exp(x[0])),
        stream_hidden=float(np.exp(x[1])),
        stream_inter=float(np.exp(x[2])),
        mem_eff=float(1.0 / (1.0 + np.exp(-x[3]))),
        compute_eff=float(1.0 / (1.0 + np.exp(-x[4]))),
        tile_rows=float(np.exp(x[5])),
        overlap_p=float(1.0 + np.exp(x[6])),
    )


def _formula(fit: MoELayerFit, gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """Vectorised ``moe_layer_s`` without the correction (same arithmetic)."""
    bandwidth = gpu.hbm_bandwidth_bytes_per_s
    peak = gpu.peak_flops(fit.compute_dtype)
    pairs = rows["num_tokens"] * rows["topk"]
    stream = pairs * (fit.stream_hidden * rows["hidden"] + fit.stream_inter * rows["inter"])
    elems = rows["num_matrices"] * rows["hidden"] * rows["inter"]
    touched = rows["experts_touched"]
    read = touched * elems * fit.weight_bytes / (bandwidth * fit.mem_eff)
    per_expert = rows["assignments"] / np.maximum(touched, 1e-9)
    padded = np.where(
        touched > 0, touched * np.maximum(fit.tile_rows, per_expert + 0.5 * fit.tile_rows), 0.0
    )
    math_s = 2.0 * padded * elems / (peak * fit.compute_eff)
    p = fit.overlap_p
    body = (read**p + math_s**p) ** (1.0 / p)
    return fit.fixed_s + stream / bandwidth + body


def _grid_coords(rows: Rows) -> np.ndarray:
    return np.array(
        [
            correction_coords(t, int(k), int(p), a, u)
            for t, k, p, a, u in zip(
                rows["num_tokens"],
                rows["topk"],
                rows["ep"],
                rows["assignments"],
                rows["experts_touched"],
                strict=True,
            )
        ]
    ).reshape(-1, 3)


def fit_dtype(rows: Rows, gpu: GPUSpec, label: str) -> MoELayerFit:
    """Mechanism parameters by robust least squares on log time, then the log-grid correction."""
    from scipy.optimize import least_squares

    weight_bytes = weight_bytes_of(label)
    compute_dtype = compute_dtype_of(label, gpu)
    log_actual = np.log(rows["latency_s"])

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(_formula(_unpack(x, weight_bytes, compute_dtype), gpu, rows)) - log_actual

    lower = np.array([np.log(1e-6), -12.0, -12.0, -4.0, -5.0, np.log(8.0), -4.0])
    upper = np.array([np.log(1e-3), 6.0, 6.0, 6.0, 4.0, np.log(256.0), 3.0])
    result = least_squares(residual, _X0, bounds=(lower, upper), loss="soft_l1", f_scale=0.1)
    base = _unpack(result.x, weight_bytes, compute_dtype)
    ratio = log_actual - np.log(_formula(base, gpu, rows))
    grid = fit_log_grid(_grid_coords(rows), ratio, GRID_AXES, ridge=0.3)
    return MoELayerFit(**{**_fields(base), "correction": grid})


def _fields(fit: MoELayerFit) -> dict:
    return {name: getattr(fit, name) for name in MoELayerFit.__slots__}


def fit(rows: Rows, gpu: GPUSpec) -> dict:
    """JSON-ready ``{dtype label: MoELayerFit dict}`` for one (GPU, kernel stack)."""
    return {
        label: fit_dtype(take(rows, rows["dtype"] == label), gpu, label).to_dict()
        for label in sorted(set(rows["dtype"]))
    }


def predict(params: dict, gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """Seconds per row through the runtime opmodel (formats absent from ``params``: NaN)."""
    fits = {label: MoELayerFit.from_dict(p) for label, p in params.items()}
    out = np.full(rows["latency_s"].shape, np.nan)
    for i in range(out.size):
        layer = fits.get(rows["dtype"][i])
        if layer is None:
            continue
        out[i] = moe_layer_s(
            layer,
            gpu,
            num_tokens=float(rows["num_tokens"][i]),
            hidden=int(rows["hidden"][i]),
            inter=int(rows["inter"][i]),
            topk=int(rows["topk"][i]),
            num_experts=int(rows["num_experts"][i]),
            ep=int(rows["ep"][i]),
            assignments=float(rows["assignments"][i]),
            experts_touched=float(rows["experts_touched"][i]),
            num_matrices=int(rows["num_matrices"][i]),
        )
    return out


def report(root: Path, num_folds: int = 4) -> tuple[list[dict], list[dict]]:
    """Held-out rows per (GPU, stack, dtype, regime), and leave-one-GPU-out from H100 vLLM."""
    from servesim.specs.catalog.gpus import get_gpu

    table: list[dict] = []
    h100 = None
    for folder, gpu_name, framework, version in STACKS:
        rows = load_rows(root, folder, framework, version)
        if rows is None:
            continue
        gpu = get_gpu(gpu_name)
        pred = crossval_predictions(import_module(__spec__.name), rows, gpu, num_folds)
        stack = f"{framework}-{version}"
        table += group_report(pred, rows, gpu=folder, stack=stack)
        if (folder, framework) == ("h100_sxm", "vllm"):
            h100 = fit(rows, gpu)
    transfer: list[dict] = []
    for folder, gpu_name, framework, version in STACKS:
        rows = load_rows(root, folder, framework, version) if h100 else None
        if rows is None or folder == "h100_sxm" or framework != "vllm":
            continue
        pred = predict(h100, get_gpu(gpu_name), rows)  # type: ignore[arg-type]
        known = ~np.isnan(pred)
        for label in sorted(set(rows["dtype"][known])):
            mask = known & (rows["dtype"] == label)
            stats = error_stats(pred[mask], rows["latency_s"][mask]).to_dict()
            transfer.append(
                {"gpu": folder, "stack": f"{framework}-{version}", "dtype": label, **stats}
            )
    return table, transfer


if __name__ == "__main__":
    from servesim.core.paths import shared_data_dir
    from servesim.perf.fitting.tables import aic_root

    data = shared_data_dir()
    if data is None:
        sys.exit("shared data not found (set SERVESIM_SHARED_DATA)")
    held_out, loo = report(aic_root(data))
    for row in held_out:
        print(json.dumps(row))
    print("# leave-one-GPU-out: fit on H100 vllm-0.24.0, predict with the target's data sheet")
    for row in loo:
        print(json.dumps(row))
