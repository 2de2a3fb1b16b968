"""Fit the attention opmodel (``servesim.perf.opmodels.attention_fit``) to aiconfigurator tables.

Kernel per (GPU, stack, KV dtype), as the engine picks it by default: vLLM's CUDA platform tries
FLASH_ATTN first, then FLASHINFER (vllm/platforms/cuda.py ``_get_backend_priorities``); on
Hopper vllm-flash-attn runs FA3 (``vllm_flash_attn_fa3``; 0.22.0 labels it
``vllm_flash_attn``), on Ampere/Ada FA2, whose KV cache must be bf16/fp16, so an fp8 KV cache on
L40S falls through to FlashInfer (``fiprefill`` / ``fidecode``). SGLang on Hopper defaults to
fa3 (its triton rows are not used).

Run ``python -m servesim.perf.fitting.attention`` for the held-out report.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from servesim.perf.fitting import heldout
from servesim.perf.fitting.heldout import Rows
from servesim.perf.fitting.tables import aic_root, find_tables, read_columns, select
from servesim.perf.opmodels.attention_fit import (
    _L2_STEEPNESS,
    TILE_M,
    TILE_N,
    AttentionFits,
    decode_attention_s,
    gpu_sms_l2,
    prefill_attention_s,
)
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec

# (gpu folder, framework, version) -> kv dtype label -> (context kernel, generation kernel)
DEFAULT_KERNELS: dict[tuple[str, str, str], dict[str, tuple[str, str]]] = {
    ("h100_sxm", "vllm", "0.24.0"): {
        "bf16": ("vllm_flash_attn_fa3", "vllm_flash_attn_fa3"),
        "fp8": ("vllm_flash_attn_fa3", "vllm_flash_attn_fa3"),
    },
    ("h200_sxm", "vllm", "0.24.0"): {
        "bf16": ("vllm_flash_attn_fa3", "vllm_flash_attn_fa3"),
        "fp8": ("vllm_flash_attn_fa3", "vllm_flash_attn_fa3"),
    },
    ("h200_sxm", "vllm", "0.22.0"): {
        "bf16": ("vllm_flash_attn", "vllm_flash_attn"),
        "fp8": ("vllm_flash_attn", "vllm_flash_attn"),
    },
    ("h100_sxm", "sglang", "0.5.14"): {"bf16": ("fa3", "fa3"), "fp8": ("fa3", "fa3")},
    ("h200_sxm", "sglang", "0.5.14"): {"bf16": ("fa3", "fa3"), "fp8": ("fa3", "fa3")},
    ("a100_sxm", "vllm", "0.14.0"): {"bf16": ("vllm_flash_attn", "vllm_flash_attn")},
    ("l40s", "vllm", "0.24.0"): {
        "bf16": ("vllm_flash_attn_fa2", "vllm_flash_attn_fa2"),
        "fp8": ("vllm_flashinfer_fiprefill", "vllm_flashinfer_fidecode"),
    },
}
GPU_OF_FOLDER = {
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200-sxm",
    "a100_sxm": "a100-80gb",
    "l40s": "l40s",
}
_KV_LABEL = {"bfloat16": "bf16", "fp8": "fp8"}
# least squares on at most this many rows per (op, dtype): the parameters are few, and the
# grid correction afterwards sees every row
_MAX_FIT_ROWS = 6000
_MAX_GRID_ROWS = 12000
# grid axes (log2): head_dim, GQA group, tokens per sequence (chunk or KV context), seqs x heads
_PREFILL_AXES = (
    (6.0, 7.0, 8.0, 9.0),
    (0.0, 2.0, 4.0, 6.0),
    tuple(float(x) for x in range(0, 15, 2)),
    tuple(float(x) for x in range(0, 15, 3)),
)
_DECODE_AXES = (
    (6.0, 7.0, 8.0, 9.0),
    (0.0, 2.0, 4.0, 6.0),
    tuple(float(x) for x in range(1, 18, 2)),
    tuple(float(x) for x in range(0, 15, 3)),
)
_GRID_RIDGE = 0.03


def _windowed_pairs(isl: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Causal query-key pairs of one sequence of ``isl`` tokens: sum over i of min(i, window)."""
    full = isl * (isl + 1) / 2.0
    w = np.where(window > 0, window, isl).astype(float)
    capped = w * (w + 1) / 2.0 + (isl - w) * w
    return np.where(isl <= w, full, capped)


