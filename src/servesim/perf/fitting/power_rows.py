"""Rows of the power-carrying tables (``fitting.power``): FLOPs, HBM bytes and the board's
previous case per row, one builder per aiconfigurator table (split from ``fitting.power``)."""

from __future__ import annotations

import numpy as np

from servesim.perf.fitting.heldout import Rows

# Bytes per element of each table's dtype label (weights / KV); activations are bf16 (2 B).
_ELEMENT_BYTES = {"bfloat16": 2.0, "float16": 2.0, "fp8": 1.0, "fp8_block": 1.0, "int4_wo": 0.5}
_ACT_BYTES = 2.0
#: GPUs of the measuring node (8-GPU H200 HGX) whose workers share one case queue: the board's
#: previous case is this many rows earlier in its table (``fitting.power`` docstring).
BOARDS_SHARING_QUEUE = 8


def _f(cols: dict[str, np.ndarray], name: str) -> np.ndarray:
    return np.asarray(cols[name], dtype=float)


def _base_rows(
    cols: dict[str, np.ndarray],
    op: str,
    dtype: np.ndarray,
    keys: list[str],
    flops: np.ndarray,
    nbytes: np.ndarray,
) -> Rows:
    """The protocol columns every op class shares."""
    shape_key = np.array(
        ["|".join(str(v) for v in t) for t in zip(*(cols[k] for k in keys), strict=True)],
        dtype=object,
    )
    n = len(flops)
    latency_s = _f(cols, "latency") * 1e-3
    return {
        "latency_s": latency_s,
        **previous_case_columns(flops, nbytes, latency_s),
        "power_w": _f(cols, "power"),
        "power_limit_w": _f(cols, "power_limit"),
        "flops": flops,
        "hbm_bytes": nbytes,
        "op": np.full(n, op, dtype=object),
        "dtype": np.asarray(dtype, dtype=object),
        "shape_key": shape_key,
    }


def previous_case_columns(
    flops: np.ndarray, nbytes: np.ndarray, latency_s: np.ndarray
) -> dict[str, np.ndarray]:
    """FLOPs, bytes and latency of the case the same board ran before each row: the row
    ``BOARDS_SHARING_QUEUE`` earlier in the table (a table's first rows: their own)."""
    row = np.arange(len(flops))
    prev = np.where(row >= BOARDS_SHARING_QUEUE, row - BOARDS_SHARING_QUEUE, row)
    return {
        "prev_flops": flops[prev],
        "prev_hbm_bytes": nbytes[prev],
        "prev_latency_s": latency_s[prev],
    }


def _gemm_rows(cols: dict[str, np.ndarray]) -> Rows:
    m, n, k = _f(cols, "m"), _f(cols, "n"), _f(cols, "k")
    dtype = cols["gemm_dtype"]
    wb = np.array([_ELEMENT_BYTES[d] for d in dtype])
    flops = 2.0 * m * n * k
    # A (m x k) and B (k x n) in the GEMM dtype, C (m x n) written in bf16.
    nbytes = wb * (m * k + n * k) + _ACT_BYTES * m * n
    # hold-out unit: one weight shape (n, k) of one dtype, every m
    return _base_rows(cols, "gemm", dtype, ["gemm_dtype", "n", "k"], flops, nbytes)


def _causal_pairs(seq: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(query, key) pairs of causal attention over ``seq`` tokens, sliding ``window`` (0: full)."""
    full = seq * (seq + 1.0) / 2.0
    w = np.where(window > 0, np.minimum(window, seq), seq)
    # rows i < w see i + 1 keys, later rows see w keys
    windowed = w * (w + 1.0) / 2.0 + (seq - w) * w
    return np.where(window > 0, windowed, full)


def _context_rows(cols: dict[str, np.ndarray]) -> Rows:
    b, s = _f(cols, "batch_size"), _f(cols, "isl")
    h, hkv, d = _f(cols, "num_heads"), _f(cols, "num_key_value_heads"), _f(cols, "head_dim")
    kvb = np.array([_ELEMENT_BYTES[x] for x in cols["kv_cache_dtype"]])
    pairs = _causal_pairs(s, _f(cols, "window_size"))
    flops = 4.0 * b * h * d * pairs  # QK^T and PV, 2 FLOPs a multiply-add each
    nbytes = b * s * d * (2.0 * h * _ACT_BYTES + 2.0 * hkv * kvb)  # Q, O; K, V
    keys = ["num_heads", "num_key_value_heads", "head_dim", "kv_cache_dtype", "window_size"]
    return _base_rows(cols, "attention_prefill", cols["kv_cache_dtype"], keys, flops, nbytes)


def _decode_rows(cols: dict[str, np.ndarray]) -> Rows:
    b, ctx = _f(cols, "batch_size"), _f(cols, "step")
    h, hkv, d = _f(cols, "num_heads"), _f(cols, "num_key_value_heads"), _f(cols, "head_dim")
    window = _f(cols, "window_size")
    kv = np.where(window > 0, np.minimum(window, ctx + 1.0), ctx + 1.0)
    kvb = np.array([_ELEMENT_BYTES[x] for x in cols["kv_cache_dtype"]])
    flops = 4.0 * b * h * d * kv
    nbytes = b * kv * 2.0 * hkv * d * kvb + 2.0 * b * h * d * _ACT_BYTES
    keys = ["num_heads", "num_key_value_heads", "head_dim", "kv_cache_dtype", "window_size"]
    return _base_rows(cols, "attention_decode", cols["kv_cache_dtype"], keys, flops, nbytes)


def _moe_rows(cols: dict[str, np.ndarray]) -> Rows:
    t, hid, inter = _f(cols, "num_tokens"), _f(cols, "hidden_size"), _f(cols, "inter_size")
    topk, experts = _f(cols, "topk"), _f(cols, "num_experts")
    tp, ep = _f(cols, "moe_tp_size"), _f(cols, "moe_ep_size")
    wb = np.array([_ELEMENT_BYTES[x] for x in cols["moe_dtype"]])
    local_experts = experts / ep
    assignments = t * topk / ep  # token-expert pairs on this rank (balanced routing)
    flops = 2.0 * assignments * 3.0 * hid * inter / tp  # gate+up (2 H I) and down (H I)
    # experts touched at least once when t*topk picks are spread over all experts
    touched = local_experts * (1.0 - (1.0 - 1.0 / experts) ** (t * topk))
    weight_bytes = touched * 3.0 * hid * inter / tp * wb
    act_bytes = _ACT_BYTES * (2.0 * t * hid + assignments * (3.0 * inter / tp + 2.0 * hid))
    keys = [
        "moe_dtype",
        "hidden_size",
        "inter_size",
        "topk",
        "num_experts",
        "moe_tp_size",
        "moe_ep_size",
    ]
    return _base_rows(cols, "moe", cols["moe_dtype"], keys, flops, weight_bytes + act_bytes)


TABLES = {
    ("gemm", "gemm_perf"): _gemm_rows,
    ("attention", "context_attention_perf"): _context_rows,
    ("attention", "generation_attention_perf"): _decode_rows,
    ("moe", "moe_perf"): _moe_rows,
}
