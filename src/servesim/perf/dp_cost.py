"""Iteration prices of a data-parallel-attention group: D ranks sharing their experts.

vLLM's ``--data-parallel-size D --enable-expert-parallel`` (SGLang's ``--enable-dp-attention``,
"wide EP") runs D engine ranks, each with its own scheduler and KV cache, attention and dense
layers sharded TP=t inside the rank, while every MoE layer's routed experts are spread whole
over all t x D GPUs (EP = TP x DP; each GPU holds E / (tD) experts). Every MoE layer is a
collective over all ranks: each rank's tokens are dispatched by all-to-all to the GPUs holding
their experts and combined back (vLLM ``FusedMoE`` with the all2all managers of
``vllm/distributed/device_communicators/all2all.py``; DeepEP/pplx kernels).

So one group iteration costs the slowest rank's own work plus the expert work of all ranks'
tokens together. How the tokens reach the experts is vLLM's ``VLLM_ALL2ALL_BACKEND``:
``allgather_reducescatter`` (vLLM's default, ``vllm/envs.py``) all-gathers every rank's
hidden states to every GPU, runs the fused MoE there over all tokens with the GPU's local
experts, and reduce-scatters the outputs back; ``all_to_all`` (``deepep_high_throughput``,
``deepep_low_latency``, ``pplx``) sends each GPU only the token-expert pairs it computes.
Two prices:

- ``DPGroupCost.iteration_time(rank_plan, shape)``: a rank's own part: everything the plain
  op graph prices except the routed experts (attention, dense layers, router, shared experts,
  the TP all-reduces inside the rank, LM head, host time), via ``RankGraph``;
- ``DPGroupCost.experts(tokens)``: the routed experts on the busiest of the tD GPUs for the
  group's summed tokens (the existing ``graph_moe.moe_mlp`` block priced on the expert view
  of the plan, tp = ep = tD), with the backend's dispatch and combine over tD GPUs.

A group larger than a server (or split over servers by the placement) exchanges its tokens
over the inter-node network (``GroupSpan``, from the cluster's nodes): the all-gather and
reduce-scatter are rings through every GPU, so each step crosses a NIC and the bandwidth term
is the NIC's (nccl-tests ``doc/PERFORMANCE.md``: inter-node bus bandwidth is bounded by the
per-GPU network rate); an all-to-all (DeepEP, pplx) sends each GPU's off-node share, (tD -
g) / tD of its buffer for g of the group's GPUs on its node, through its own NIC while the
on-node share moves over NVLink, so it takes the longer of the two (DeepEP's internode
kernels: RDMA to the peer node, NVLink forwarding inside it; its README reports the RDMA
"bottleneck bandwidth" of a 400 Gb/s ConnectX-7 NIC, 43-58 GB/s, as the limit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from servesim.core.errors import ConfigError
from servesim.perf.calibration import Calibration
from servesim.perf.fastcost import FastCost
from servesim.perf.graph import PlanGraph
from servesim.perf.graph_moe import moe_mlp
from servesim.perf.graph_ops import ACT_BYTES, OpPricer
from servesim.perf.memory import check_dp_attention, check_plan, plan_memory
from servesim.perf.moe import expert_frequencies
from servesim.perf.plan_cost import PlanCost, StagePart, sum_ops
from servesim.perf.shapes import is_moe_layer
from servesim.perf.types import BatchShape, MemoryPlan, OpCost, ReplicaPlan, StageTimes
from servesim.specs.gpu import LinkSpec

# The ops of ``moe_mlp`` that the group runs together: the routed experts and, with an
# all-to-all backend, the dispatch/combine all-to-alls. Router and shared experts stay in each
# rank (vLLM computes them on the rank's own tokens, shared experts TP-sharded in the rank).
GROUP_MOE_OPS = {
    "allgather_reducescatter": frozenset({"moe_experts"}),
    "all_to_all": frozenset({"moe_experts", "ep_dispatch", "ep_combine"}),
}
# vLLM's VLLM_ALL2ALL_BACKEND choices and how each moves the tokens
ALL2ALL_BACKENDS = {
    "allgather_reducescatter": "allgather_reducescatter",
    "naive": "allgather_reducescatter",  # broadcasts + all-reduce: the same bytes, gathered
    "deepep_high_throughput": "all_to_all",
    "deepep_low_latency": "all_to_all",
    "pplx": "all_to_all",
}
_EXPERTS_MEMO_LIMIT = 65_536
# Where the dense MLP layers of a MoE model (DeepSeek-V3's first three) run in a group, and
# how many ways their weights are split (``dense_tp``: 0 = the rank's TP):
# - ``rank``: at the rank's TP on its own tokens (vLLM: DP ranks meet only in MoE layers,
#   docs/serving/data_parallel_deployment.md);
# - ``group``: at TP = tp x D on the group's gathered tokens (SGLang's default: the dense
#   layer's ScatterMode.FULL in layers/communicator.py ``_compute_mlp_mode``, tokens moved by
#   ``dp_gather``/``dp_scatter`` of layers/dp_attention.py);
# - ``replicated``: whole on every GPU, each on its share of the rank's tokens (SGLang's
#   ``--moe-dense-tp-size 1``: ScatterMode.SCATTERED, ``enable_moe_dense_fully_dp``).
DENSE_MLP_MODES = ("rank", "group", "replicated")


@dataclass(frozen=True, slots=True)
class GroupSpan:
    """A DP-attention group's GPUs spread over servers (None in ``DPGroupCost``: one server).

    Attributes:
        network: the per-GPU share of the inter-node network between the servers
            (``NodeSpec.network_link``; the slowest of the servers' when they differ).
        local_gpus: the fewest of the group's GPUs on one server (its GPUs send the largest
            off-node share of an all-to-all).
    """

    network: LinkSpec
    local_gpus: int


class RankGraph(PlanGraph):
    """A data-parallel-attention rank's op graph: its MoE block without the routed experts
    (the group prices those once for all ranks' tokens), its dense MLP layers where
    ``dense_mlp`` runs them (``DENSE_MLP_MODES``)."""

    def __init__(self, plan: ReplicaPlan, calibration: Calibration, dense_mlp: str = "rank"):
        super().__init__(plan, calibration)
        self.dense_mlp = dense_mlp
        # --moe-dense-tp-size 1: the whole MLP on one GPU
        self.solo = (
            PlanGraph(replace(plan, tp=1), calibration) if dense_mlp == "replicated" else None
        )

    def _dense_mlp(self, stage: int, count: int, tokens: int) -> list[OpCost]:
        """The rank's dense MLP layers: at its TP (``rank``), none (``group``: priced with
        the group), or whole on each GPU for its 1/tp of the tokens, no reduction."""
        if self.solo is not None:
            share = -(-tokens // self.plan.tp)
            ops = self.solo._dense_mlp(stage, count, share)
            return [op for op in ops if op.bound != "comm"]
        return [] if self.dense_mlp == "group" else super()._dense_mlp(stage, count, tokens)

    def moe_block(self, stage: int, count: int, tokens: int) -> list[OpCost]:
        """Router, shared experts and the rank's TP all-reduce of the MoE output."""
        return [op for op in super().moe_block(stage, count, tokens) if op.name != "moe_experts"]