def _base_columns(cols: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    window = cols["window_size"][mask] if "window_size" in cols else np.zeros(int(mask.sum()))
    return {
        "latency_s": cols["latency"][mask].astype(float) * 1e-3,
        "num_q_heads": cols["num_heads"][mask].astype(float),
        "num_kv_heads": cols["num_key_value_heads"][mask].astype(float),
        "head_dim": cols["head_dim"][mask].astype(float),
        "window": window.astype(float),
        "num_seqs": cols["batch_size"][mask].astype(float),
    }


def _finish_rows(out: dict[str, np.ndarray], kv: np.ndarray, op: str, regime: np.ndarray) -> Rows:
    n = out["latency_s"].size
    out["kv_bytes"] = np.where(kv == "fp8", 1.0, 2.0)
    out["dtype"] = kv.astype(object)
    out["op"] = np.full(n, op, dtype=object)
    out["regime"] = regime.astype(object)
    keys = [
        f"{int(a)}/{int(b)}/{int(c)}"
        for a, b, c in zip(out["num_q_heads"], out["num_kv_heads"], out["head_dim"], strict=True)
    ]
    out["shape_key"] = np.asarray(keys, dtype=object)
    return out


def _kernel_mask(cols: dict[str, np.ndarray], kernels: dict[str, tuple[str, str]], which: int):
    kv = np.asarray([_KV_LABEL.get(k, k) for k in cols["kv_cache_dtype"]], dtype=object)
    mask = np.zeros(kv.size, dtype=bool)
    for label, pair in kernels.items():
        mask |= (kv == label) & (cols["kernel_source"] == pair[which])
    return mask & (cols["latency"] > 0), kv


def _prefill_rows(cols: dict[str, np.ndarray], kernels: dict[str, tuple[str, str]]) -> Rows:
    mask, kv = _kernel_mask(cols, kernels, 0)
    out = _base_columns(cols, mask)
    isl = cols["isl"][mask].astype(float)
    out["num_tokens"] = out["num_seqs"] * isl
    out["num_pairs"] = out["num_seqs"] * _windowed_pairs(isl, out["window"])
    out["cached_tokens"] = np.zeros(isl.size)
    out["context_tokens"] = np.zeros(isl.size)
    regime = np.where(isl <= 512, "isl<=512", np.where(isl >= 4096, "isl>=4096", "isl 513-4095"))
    regime = np.where(out["window"] > 0, "window", regime)
    return _finish_rows(out, kv[mask], "prefill_attention", regime)


def _decode_rows(
    cols: dict[str, np.ndarray], kernels: dict[str, tuple[str, str]], l2: float
) -> Rows:
    mask, kv = _kernel_mask(cols, kernels, 1)
    out = _base_columns(cols, mask)
    # the collector's KV length is the prompt (isl) plus the ``step`` tokens already generated
    context = (cols["isl"][mask] + cols["step"][mask]).astype(float)
    context = np.where(out["window"] > 0, np.minimum(context, out["window"]), context)
    out["context_tokens"] = out["num_seqs"] * context
    zeros = np.zeros(context.size)
    out["num_tokens"], out["num_pairs"], out["cached_tokens"] = zeros, zeros, zeros
    kv_bytes = np.where(kv[mask] == "fp8", 1.0, 2.0)
    layer_kv = out["context_tokens"] * 2.0 * out["num_kv_heads"] * out["head_dim"] * kv_bytes
    regime = np.where(layer_kv <= l2, "kv<=L2", "kv>L2")
    regime = np.where(out["window"] > 0, "window", regime)
    return _finish_rows(out, kv[mask], "decode_attention", regime)


def load_rows(root: Path, gpu_folder: str, framework: str, version: str) -> Rows | None:
    """Prefill and decode rows of the engine's default kernels for one (GPU, stack), or None."""
    kernels = DEFAULT_KERNELS.get((gpu_folder, framework, version))
    refs = select(
        find_tables(root), gpu=gpu_folder, family="attention", framework=framework, version=version
    )
    if not refs:
        return None
    if kernels is None:  # a user's own tables: the kernel each phase measured most
        kernels = _most_measured_kernels(refs)
    from servesim.specs.catalog.gpus import get_gpu

    _, l2 = gpu_sms_l2(get_gpu(GPU_OF_FOLDER.get(gpu_folder, gpu_folder)))
    parts = []
    for ref in refs:
        if ref.table == "context_attention_perf":
            parts.append(_prefill_rows(read_columns(ref), kernels))
        elif ref.table == "generation_attention_perf":
            parts.append(_decode_rows(read_columns(ref), kernels, l2))
    return heldout.concat(parts) if parts else None


def _most_measured_kernels(refs: list) -> dict[str, tuple[str, str]]:
    """Per KV dtype label, the (prefill, decode) kernel with the most graph-timed rows."""
    best: dict[str, list[str]] = {}
    for which, table in enumerate(("context_attention_perf", "generation_attention_perf")):
        for ref in [r for r in refs if r.table == table]:
            cols = read_columns(ref)
            labels = [_KV_LABEL.get(k, k) for k in cols["kv_cache_dtype"]]
            for label in sorted(set(labels)):
                sources = [
                    str(src)
                    for src, lab in zip(cols["kernel_source"], labels, strict=True)
                    if lab == label and not str(src).endswith("_eager")
                ]
                if sources:
                    top = max(sorted(set(sources)), key=sources.count)
                    best.setdefault(label, ["", ""])[which] = top
    return {label: (pair[0], pair[1]) for label, pair in best.items() if all(pair)}


def _subsample(n: int, limit: int = 0) -> np.ndarray:
    """Deterministic evenly spaced row indices (at most ``limit``, default ``_MAX_FIT_ROWS``)."""
    limit = limit or _MAX_FIT_ROWS
    if n <= limit:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(int)


def _fit_one(rows: Rows, gpu: GPUSpec, is_prefill: bool) -> dict:
    from scipy.optimize import least_squares

    formula, unpack = (prefill_np, unpack_prefill) if is_prefill else (decode_np, unpack_decode)
    sub = heldout.take(rows, _subsample(rows["latency_s"].size))
    log_actual = np.log(sub["latency_s"])

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(formula(unpack(x), gpu, sub)) - log_actual

    x0 = np.zeros(5 if is_prefill else 7)
    sol = least_squares(residual, x0, method="trf", loss="soft_l1", f_scale=0.1, max_nfev=200)
    params = unpack(sol.x)
    axes = _PREFILL_AXES if is_prefill else _DECODE_AXES
    grid_rows = heldout.take(rows, _subsample(rows["latency_s"].size, _MAX_GRID_ROWS))
    ratio = np.log(grid_rows["latency_s"] / formula(params, gpu, grid_rows))
    coords = _grid_coords(grid_rows, is_prefill)
    grid = heldout.fit_log_grid(coords, ratio, axes, ridge=_GRID_RIDGE)
    return {**params, "grid": grid.to_dict()}


def _grid_coords(rows: Rows, is_prefill: bool) -> np.ndarray:
    seqs = rows["num_seqs"]
    group = rows["num_q_heads"] / rows["num_kv_heads"]
    if is_prefill:
        per_seq = np.maximum(rows["num_tokens"] / seqs, 1.0)
        return np.column_stack([rows["head_dim"], group, per_seq, seqs * rows["num_q_heads"]])
    per_seq = np.maximum(rows["context_tokens"] / seqs, 1.0)
    return np.column_stack([rows["head_dim"], group, per_seq, seqs * rows["num_kv_heads"]])


def fit(rows: Rows, gpu: GPUSpec) -> dict:
    """JSON-ready ``{"prefill": {dtype: params}, "decode": {dtype: params}}`` for one stack."""
    out: dict[str, dict] = {"prefill": {}, "decode": {}}
    for op, phase in (("prefill_attention", "prefill"), ("decode_attention", "decode")):
        for dtype in sorted(set(rows["dtype"][rows["op"] == op])):
            part = heldout.take(rows, (rows["op"] == op) & (rows["dtype"] == dtype))
            out[phase][dtype] = _fit_one(part, gpu, phase == "prefill")
    return AttentionFits.from_dict(out).to_dict()


def predict(params: dict, gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """Seconds per row through the runtime opmodel."""
    fits = AttentionFits.from_dict(params)
    pred = np.empty(rows["latency_s"].size)
    for i in range(pred.size):
        kv_bytes = float(rows["kv_bytes"][i])
        window = int(rows["window"][i]) or None
        heads = {
            "num_q_heads": int(rows["num_q_heads"][i]),
            "num_kv_heads": int(rows["num_kv_heads"][i]),
            "head_dim": int(rows["head_dim"][i]),
        }
        if rows["op"][i] == "prefill_attention":
            pred[i] = prefill_attention_s(
                fits.prefill_for(kv_bytes),
                gpu,
                num_seqs=int(rows["num_seqs"][i]),
                num_tokens=int(rows["num_tokens"][i]),
                num_pairs=float(rows["num_pairs"][i]),
                cached_tokens=int(rows["cached_tokens"][i]),
                kv_bytes=kv_bytes,
                window=window,
                **heads,
            )
        else:
            pred[i] = decode_attention_s(
                fits.decode_for(kv_bytes),
                gpu,
                num_seqs=int(rows["num_seqs"][i]),
                context_tokens=int(rows["context_tokens"][i]),
                kv_bytes=kv_bytes,
                window=window,
                **heads,
            )
    return pred


# ---- vectorised twins of the runtime formulas (fitting only; tests check they agree) --------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def unpack_prefill(x: np.ndarray) -> dict[str, float]:
    """Unconstrained least-squares variables -> prefill parameters (sane ranges)."""
    return {
        "floor_s": float(12e-6 * np.exp(x[0])),
        "mma_eff": float(0.05 + 0.95 * _sigmoid(x[1] + 0.5)),
        "fix_tiles": float(4.0 * np.exp(x[2])),
        "mem_eff": float(0.05 + 0.95 * _sigmoid(x[3])),
        "overlap_p": float(1.0 + 7.0 * _sigmoid(x[4])),
    }


def unpack_decode(x: np.ndarray) -> dict[str, float]:
    """Unconstrained least-squares variables -> decode parameters (sane ranges)."""
    return {
        "floor_s": float(12e-6 * np.exp(x[0])),
        "hbm_eff": float(0.3 + 0.7 * _sigmoid(x[1] + 1.0)),
        "l2_bw_per_sm": float(40e9 * np.exp(x[2])),
        "l2_frac": float(0.3 + 1.2 * _sigmoid(x[3])),
        "row_flops": float(200.0 * np.exp(x[4])),
        "kv_row_flops": float(200.0 * np.exp(x[6])),
        "overlap_p": float(1.0 + 7.0 * _sigmoid(x[5])),
    }


def _pnorm_np(a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    top = np.maximum(np.maximum(a, b), 1e-30)
    return top * ((a / top) ** p + (b / top) ** p) ** (1.0 / p)


def prefill_np(params: dict[str, float], gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """``prefill_attention_s`` over rows (no grid), vectorised."""
    num_sms, _ = gpu_sms_l2(gpu)
    seqs, window = rows["num_seqs"], rows["window"]
    chunk = rows["num_tokens"] / seqs
    cached = rows["cached_tokens"] / seqs
    q_tiles = np.ceil(chunk / TILE_M)
    has_window = window > 0
    w_tiles = np.where(has_window, np.ceil(window / TILE_N) + 1, q_tiles)
    capped = w_tiles * (w_tiles + 1) // 2 + (q_tiles - w_tiles) * w_tiles
    causal = np.where(q_tiles <= w_tiles, q_tiles * (q_tiles + 1) // 2, capped)
    cache_tiles = np.ceil(np.where(has_window, np.minimum(cached, window), cached) / TILE_N)
    visits = causal + q_tiles * cache_tiles
    occupancy = np.minimum(1.0, chunk / TILE_M) * np.minimum(1.0, (chunk + cached) / TILE_N)
    visits = np.maximum(visits * occupancy, rows["num_pairs"] / seqs / (TILE_M * TILE_N))
    fix = params["fix_tiles"]
    per_cta = fix + np.minimum(q_tiles, w_tiles) + cache_tiles
    work = seqs * rows["num_q_heads"] * (visits + q_tiles * fix)
    peak = gpu.peak_flops(DType.BF16)
    tile_s = 4.0 * TILE_M * TILE_N * rows["head_dim"] * num_sms / (peak * params["mma_eff"])
    compute_s = tile_s * np.maximum(work / num_sms, per_cta * occupancy)
    num_bytes = 4.0 * rows["num_tokens"] * rows["num_q_heads"] * rows["head_dim"]
    kv_tokens = rows["num_tokens"] + rows["cached_tokens"]
    num_bytes = (
        num_bytes + kv_tokens * 2.0 * rows["num_kv_heads"] * rows["head_dim"] * rows["kv_bytes"]
    )
    memory_s = num_bytes / (gpu.hbm_bandwidth_bytes_per_s * params["mem_eff"])
    return params["floor_s"] + _pnorm_np(compute_s, memory_s, params["overlap_p"])


def decode_np(params: dict[str, float], gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """``decode_attention_s`` over rows (no grid, L2 warm), vectorised."""
    num_sms, l2_bytes = gpu_sms_l2(gpu)
    seqs, window = rows["num_seqs"], rows["window"]
    context = np.where(
        window > 0, np.minimum(rows["context_tokens"], seqs * window), rows["context_tokens"]
    )
    kv_read = context * 2.0 * rows["num_kv_heads"] * rows["head_dim"] * rows["kv_bytes"]
    hbm_s = kv_read / (gpu.hbm_bandwidth_bytes_per_s * params["hbm_eff"])
    hit = 1.0 / (1.0 + (kv_read / (params["l2_frac"] * l2_bytes)) ** _L2_STEEPNESS)
    kv_s = hit * kv_read / (params["l2_bw_per_sm"] * num_sms) + (1.0 - hit) * hbm_s
    row_flops = rows["num_q_heads"] * params["row_flops"]
    row_flops = row_flops + rows["num_kv_heads"] * params["kv_row_flops"]
    rows_s = seqs * rows["head_dim"] * row_flops / gpu.peak_flops(DType.BF16)
    return params["floor_s"] + _pnorm_np(kv_s, rows_s, params["overlap_p"])


def _report(data_dir: Path) -> list[dict]:
    from servesim.specs.catalog.gpus import get_gpu

    module = sys.modules[__name__]
    root = aic_root(data_dir)
    out: list[dict] = []
    loaded: dict[tuple[str, str, str], Rows] = {}
    for gpu_folder, framework, version in DEFAULT_KERNELS:
        rows = load_rows(root, gpu_folder, framework, version)
        if rows is None:
            continue
        loaded[(gpu_folder, framework, version)] = rows
        gpu = get_gpu(GPU_OF_FOLDER[gpu_folder])
        pred = heldout.crossval_predictions(module, rows, gpu, 4)
        stack = f"{framework} {version}"
        out += heldout.group_report(pred, rows, gpu=gpu_folder, stack=stack, eval="cv4")
    source = loaded.get(("h100_sxm", "vllm", "0.24.0"))
    if source is not None:
        params = fit(source, get_gpu("h100-sxm"))
        for (gpu_folder, framework, version), rows in loaded.items():
            if gpu_folder == "h100_sxm":
                continue
            pred = predict(params, get_gpu(GPU_OF_FOLDER[gpu_folder]), rows)
            stack = f"{framework} {version}"
            out += heldout.group_report(pred, rows, gpu=gpu_folder, stack=stack, eval="from h100")
    return out


if __name__ == "__main__":
    from servesim.core.paths import shared_data_dir

    start = time.perf_counter()
    report = _report(shared_data_dir())
    for row in report:
        print(json.dumps(row))
    print(f"# {time.perf_counter() - start:.1f} s", file=sys.stderr)
