"""The mixture-of-experts FFN block of the op graph (``PlanGraph.token_ops`` calls it for the
MoE layers of each stage): router, grouped expert GEMMs on the busiest device, shared experts,
and the expert-parallel collectives."""

from __future__ import annotations

import numpy as np

from servesim.perf.graph_ops import ACT_BYTES, OpPricer
from servesim.perf.kernel_shapes import MoeShape
from servesim.perf.kernels import gemm_compute_eff
from servesim.perf.moe import busiest_device
from servesim.perf.types import OpCost


def moe_mlp(p: OpPricer, freq: np.ndarray, stage: int, count: int, tokens: int) -> list[OpCost]:
    """The MoE FFN of ``count`` layers: router, routed experts on the busiest device, shared
    experts, and the all-reduce (EP 1) or the dispatch/combine all-to-alls (EP > 1).

    The router is two parts: its gate GEMM (``moe_router`` here) and its top-k, which
    ``moe_experts`` prices (``opmodels.moe_router.router_s``, the same at every EP size: every
    rank routes the whole batch, as vLLM's ``FusedMoE.forward`` and SGLang's ``select_experts``
    do)."""
    moe = p.model.moe
    assert moe is not None  # only called for MoE layers
    h = p.model.hidden_size
    tp, ep = p.plan.tp, p.plan.ep
    ffn = moe.expert_ffn_size // (tp // ep)
    mats = 3 if p.model.is_gated_mlp else 2
    ops = [p.gemm("moe_router", stage, count, tokens, h, moe.num_experts, quantised=False)]
    load = busiest_device(freq, tokens, moe.num_experts_per_token, ep)
    if load.assignments > 0:
        ops.append(
            _experts(p, stage, count, tokens, load.assignments, load.experts_touched, h, ffn, mats)
        )
    if moe.num_shared_experts:
        width = moe.num_shared_experts * moe.shared_expert_ffn_size // tp
        up = width * (mats - 1)
        ops.append(p.gemm("shared_up_gate", stage, count, tokens, h, up, group="shared_experts"))
        ops.append(p.gemm("shared_down", stage, count, tokens, width, h, group="shared_experts"))
    if ep == 1:
        ops.append(p.comm("all_reduce_moe", "all_reduce", stage, count, tp, tokens * h * ACT_BYTES))
    else:
        a2a = tokens * moe.num_experts_per_token * h * ACT_BYTES / ep
        ops.append(p.comm("ep_dispatch", "all_to_all", stage, count, ep, a2a))
        ops.append(p.comm("ep_combine", "all_to_all", stage, count, ep, a2a))
        ops.append(p.comm("ep_all_gather", "all_gather", stage, count, ep, tokens * h * ACT_BYTES))
    return ops


def _experts(
    p: OpPricer,
    stage: int,
    count: int,
    tokens: int,
    pairs: float,
    touched: float,
    h: int,
    ffn: int,
    mats: int,
) -> OpCost:
    """Grouped expert GEMMs on the busiest device: FLOPs of its token-expert pairs, bytes
    of the experts it touches, efficiency of the per-expert token count."""
    g = p.groups["experts"]
    flops = 2.0 * pairs * mats * h * ffn
    weights = touched * mats * h * ffn * g.weight_bytes
    acts = pairs * (2 * h + (mats - 1) * ffn + ffn) * ACT_BYTES
    per_expert = max(1.0, pairs / max(touched, 1.0))
    curve = p.cal.gemm
    t_c = flops / (g.peak_flops_per_s * gemm_compute_eff(curve, per_expert, h, ffn))
    bound = "compute" if t_c >= (weights + acts) / (p.bw * curve.mem_eff) else "memory"
    moe = p.model.moe
    assert moe is not None  # only called for MoE layers
    shape = MoeShape(
        num_tokens=int(tokens),
        hidden=h,
        inter=ffn,
        topk=moe.num_experts_per_token,
        num_experts=moe.num_experts,
        ep=p.plan.ep,
        assignments=pairs,
        experts_touched=touched,
        num_matrices=mats,
        label=g.moe_label,
        weight_bytes=g.weight_bytes,
    )
    t = p.kernels.moe_experts_s(shape, g.peak_flops_per_s)
    return OpCost(
        "moe_experts",
        p.scope(stage, count),
        count,
        flops * count,
        (weights + acts) * count,
        bound,
        t * count,
        stage,
    )
