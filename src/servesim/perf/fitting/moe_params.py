"""The MoE fit's parameter vector (``fitting.moe``): start, bounds, and the map to and from an
``opmodels.moe_layer.MoELayerFit`` (split from ``moe``, which solves for it).

Entries: log fixed_s, log stream_h, log stream_i, logit mem, logit comp, log (p - 1),
log expert_s, logit misalign_eff, log misalign_floor, log hot_weight, log stream_global (0: the
whole batch, the fused kernels' default; free for borrowed formats), log traffic_eff (tile
operand traffic rate over HBM bandwidth; only for default-config kernels), log router_fixed_s
(free only where the table times the router in some rows: ``moe._free_mask``), logit of
l2_gain / ``L2_GAIN_MAX`` and log l2_frac (the tables' L2 condition, ``opmodels.moe_l2``; the
lower bound of the first reads as no gain, so a borrowed fit keeps a donor's 0 exactly), log
kloop_s (the default tiles' serial K loop, ``opmodels.moe_tiles.kloop_steps``; at its lower
bound: none), log tile_width (the narrowest width the kernel's tiles compute,
``opmodels.moe_tiles.math_width``; at its lower bound: none).
"""

from __future__ import annotations

import numpy as np

from servesim.perf.opmodels.moe_l2 import L2_GAIN_MAX
from servesim.perf.opmodels.moe_layer import MoELayerFit

#: Index of the first L2 entry (logit gain; the next is log l2_frac).
L2_INDEX = 13
#: Index of log kloop_s (the default tiles' serial K loop; free only with their traffic term).
KLOOP_INDEX = 15
#: Index of log tile_width (free in every full fit; a borrowed format keeps none).
TILE_WIDTH_INDEX = 16

_X0 = np.array(
    [
        *np.log([30e-6, 4.0, 4.0]),
        1.5,
        0.0,
        0.0,
        np.log(1e-7),
        0.0,
        np.log(200.0),
        -2.0,
        0.0,
        0.7,
        np.log(5e-6),
        np.log(0.5 / (L2_GAIN_MAX - 0.5)),  # gain 0.5 at the start
        np.log(0.7),  # half the gain gone at 0.7x the L2 (L40S: +38% at 0.5-1x, -5% above)
        np.log(1e-7),  # kloop_s: 0.1 us a K step at the start (the Hopper fits land at ~0.33)
        np.log(64.0),  # tile_width: inside the narrow widths, so the fit sees its gradient
    ]
)
_LOWER = np.array(
    [
        np.log(1e-6),
        -12.0,
        -12.0,
        -4.0,
        -5.0,
        -4.0,
        np.log(1e-9),
        -4.0,
        0.0,
        -9.0,
        -8.0,
        -2.0,
        np.log(1e-8),
        -10.0,
        np.log(0.1),
        np.log(1e-11),
        0.0,
    ]
)
_UPPER = np.array(
    [
        np.log(1e-3),
        6.0,
        6.0,
        6.0,
        4.0,
        3.0,
        np.log(1e-5),
        6.0,
        np.log(2048.0),
        np.log(64.0),
        0.0,
        4,
        np.log(1e-4),
        6.0,
        np.log(4.0),
        np.log(1e-6),
        np.log(1024.0),
    ]
)


def _unpack(x: np.ndarray, base: MoELayerFit) -> MoELayerFit:
    logistic = 1.0 / (1.0 + np.exp(-x))
    g, k, w = L2_INDEX, KLOOP_INDEX, TILE_WIDTH_INDEX
    return MoELayerFit(
        weight_bytes=base.weight_bytes,
        compute_dtype=base.compute_dtype,
        fixed_s=float(np.exp(x[0])),
        stream_hidden=float(np.exp(x[1])),
        stream_inter=float(np.exp(x[2])),
        mem_eff=float(logistic[3]),
        compute_eff=float(logistic[4]),
        tile_rows=base.tile_rows,
        tile_min=base.tile_min,
        tile_rule=base.tile_rule,
        overlap_p=float(1.0 + np.exp(x[5])),
        expert_s=float(np.exp(x[6])),
        misalign_eff=float(logistic[7]),
        misalign_floor=float(np.exp(x[8])),
        hot_weight=float(np.exp(x[9])),
        stream_global=1.0 if x[10] > -1e-6 else float(np.exp(x[10])),
        traffic_eff=float(np.exp(x[11])) if base.traffic_eff > 0.0 else 0.0,
        router_fixed_s=float(np.exp(x[12])) if x[12] > _LOWER[12] + 1e-6 else base.router_fixed_s,
        cta_row_s=base.cta_row_s,
        ep_fixed_s=base.ep_fixed_s,
        l2_gain=float(L2_GAIN_MAX * logistic[g]) if x[g] > _LOWER[g] + 1e-6 else 0.0,
        l2_frac=float(np.exp(x[g + 1])),
        kloop_s=float(np.exp(x[k])) if x[k] > _LOWER[k] + 1e-6 else 0.0,
        tile_width=float(np.exp(x[w])) if x[w] > _LOWER[w] + 1e-6 else 0.0,
    )


def _pack(fit: MoELayerFit) -> np.ndarray:
    """Inverse of ``_unpack`` (clipped into the bounds)."""
    gain = fit.l2_gain / L2_GAIN_MAX
    x = np.array(
        [
            np.log(fit.fixed_s),
            np.log(fit.stream_hidden),
            np.log(fit.stream_inter),
            _logit(fit.mem_eff),
            _logit(fit.compute_eff),
            np.log(max(fit.overlap_p - 1.0, 1e-6)),
            np.log(max(fit.expert_s, 1e-12)),
            _logit(fit.misalign_eff),
            np.log(max(fit.misalign_floor, 1.0)),
            np.log(max(fit.hot_weight, 1e-6)),
            np.log(max(fit.stream_global, 1e-6)),
            np.log(fit.traffic_eff) if fit.traffic_eff > 0.0 else _X0[11],
            np.log(fit.router_fixed_s) if fit.router_fixed_s > 0.0 else _LOWER[12],
            float(np.log(gain / (1.0 - gain))) if gain > 0.0 else _LOWER[L2_INDEX],
            np.log(fit.l2_frac),
            np.log(fit.kloop_s) if fit.kloop_s > 0.0 else _LOWER[KLOOP_INDEX],
            np.log(fit.tile_width) if fit.tile_width > 0.0 else _LOWER[TILE_WIDTH_INDEX],
        ]
    )
    x = np.clip(x, _LOWER + 1e-9, _UPPER - 1e-9)
    if fit.l2_gain <= 0.0:
        x[L2_INDEX] = _LOWER[L2_INDEX]  # exactly at the bound: no gain (``_unpack``)
    if fit.kloop_s <= 0.0:
        x[KLOOP_INDEX] = _LOWER[KLOOP_INDEX]
    if fit.tile_width <= 0.0:
        x[TILE_WIDTH_INDEX] = _LOWER[TILE_WIDTH_INDEX]
    return x


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p))) if p < 1.0 else float(_UPPER[7])
