"""Fit the attention opmodel (``servesim.perf.opmodels.attention_fit``) to aiconfigurator tables.

The rows (which kernel per GPU and stack, report regimes) come from ``attention_rows``.
Run ``python -m servesim.perf.fitting.attention`` for the held-out report.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

from servesim.perf.fitting import heldout
from servesim.perf.fitting.attention_np import causal_visits_np, tiles_np
from servesim.perf.fitting.attention_rows import DEFAULT_KERNELS, GPU_OF_FOLDER, load_rows
from servesim.perf.fitting.heldout import Rows
from servesim.perf.fitting.tables import aic_root
from servesim.perf.opmodels import attention_tiles as tiles
from servesim.perf.opmodels.attention_fit import (
    _L2_STEEPNESS,
    AttentionFits,
    decode_attention_s,
    gpu_sms_l2,
    prefill_attention_s,
    window_unpacks_gqa,
)
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec

# least squares on at most this many rows per (op, dtype): the parameters are few, and the
# grid correction afterwards sees every row
_MAX_FIT_ROWS = 6000
_MAX_GRID_ROWS = 12000
# Grid axes (log2): head_dim, GQA group, tokens per sequence (chunk or KV context), seqs x heads.
# The head_dim axis has a point at every head size the measured kernels are built for: FA3
# instantiates one kernel per head-size bucket (64, 96, 128, 192, 256; flash-attention
# hopper/generate_kernels.py), each with its own tiles (hopper/tile_size.h), so the correction
# steps from one kernel to the next instead of interpolating across them. Evidence: SGLang's
# fa3 decode at head_dim 192 measures 1.25x its head_dim 256 time at equal shapes (H100 tables,
# median of 1114 pairs), which no interpolation between 128 and 256 can give. 96 has no rows;
# the smoothing fills it.
_HEAD_DIM_AXIS = tuple(float(np.log2(d)) for d in (64, 96, 128, 192, 256, 512))
_PREFILL_AXES = (
    _HEAD_DIM_AXIS,
    (0.0, 2.0, 4.0, 6.0),
    tuple(float(x) for x in range(0, 15, 2)),
    tuple(float(x) for x in range(0, 15, 3)),
)
_DECODE_AXES = (
    _HEAD_DIM_AXIS,
    (0.0, 2.0, 4.0, 6.0),
    tuple(float(x) for x in range(1, 18, 2)),
    tuple(float(x) for x in range(0, 15, 3)),
)
_GRID_RIDGE = 0.03
# FA2's traffic term is a bandwidth bound: the top of the p-norm range (``unpack_prefill``)
_FA2_OVERLAP_P = 8.0


def _subsample(n: int, limit: int = 0) -> np.ndarray:
    """Deterministic evenly spaced row indices (at most ``limit``, default ``_MAX_FIT_ROWS``)."""
    limit = limit or _MAX_FIT_ROWS
    if n <= limit:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(int)


def _fit_one(
    rows: Rows, gpu: GPUSpec, is_prefill: bool, hbm_eff: float | None = None, unpacks: bool = False
) -> dict:
    """One (phase, dtype)'s parameters; ``hbm_eff`` given: decode with that HBM efficiency held
    (the bf16 fit's) and the SM-side KV cap fitted in its place; ``unpacks``: the decode
    kernel drops GQA packing under a sliding window (``window_unpacks_gqa``)."""
    from scipy.optimize import least_squares

    formula, unpack = (prefill_np, unpack_prefill) if is_prefill else (decode_np, unpack_decode)
    if is_prefill:
        unpack = functools.partial(unpack_prefill, fa2=tiles.runs_fa2(gpu))
    else:
        free = functools.partial(unpack_decode, hbm_eff=hbm_eff)

        def unpack(x: np.ndarray) -> dict:
            # FA2 (``unpacks``) runs MHA and windowed decode without split-KV: x[7] is the rate
            # one CTA streams at (``attention_stream``); other kernels split (0)
            cta_bw = float(25e9 * np.exp(x[7])) if unpacks else 0.0
            return {**free(x), "window_unpacks_gqa": unpacks, "cta_bw": cta_bw}

    sub = heldout.take(rows, _subsample(rows["latency_s"].size))
    log_actual = np.log(sub["latency_s"])

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(formula(unpack(x), gpu, sub)) - log_actual

    x0 = np.zeros(5 if is_prefill else 8 if unpacks else 7)
    sol = least_squares(residual, x0, method="trf", loss="soft_l1", f_scale=0.1, max_nfev=200)
    params = unpack(sol.x)
    axes = _PREFILL_AXES if is_prefill else _DECODE_AXES
    grid_rows = heldout.take(rows, _subsample(rows["latency_s"].size, _MAX_GRID_ROWS))
    ratio = np.log(grid_rows["latency_s"] / formula(params, gpu, grid_rows))
    coords = _grid_coords(grid_rows, is_prefill, unpacks)
    grid = heldout.fit_log_grid(coords, ratio, axes, ridge=_GRID_RIDGE)
    return {**params, "grid": grid.to_dict()}


def _grid_coords(rows: Rows, is_prefill: bool, unpacks: bool = False) -> np.ndarray:
    seqs = rows["num_seqs"]
    if is_prefill:
        group = rows["num_q_heads"] / rows["num_kv_heads"]
        per_seq = np.maximum(rows["num_tokens"] / seqs, 1.0)
        return np.column_stack([rows["head_dim"], group, per_seq, seqs * rows["num_q_heads"]])
    kv_heads = _decode_kv_heads(rows, unpacks)
    per_seq = np.maximum(rows["context_tokens"] / seqs, 1.0)
    group = rows["num_q_heads"] / kv_heads
    return np.column_stack([rows["head_dim"], group, per_seq, seqs * kv_heads])


def _decode_kv_heads(rows: Rows, unpacks: bool) -> np.ndarray:
    """KV heads as the decode kernel reads them: query heads for windowed rows of a kernel that
    drops GQA packing under a window (FA2), else the model's."""
    if not unpacks:
        return rows["num_kv_heads"]
    return np.where(rows["window"] > 0, rows["num_q_heads"], rows["num_kv_heads"])


def fit(rows: Rows, gpu: GPUSpec) -> dict:
    """JSON-ready ``{"prefill": {dtype: params}, "decode": {dtype: params}}`` for one stack."""
    out: dict[str, dict] = {"prefill": {}, "decode": {}}
    for op, phase in (("prefill_attention", "prefill"), ("decode_attention", "decode")):
        # bf16 before fp8: an fp8 decode fit takes the bf16 one's HBM efficiency
        for dtype in sorted(set(rows["dtype"][rows["op"] == op])):
            part = heldout.take(rows, (rows["op"] == op) & (rows["dtype"] == dtype))
            held = phase == "decode" and dtype == "fp8"
            shared = out["decode"].get("bf16", {}).get("hbm_eff") if held else None
            unpacks = _unpacks_gqa(part, gpu, dtype)
            out[phase][dtype] = _fit_one(part, gpu, phase == "prefill", shared, unpacks)
    return AttentionFits.from_dict(out).to_dict()


def _unpacks_gqa(rows: Rows, gpu: GPUSpec, dtype: str) -> bool:
    """``window_unpacks_gqa`` for these rows: FlashAttention 2 on Ampere / Ada (not FlashInfer)."""
    kernels = {str(k) for k in rows.get("kernel", np.asarray([], dtype=object))}
    flashinfer = any("flashinfer" in k for k in kernels)
    return window_unpacks_gqa(gpu.architecture, dtype == "fp8") and not flashinfer


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


def unpack_prefill(x: np.ndarray, fa2: bool = False) -> dict[str, float]:
    """Unconstrained least-squares variables -> prefill parameters (sane ranges).

    ``fa2``: ``x[2]`` is the per-CTA fixed cost in seconds (``fix_s``) instead of tile visits,
    and the traffic term is a bound (``overlap_p`` at the range's top, 8): FA2's CTAs load
    Q, K and V within their own serial time (``fix_s`` and each tile visit, two or one
    resident per SM), so what is left of the traffic is the shared memory bandwidth, which the
    other CTAs' work overlaps. Fitted freely, A100 lands on the range's bottom (1.0, serial)
    and L40S at 2.5, one kernel with two shapes: that is the fits trading the traffic term
    against the per-CTA cost, not a measured overlap.
    """
    fix = float(4.0 * np.exp(x[2]))
    return {
        "floor_s": float(12e-6 * np.exp(x[0])),
        "mma_eff": float(0.05 + 0.95 * _sigmoid(x[1] + 0.5)),
        "fix_tiles": 0.0 if fa2 else fix,
        "fix_s": fix * 1e-6 if fa2 else 0.0,
        "mem_eff": float(0.05 + 0.95 * _sigmoid(x[3])),
        "overlap_p": _FA2_OVERLAP_P if fa2 else float(1.0 + 7.0 * _sigmoid(x[4])),
    }


def unpack_decode(x: np.ndarray, hbm_eff: float | None = None) -> dict[str, float]:
    """Unconstrained least-squares variables -> decode parameters (sane ranges).

    With ``hbm_eff`` given, ``x[1]`` is the SM-side KV cap (fp8 KV) instead of the HBM
    efficiency; without it there is no cap.
    """
    held = hbm_eff is not None
    return {
        "floor_s": float(12e-6 * np.exp(x[0])),
        "hbm_eff": float(hbm_eff) if held else float(0.3 + 0.7 * _sigmoid(x[1] + 1.0)),
        "kv_bw_per_sm": float(20e9 * np.exp(x[1])) if held else 0.0,
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
    block_m, block_n, resident, pack = tiles_np(gpu, rows)
    keys = block_n * pack  # query tile j sees ceil(j * block_m / keys) key tiles
    seqs, window = rows["num_seqs"], rows["window"]
    chunk = rows["num_tokens"] / seqs
    cached = rows["cached_tokens"] / seqs
    q_tiles = np.ceil(chunk * pack / block_m)
    has_window = window > 0
    full = np.ceil(q_tiles * block_m / keys)
    w_tiles = np.where(has_window, np.ceil((window + block_m / pack) / block_n), full + 1)
    cache_tiles = np.ceil(np.where(has_window, np.minimum(cached, window), cached) / block_n)
    visits = causal_visits_np(q_tiles, block_m, keys, w_tiles) + q_tiles * cache_tiles
    occupancy = np.minimum(1.0, chunk * pack / block_m)
    occupancy = occupancy * np.minimum(1.0, (chunk + cached) / block_n)
    floor_visits = rows["num_pairs"] * pack / seqs / (block_m * block_n)
    visits = np.maximum(visits * occupancy, floor_visits)
    peak = gpu.peak_flops(DType.BF16)
    tile_s = 4.0 * block_m * block_n * rows["head_dim"] * num_sms / (peak * params["mma_eff"])
    cta_fix_s = params["fix_tiles"] * tile_s + params.get("fix_s", 0.0)
    chain = np.minimum(full, w_tiles) + cache_tiles
    heads = seqs * rows["num_q_heads"] / pack
    serial_s = heads * (q_tiles * cta_fix_s + visits * tile_s)
    work_s = np.maximum(serial_s / resident, heads * visits * tile_s) / num_sms
    compute_s = np.maximum(work_s, (cta_fix_s + chain * tile_s) * occupancy)
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
    kv_heads = _decode_kv_heads(rows, bool(params.get("window_unpacks_gqa", False)))
    kv_read = context * 2.0 * kv_heads * rows["head_dim"] * rows["kv_bytes"]
    unique = context * 2.0 * rows["num_kv_heads"] * rows["head_dim"] * rows["kv_bytes"]
    head_bytes = context * 2.0 * rows["head_dim"] * rows["kv_bytes"]
    rate = gpu.hbm_bandwidth_bytes_per_s * params["hbm_eff"]
    if params.get("kv_bw_per_sm", 0.0) > 0.0:
        rate = min(rate, num_sms * params["kv_bw_per_sm"])
    if params.get("cta_bw", 0.0) > 0.0:
        # FA2 without split-KV (MHA or a window): one CTA per (sequence, query head)
        unsplit = (window > 0) | (rows["num_q_heads"] <= rows["num_kv_heads"])
        ctas = seqs * rows["num_q_heads"] * params["cta_bw"]
        rate = np.where(unsplit, np.minimum(rate, ctas), rate)
    l2_rate = params["l2_bw_per_sm"] * num_sms
    capacity = params["l2_frac"] * l2_bytes
    hit = 1.0 / (1.0 + (unique / capacity) ** _L2_STEEPNESS)
    kv_s = hit * unique / l2_rate + (1.0 - hit) * (unique / rate)
    # re-reads of a KV head by the other query heads of its group (FA2, unpacked): from L2
    # while one head's pass over the batch fits (``attention_stream.kv_stream_s``)
    near = 1.0 / (1.0 + (head_bytes / capacity) ** _L2_STEEPNESS)
    rereads = kv_read - unique
    kv_s = kv_s + np.where(rereads > 0.0, rereads * (near / l2_rate + (1.0 - near) / rate), 0.0)
    row_flops = rows["num_q_heads"] * params["row_flops"]
    row_flops = row_flops + kv_heads * params["kv_row_flops"]
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
