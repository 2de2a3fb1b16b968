"""The L2 condition of the MoE tables: expert weights replayed from L2 (one builder for the
runtime ``moe_layer.moe_layer_s`` and the fit's numpy mirror ``fitting.moe_arrays.formula``).

aiconfigurator's MoE collector, like its GEMM one, replays one captured layer back to back on
ONE set of expert weights with no L2 flush (``collector/helper.py`` ``benchmark_with_power``):
touched expert weights that fit in the L2 are read from it after the first replay. The read
then runs faster than HBM, by a gain that fades as the weights outgrow the cache, the GEMM
model's form (``opmodels.gemm``): ``1 + l2_gain / (1 + x**4)``, with ``x`` the touched weight
bytes over ``l2_frac`` of the GPU's own L2 (so the fit carries to another GPU by its L2 size).
Evidence (vLLM 0.24, held-out shapes before this term, median signed error of the balanced
bf16 rows by touched weights over L2): L40S (96 MiB L2, 864 GB/s) +38% at 0.5-1x, +21% at
0.25-0.5x, -5% above 1x; H100 (50 MiB, 3.35 TB/s, where an L2 read gains less over HBM) within
6% in every band. With the term (refit): L40S held-out <= 256 tokens balanced bf16 20.5 -> 13.4%,
fp8 35.2 -> 16.6% MAPE; H100 / H200 within 0.3 points of before.

A serving step runs every other layer between two calls of one layer's experts, so their
weights have left the L2: the serving path prices ``l2_warm=False`` (gain 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # the fit passes numpy columns; the runtime stays pure Python
    import numpy as np

#: Upper bound of the fitted gain (the GEMM fit's ``L2_GAIN_MAX``: L2 at 5x HBM bandwidth).
L2_GAIN_MAX = 4.0

_Num = TypeVar("_Num", float, "np.ndarray")


def touched_weight_bytes(
    experts_touched: _Num, num_matrices: _Num, hidden: _Num, inter: _Num, weight_bytes: float
) -> _Num:
    """Bytes of the touched local experts' weight matrices (``inter``: the per-rank width)."""
    return experts_touched * num_matrices * hidden * inter * weight_bytes


def l2_read_gain(l2_gain: float, l2_frac: float, weight_bytes: _Num, l2_bytes: float) -> _Num:
    """Speed-up of the expert-weight read when the tables' replays leave the weights in L2:
    ``1 + l2_gain / (1 + x**4)``, ``x = weight_bytes / (l2_frac * l2_bytes)``; 1 without a
    gain or where the GPU's L2 size is unknown (0)."""
    if l2_gain <= 0.0 or l2_bytes <= 0.0:
        return weight_bytes * 0.0 + 1.0
    x = weight_bytes / (l2_frac * l2_bytes)
    return 1.0 + l2_gain / (1.0 + x**4)
