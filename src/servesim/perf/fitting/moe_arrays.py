"""Vectorised mirror of ``opmodels.moe_layer.moe_layer_s`` over table rows (for fitting and
scoring): the same arithmetic with the rows' exact padding and busiest expert, tested equal to the
runtime function (``tests/perf/test_moe_routing_terms.py``)."""

from __future__ import annotations

import numpy as np

from servesim.perf.fitting.heldout import Rows
from servesim.perf.fitting.moe_loads import TILES
from servesim.perf.opmodels.grid import LogGrid
from servesim.perf.opmodels.moe_l2 import l2_read_gain, touched_weight_bytes
from servesim.perf.opmodels.moe_layer import ALIGN_ELEMS, MoELayerFit
from servesim.perf.opmodels.moe_tiles import (
    ACT_BYTES,
    MARLIN_BLOCKS,
    MARLIN_RULE,
    OGS_FLOOR_MAX_ROWS,
)
from servesim.specs.gpu import GPUSpec


def formula(fit: MoELayerFit, gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """Vectorised ``moe_layer_s`` with the rows' exact padding (same arithmetic)."""
    bandwidth = gpu.hbm_bandwidth_bytes_per_s
    peak = gpu.peak_flops(fit.compute_dtype)
    pairs = rows["num_tokens"] * rows["topk"]
    if fit.stream_global < 1.0:
        own = rows["assignments"]
        pairs = own + fit.stream_global * np.maximum(pairs - own, 0.0)
    stream = pairs * (fit.stream_hidden * rows["hidden"] + fit.stream_inter * rows["inter"])
    inter = rows["inter"]
    width = np.where(
        inter % ALIGN_ELEMS != 0, np.maximum(fit.misalign_floor, inter / fit.misalign_eff), inter
    )
    elems = rows["num_matrices"] * rows["hidden"] * width
    touched = rows["experts_touched"]
    read = touched * elems * fit.weight_bytes / (bandwidth * fit.mem_eff)
    # the tables' replays leave touched weights that fit in L2 there (``opmodels.moe_l2``)
    weights = touched_weight_bytes(
        touched, rows["num_matrices"], rows["hidden"], inter, fit.weight_bytes
    )
    read = read / l2_read_gain(fit.l2_gain, fit.l2_frac, weights, gpu.l2_cache_bytes)
    work = padded_column(fit, rows) + fit.hot_weight * rows["max_expert"]
    math_elems = rows["num_matrices"] * rows["hidden"] * np.maximum(width, fit.tile_width)
    math_s = 2.0 * work * math_elems / (peak * fit.compute_eff)
    traffic = traffic_column(fit, rows, width) / bandwidth
    kloop = kloop_column(fit, rows, width)
    p = fit.overlap_p
    if fit.tiles_overlap_p > 0.0 and fit.traffic_eff > 0.0:  # the default tiles' own overlap
        p = np.where(rows.get("default_tiles", 1.0) > 0.0, fit.tiles_overlap_p, p)
    body = (read**p + math_s**p + traffic**p + kloop**p) ** (1.0 / p)
    # the router's top-k, only where the collector timed it (``moe_collectors.router_timed``)
    route = rows.get("router_timed", 1.0) * fit.router_fixed_s
    fixed = fit.fixed_s + np.where(rows["ep"] > 1, fit.ep_fixed_s, 0.0) + route
    total = fixed + stream / bandwidth + fit.expert_s * touched + body
    if fit.cta_row_s > 0.0:
        floor = fixed + fit.cta_row_s * ogs_floor_rows_column(rows)
        total = np.maximum(total, floor)
    return total


def ogs_block_m_column(rows: Rows) -> np.ndarray:
    """Vectorised ``moe_tiles.ogs_block_m`` (tokens per local expert, matmul_ogs's M tile)."""
    local = np.maximum(rows["num_experts"] / rows["ep"], 1.0)
    per_expert = np.maximum(np.floor(rows["num_tokens"] / local), 1.0)
    ragged = np.clip(2.0 ** np.ceil(np.log2(2.0 * per_expert)), 16.0, 64.0)
    dense = np.clip(2.0 ** np.ceil(np.log2(per_expert)), 16.0, 128.0)
    return np.where(per_expert <= 64.0, ragged, dense)


def ogs_floor_rows_column(rows: Rows) -> np.ndarray:
    """Vectorised ``moe_tiles.ogs_floor_rows``."""
    return np.minimum(ogs_block_m_column(rows), OGS_FLOOR_MAX_ROWS)


def traffic_column(fit: MoELayerFit, rows: Rows, width: np.ndarray) -> np.ndarray:
    """Vectorised ``default_tiles`` and ``tile_traffic_bytes`` over ``traffic_eff``, in bytes
    (0 where the fit has no traffic term)."""
    if fit.traffic_eff <= 0.0:
        return np.zeros(rows["num_tokens"].shape)
    small = _small_tiles(fit, rows)
    big = (64, 128) if fit.compute_dtype == "fp8" else (64, 64)
    out = np.zeros(small.shape)
    for mask, (block_m, block_n) in ((small, (16, 32)), (~small, big)):
        per_k = block_m * ACT_BYTES + block_n * fit.weight_bytes
        up = np.ceil((rows["num_matrices"] - 1) * width / block_n) * rows["hidden"]
        down = np.ceil(rows["hidden"] / block_n) * width
        moved = rows[f"padded_{block_m}"] / block_m * per_k * (up + down)
        out = np.where(mask, moved, out)
    # only the shapes without a tuned config file run these tiles (``moe_configs``)
    return out * rows.get("default_tiles", 1.0) / fit.traffic_eff


def _small_tiles(fit: MoELayerFit, rows: Rows) -> np.ndarray:
    """Rows whose default config is the small one (``M <= E``: the layer's tokens against its
    local experts, 16 x 32 tiles and BLOCK_K 64; never for block-scaled fp8)."""
    small = rows["num_tokens"] <= rows["num_experts"] / rows["ep"]
    return small & (fit.compute_dtype != "fp8")


def kloop_column(fit: MoELayerFit, rows: Rows, width: np.ndarray) -> np.ndarray:
    """Vectorised ``default_block_k`` and ``kloop_steps`` at ``kloop_s``: the serial K loop of
    one default-tile CTA, seconds (0 where the fit has no traffic term or the row a tuned file)."""
    if fit.traffic_eff <= 0.0 or fit.kloop_s <= 0.0:
        return np.zeros(rows["num_tokens"].shape)
    block_k = np.where(_small_tiles(fit, rows), 64.0, 32.0)
    if fit.compute_dtype == "fp8":
        block_k[:] = 128.0
    steps = np.ceil(rows["hidden"] / block_k) + np.ceil(width / block_k)
    return fit.kloop_s * steps * rows.get("default_tiles", 1.0)


def padded_column(fit: MoELayerFit, rows: Rows) -> np.ndarray:
    """Vectorised ``tile_for`` and the rows' exact padding at that tile."""
    if fit.tile_rule == MARLIN_RULE:
        local = np.maximum(rows["num_experts"] / rows["ep"], 1.0)
        density = rows["num_tokens"] * rows["topk"] / local
        # ``marlin_block_m``: the first block b with density / b < 0.9, i.e. b > density / 0.9
        index = np.searchsorted(MARLIN_BLOCKS, density / 0.9, side="right")
        index = np.minimum(index, len(MARLIN_BLOCKS) - 1)
        padded = np.stack([rows[f"padded_{b}"] for b in MARLIN_BLOCKS])
        return np.take_along_axis(padded, index[None, :], axis=0)[0]
    if fit.tile_min <= 0.0:
        return rows[f"padded_{int(fit.tile_rows)}"]
    mean = rows["assignments"] / np.maximum(rows["experts_touched"], 1.0)
    cover = 2.0 ** np.ceil(np.log2(np.maximum(mean, 1.0)))
    tile = np.minimum(fit.tile_rows, np.maximum(fit.tile_min, cover))
    out = np.zeros(tile.shape)
    for candidate in TILES:
        out = np.where(tile == candidate, rows[f"padded_{candidate}"], out)
    return out


def grid_coords(rows: Rows) -> np.ndarray:
    """Vectorised ``correction_coords``."""
    per_expert = np.maximum(rows["assignments"] / np.maximum(rows["experts_touched"], 1.0), 1.0)
    pairs = np.maximum(rows["num_tokens"] * rows["topk"], 1.0)
    imbalance = np.maximum(rows["assignments"] * rows["ep"] / pairs, 0.125)
    concentration = np.maximum(rows["max_expert"] / per_expert, 1.0)
    return np.stack([rows["num_tokens"], per_expert, imbalance, concentration], axis=1)


def grid_factors(grid: LogGrid, coords: np.ndarray) -> np.ndarray:
    """Vectorised ``LogGrid.factor`` (same multilinear interpolation, edge values held)."""
    total = np.zeros(coords.shape[0])
    lows, weights = [], []
    for d, axis in enumerate(grid.axes):
        a = np.asarray(axis)
        x = np.clip(np.log2(coords[:, d]), a[0], a[-1])
        lo = np.clip(np.searchsorted(a, x, side="right") - 1, 0, len(a) - 2)
        lows.append(lo)
        weights.append((x - a[lo]) / (a[lo + 1] - a[lo]))
    values = np.asarray(grid.values)
    strides = [int(np.prod([len(a) for a in grid.axes[d + 1 :]])) for d in range(len(grid.axes))]
    for mask in range(1 << len(grid.axes)):
        weight = np.ones_like(total)
        index = np.zeros(total.shape, dtype=int)
        for d in range(len(grid.axes)):
            upper = (mask >> d) & 1
            weight = weight * (weights[d] if upper else 1.0 - weights[d])
            index = index + (lows[d] + upper) * strides[d]
        total += weight * values[index]
    return np.exp(total)
