"""Vectorised twins of the attention tile rules (``opmodels.attention_tiles``) over table rows,
for the fit's inner loop; each matches its scalar rule row by row
(tests/perf/test_attention_tiles.py)."""

from __future__ import annotations

import numpy as np

from servesim.perf.fitting.heldout import Rows
from servesim.perf.opmodels import attention_tiles as tiles
from servesim.specs.gpu import GPUSpec


def tiles_np(gpu: GPUSpec, rows: Rows) -> tuple[np.ndarray, ...]:
    """``attention_tiles.prefill_tiles`` per row: (query rows, keys, resident CTAs, pack)."""
    head_dim = rows["head_dim"]
    fp8 = rows["kv_bytes"] <= 1.0
    out = np.ones((4, head_dim.size))
    for d in np.unique(head_dim):
        for is_fp8 in (False, True):
            at = (head_dim == d) & (fp8 == is_fp8)
            out[:, at] = np.asarray(tiles.prefill_tiles(gpu, float(d), is_fp8), dtype=float)[
                :, None
            ]
    pack = np.maximum(1.0, np.round(rows["num_q_heads"] / rows["num_kv_heads"]))
    if not tiles.runs_fa2(gpu):
        out[3] = pack  # FA3's paged-KV-non-TMA kernel packs the GQA group (PackGQA)
    elif fp8.any():
        # FlashInfer (fp8 KV on Ampere / Ada): the GQA group packed into square query tiles
        packed = rows["num_tokens"] / rows["num_seqs"] * pack
        small = np.where(packed > 16, 64.0, 16.0)
        tile_q = np.where((packed > 64) & (head_dim < 256), 128.0, small)
        for i, value in enumerate((tile_q, tile_q, np.ones_like(pack), pack)):
            out[i] = np.where(fp8, value, out[i])
    return out[0], out[1], out[2], out[3]


def floor_sum_np(n: np.ndarray, m: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``attention_tiles.floor_sum`` per row (int64 arrays)."""
    n, m, a, b = (np.array(x, dtype=np.int64) for x in (n, m, a, b))
    total = np.zeros_like(n)
    live = np.ones(n.shape, dtype=bool)
    while live.any():
        q = np.where(live, a // m, 0)
        total += (n - 1) * n // 2 * q
        a = np.where(live, a % m, a)
        q = np.where(live, b // m, 0)
        total += n * q
        b = np.where(live, b % m, b)
        y_max = a * n + b
        live &= y_max >= m
        safe_m = np.maximum(m, 1)
        n = np.where(live, y_max // safe_m, n)
        b = np.where(live, y_max % safe_m, b)
        m, a = np.where(live, a, m), np.where(live, m, a)
    return total


def causal_visits_np(
    q_tiles: np.ndarray, rows: np.ndarray, keys: np.ndarray, w_tiles: np.ndarray
) -> np.ndarray:
    """``attention_tiles.causal_tile_visits`` per row (``w_tiles`` >= every row's key tiles
    when there is no window)."""
    rows_i, keys_i = rows.astype(np.int64), keys.astype(np.int64)
    g = np.gcd(rows_i, keys_i)
    a, m = rows_i // g, keys_i // g
    q = q_tiles.astype(np.int64)
    w = w_tiles.astype(np.int64)
    capped = np.minimum(q, w * m // a)
    upto = floor_sum_np(capped, m, a, a + m - 1)
    return (upto + (q - capped) * w).astype(float)
