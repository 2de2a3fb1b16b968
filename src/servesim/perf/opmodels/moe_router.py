"""The MoE router's cost and the routing statistics of one EP rank (split from ``moe_layer``).

The router's top-k runs on every EP rank over the whole batch's logits, local experts or not:
vLLM's ``FusedMoE.forward`` calls its router (``fused_topk`` -> the ``topk_softmax`` CUDA kernel,
or ``grouped_topk``) before the experts, and SGLang's MoE layer calls ``select_experts`` on every
rank before dispatch. So it is its own term, charged in full at every EP size, apart from the
grouped-GEMM body and apart from the fused kernel's fixed cost.

Whether a measured table timed it depends on aiconfigurator's collector
(``fitting.moe_collectors.router_timed``): vLLM 0.24's production-path collector times
``FusedMoE.forward(hidden, router_logits)`` (router inside, every EP); the older vLLM collector
(kernel ``vllm_fused_moe``: A100 vLLM 0.14, H200 vLLM 0.22) computes ``torch.topk`` before the
timed ``fused_experts`` call; SGLang's collector runs ``select_experts`` inside the timed
``run_op`` only at EP 1 (``workloads is None``) and feeds precomputed rank-0 top-k at EP > 1.
"""

from __future__ import annotations

import math


def router_s(fixed_s: float, num_tokens: float) -> float:
    """Seconds of the router's top-k on one rank: its launch cost ``fixed_s`` (the kernels of
    ``select_experts`` / ``fused_topk``), the same at every EP size; 0 for no tokens. Its logit
    traffic is left out: at most 16384 tokens x 512 experts x 2 B = 16.8 MB, about 5 us on
    H100 where such a layer takes milliseconds, below the tables' scatter."""
    return fixed_s if num_tokens > 0 else 0.0


def padded_rows(assignments: float, experts_touched: float, tile_rows: float) -> float:
    """Expected rows the grouped GEMM computes under random routing: each touched expert's
    pairs rounded up to the M tile.

    A touched expert's pair count is taken as Poisson with mean ``m = assignments / touched``
    (uniform routing of a serving batch: each expert's count is binomial) conditioned on at
    least one pair, and ``E[ceil(X / tile)] = 1 + sum_j P(X > j tile)`` is summed with a normal
    tail. Few pairs per expert still run one whole tile; many pairs spread over several tiles
    average half a tile of padding; an exactly even split (the collector's balanced routing)
    pads less, which is why the fit passes the tables' exact padded rows instead.
    """
    if experts_touched <= 0.0 or assignments <= 0.0:
        return 0.0
    mean = assignments / experts_touched
    sigma = math.sqrt(mean)
    if sigma >= tile_rows:  # smooth: the remainder is uniform over the tile
        tiles = max(1.0, mean / tile_rows + 0.5)
    else:
        lo = max(1, math.floor((mean - 6.0 * sigma) / tile_rows))
        hi = math.ceil((mean + 6.0 * sigma) / tile_rows)
        tiles = float(lo)  # P(X > j tile) = 1 for j < lo
        for j in range(lo, hi + 1):
            z = (j * tile_rows + 0.5 - mean) / (sigma * math.sqrt(2.0))
            tiles += 0.5 * math.erfc(z)
    return experts_touched * tiles * tile_rows


def expected_max_pairs(assignments: float, experts_touched: float) -> float:
    """Expected pairs of the rank's busiest expert under random routing: the mean plus the
    Gaussian extreme ``sqrt(2 m ln n)`` over ``n`` touched experts (at most all pairs)."""
    if experts_touched <= 0.0 or assignments <= 0.0:
        return 0.0
    mean = assignments / experts_touched
    spread = math.sqrt(2.0 * mean * math.log(experts_touched)) if experts_touched > 1 else 0.0
    return min(assignments, mean + spread)


def correction_coords(
    num_tokens: float,
    topk: int,
    ep: int,
    assignments: float,
    experts_touched: float,
    max_pairs: float,
) -> tuple[float, float, float, float]:
    """Grid coordinates: tokens, pairs per touched expert, the rank's load imbalance (its
    pairs over an even share ``tokens * topk / ep``, at least 1/8), and the expert-level
    concentration (the busiest local expert's pairs over the mean per touched expert, at
    least 1).

    Kernel configs are chosen by token count; skewed routing leaves some experts' tiles nearly
    empty; and at EP 1 the rank imbalance is 1 for any routing, so only the concentration
    tells an even split from a hot expert (H100 vLLM fp8, balanced vs power-law routing at the
    same tokens: up to 1.5x apart where the opmodel's rows are equal). Grids fitted before the
    fourth axis existed read the first three.
    """
    per_expert = max(assignments / max(experts_touched, 1.0), 1.0)
    imbalance = max(assignments * ep / max(num_tokens * topk, 1.0), 0.125)
    concentration = max(max_pairs / per_expert, 1.0)
    return num_tokens, per_expert, imbalance, concentration