class DPGroupCost:
    """Prices of one data-parallel-attention group of ``dp`` ranks running ``plan`` each (a
    ``PerfModel`` of the rank plan: its own part and its memory, plus ``experts``).

    Args:
        plan: one rank's plan (tp = the rank's TP, pp = 1, ep = 1).
        dp: ranks in the group (EP = plan.tp x dp).
        calibration: the roofline perf model's calibration.
        fast_path: price the ranks with ``FastCost`` (bit-identical to the general path).
        all2all: vLLM's all2all backend (``ALL2ALL_BACKENDS``; module docstring).
        span: the servers the group's GPUs spread over (None: one server, NVLink).
        dense_mlp: where the dense MLP layers of the model run (``DENSE_MLP_MODES``).
    """

    def __init__(
        self,
        plan: ReplicaPlan,
        dp: int,
        calibration: Calibration,
        *,
        fast_path: bool = True,
        all2all: str = "allgather_reducescatter",
        span: GroupSpan | None = None,
        dense_mlp: str = "rank",
    ) -> None:
        check_dp_attention(plan, dp)
        check_dense_mlp(plan, dp, dense_mlp)
        if all2all not in ALL2ALL_BACKENDS:
            known = ", ".join(ALL2ALL_BACKENDS)
            raise ConfigError("all2all_backend", all2all, f"must be one of {known}")
        self.plan, self.dp, self.all2all = plan, dp, ALL2ALL_BACKENDS[all2all]
        self.ep = plan.tp * dp
        if span is not None and not 1 <= span.local_gpus < self.ep:
            raise ConfigError("span.local_gpus", span.local_gpus, f"must be in [1, {self.ep})")
        self.span, self.dense_mlp = span, dense_mlp
        graph = RankGraph(plan, calibration, dense_mlp)
        self.rank_cost = PlanCost(plan, calibration, graph)
        self._rank: Callable[[BatchShape], StageTimes] = (
            FastCost(self.rank_cost) if fast_path else self.rank_cost.general
        )
        # The expert view: experts whole (tp // ep = 1) over tD GPUs, on the rank's link.
        self.expert_view = OpPricer(replace(plan, tp=self.ep, ep=self.ep), calibration)
        # Rings across servers run at the network's rate (module docstring).
        self.ring_view = self.expert_view
        if span is not None:
            ring_plan = replace(plan, tp=self.ep, ep=self.ep, tp_link=span.network)
            self.ring_view = OpPricer(ring_plan, calibration)
        moe = plan.model.moe
        assert moe is not None  # check_dp_attention
        self.freq: np.ndarray = expert_frequencies(
            moe, plan.expert_popularity, plan.expert_zipf_exponent
        )
        self.num_moe_layers = sum(is_moe_layer(plan.model, i) for i in range(plan.model.num_layers))
        self.num_dense_layers = plan.model.num_layers - self.num_moe_layers
        self._experts: dict[int, StagePart] = {}

    @property
    def key(self) -> tuple[object, ...]:
        """What the prices depend on: groups with equal keys share one cost and its memos."""
        return (self.plan, self.dp, self.all2all, self.span, self.dense_mlp)

    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        """A rank's own part of an iteration of ``batch`` (``plan`` must be the rank's)."""
        if plan != self.plan:
            raise ValueError(f"DPGroupCost prices {self.plan.model.name} ranks only")
        return self._rank(batch)

    def memory_plan(
        self,
        plan: ReplicaPlan,
        *,
        block_size_tokens: int = 16,
        gpu_memory_utilization: float = 0.9,
        max_num_batched_tokens: int = 8192,
    ) -> MemoryPlan:
        """One rank GPU's memory: its layers at its TP, E / (tp x dp) whole experts, the
        dense MLP layers split as ``dense_mlp`` runs them."""
        check_plan(plan)
        return plan_memory(
            plan,
            block_size_tokens=block_size_tokens,
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_batched_tokens=max_num_batched_tokens,
            expert_ep=plan.tp * self.dp,
            dense_tp=dense_tp(plan, self.dp, self.dense_mlp),
        )

    def experts(self, tokens: int) -> StagePart:
        """The group's shared work for ``tokens`` tokens of all ranks together: time on one
        GPU (the busiest), FLOPs, bytes and energy per GPU, all MoE layers (and the dense MLP
        layers under ``dense_mlp="group"``)."""
        part = self._experts.get(tokens)
        if part is None:
            ops: list[OpCost] = []
            if tokens > 0:
                view, count = self.expert_view, self.num_moe_layers
                block = moe_mlp(view, self.freq, 0, count, tokens)
                ops = [op for op in block if op.name in GROUP_MOE_OPS[self.all2all]]
                if self.all2all == "allgather_reducescatter":
                    # every GPU gathers all ranks' hidden states, then scatters the sums back
                    nbytes = tokens * self.plan.model.hidden_size * ACT_BYTES
                    ring, ep = self.ring_view, self.ep
                    ops.append(ring.comm("dp_all_gather", "all_gather", 0, count, ep, nbytes))
                    ops.append(
                        ring.comm("dp_reduce_scatter", "reduce_scatter", 0, count, ep, nbytes)
                    )
                elif self.span is not None:
                    ops = [self._spread_all_to_all(op) for op in ops]
                if self.dense_mlp == "group" and self.num_dense_layers:
                    ops.extend(self._group_dense(tokens))
            if len(self._experts) >= _EXPERTS_MEMO_LIMIT:
                self._experts.clear()
            part = self._experts[tokens] = sum_ops(ops, 1, self.rank_cost.energy)
        return part

    def _group_dense(self, tokens: int) -> list[OpCost]:
        """The dense MLP layers at TP = tp x D on the group's gathered tokens: the gather to
        every GPU, the two GEMMs on its 1/(tp x D) of the FFN, the reduce-scatter back."""
        m, view, ring = self.plan.model, self.expert_view, self.ring_view
        n, ep, h = self.num_dense_layers, self.ep, m.hidden_size
        ffn = m.ffn_size // ep
        up = ffn * (2 if m.is_gated_mlp else 1)
        nbytes = tokens * h * ACT_BYTES
        act_bytes = (6.0 if m.is_gated_mlp else 4.0) * tokens * ffn
        return [
            ring.comm("dense_all_gather", "all_gather", 0, n, ep, nbytes),
            view.gemm("dense_up_gate", 0, n, tokens, h, up, group="dense_mlp"),
            view.elementwise("dense_act", "activation", 0, n, act_bytes),
            view.gemm("dense_down", 0, n, tokens, ffn, h, group="dense_mlp"),
            ring.comm("dense_reduce_scatter", "reduce_scatter", 0, n, ep, nbytes),
        ]

    def _spread_all_to_all(self, op: OpCost) -> OpCost:
        """``op`` (a dispatch or combine priced on one server) across the group's servers:
        the longer of the on-node share over NVLink and the off-node share over the NIC."""
        if op.name not in ("ep_dispatch", "ep_combine"):
            return op
        span, n = self.span, self.ep
        assert span is not None  # only called with a span
        g = span.local_gpus
        nbytes = op.num_bytes / op.count  # one GPU's send buffer, one layer
        net = span.network
        off_s = net.latency_s + (n - g) / n * nbytes / net.bandwidth_bytes_per_s
        on = self.expert_view.comm(op.name, "all_to_all", 0, 1, g, nbytes * g / n)
        time_s = max(off_s, on.time_s) * op.count
        return replace(op, time_s=time_s)

    def idle_j(self, seconds: float) -> float:
        """Energy of one rank's GPUs waiting ``seconds`` for the others (clocked up)."""
        return self.rank_cost.energy.idle_j(seconds) * self.plan.tp


def check_dense_mlp(plan: ReplicaPlan, dp: int, dense_mlp: str) -> None:
    """A dense-MLP mode the group can run (``DENSE_MLP_MODES``; ``group`` splits the FFN
    tp x dp ways)."""
    if dense_mlp not in DENSE_MLP_MODES:
        raise ConfigError("dense_mlp", dense_mlp, f"must be one of {', '.join(DENSE_MLP_MODES)}")
    m, ffn = plan.model, plan.model.ffn_size
    has_dense = not all(is_moe_layer(m, i) for i in range(m.num_layers))
    if dense_mlp == "group" and has_dense and ffn % (plan.tp * dp):
        raise ConfigError("dense_mlp", dense_mlp, f"tp x dp = {plan.tp * dp} must divide {ffn}")


def dense_tp(plan: ReplicaPlan, dp: int, dense_mlp: str) -> int:
    """How many ways a rank GPU's dense MLP weights are split (0: the rank's TP)."""
    return {"rank": 0, "group": plan.tp * dp, "replicated": 1}[dense_mlp]
