"""``DPGroup``: the lockstep iterations of a data-parallel-attention group of engine ranks.

vLLM's ``--data-parallel-size D --enable-expert-parallel`` runs D engine cores
(``vllm/v1/engine/core.py``: ``DPEngineCoreProc``), each with its own scheduler, request
queue and KV cache; the experts of every MoE layer are spread over all ranks' GPUs, so each
MoE layer is a collective over the group and the ranks' forward passes advance together.
A rank with nothing to run while another has work runs a dummy batch
(``DPEngineCoreProc.run_busy_loop`` -> ``execute_dummy_batch``: a one-token forward) so that
its peers' collectives complete; the group pauses only when no rank has work left (the end
of a "wave").

Here the group starts every rank's step at one instant: each rank forms its batch (or none:
a dummy step), each busy rank is priced for its own part (attention, dense layers, router,
shared experts, host time: ``DPGroupCost.iteration_time``), and the routed experts once for
all ranks' tokens together at EP = tp x D with their all-to-all dispatch and combine
(``DPGroupCost.experts``). The step ends for every rank at

    start + max over ranks (host + swap copy + own GPU time) + experts(summed tokens),

so an idle rank's dummy step ends with the busy ranks' step: a request reaching an idle rank
mid-step waits for the group's next step, as in vLLM. Skip-ahead is off for the ranks (a
rank's run of decodes is changed by what the other ranks do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from servesim.core.errors import ConfigError
from servesim.core.events import EventLoop, EventPriority
from servesim.engine.batch import Batch
from servesim.engine.config import CacheConfig
from servesim.engine.setup import ReplicaSetup
from servesim.engine.vengine import VirtualEngine
from servesim.perf.dp_cost import DPGroupCost, GroupSpan, check_dense_mlp, dense_tp
from servesim.perf.kv_groups import vllm_block_size
from servesim.perf.memory import check_dp_attention, check_plan, plan_memory
from servesim.perf.types import BatchShape, MemoryPlan, ReplicaPlan, StageTimes


class DPGroupSpec(NamedTuple):
    """One data-parallel-attention group of a simulation's replicas.

    Attributes:
        first: index of its first replica (rank 0); ranks are consecutive replicas.
        num_ranks: ranks in the group (D).
        all2all: vLLM's all2all backend (``perf.dp_cost.ALL2ALL_BACKENDS``).
        span: the servers its GPUs spread over (None: one server, NVLink).
        dense_mlp: where the model's dense MLP layers run (``perf.dp_cost.DENSE_MLP_MODES``).
    """

    first: int
    num_ranks: int
    all2all: str = "allgather_reducescatter"
    span: GroupSpan | None = None
    dense_mlp: str = "rank"


# vLLM's dummy batch: ``execute_dummy_batch`` runs the model on one token.
DUMMY_SHAPE = BatchShape(num_decode_seqs=1, decode_context_tokens=1, max_decode_context_tokens=1)


class DPGroup:
    """D engine ranks stepping together (see module docstring).

    Args:
        engines: one virtual engine per rank (their replicas have pp = 1), in rank order.
        cost: the group's prices.
        loop: the shared event loop.
    """

    def __init__(self, engines: Sequence[VirtualEngine], cost: DPGroupCost, loop: EventLoop):
        if len(engines) != cost.dp:
            raise ValueError(f"a group of dp={cost.dp} needs {cost.dp} engines, got {len(engines)}")
        self.engines = list(engines)
        self.cost = cost
        self.loop = loop
        self.busy = False
        self.num_steps = 0  # group steps run (tests, reports)
        dummy = cost.iteration_time(cost.plan, DUMMY_SHAPE)
        self.dummy_s = dummy.overhead_s + dummy.stage_s[0]
        for engine in self.engines:
            engine.group = self

    def wake(self, now: float) -> None:
        """A rank got work: start a group step now unless one is running (the rank's work
        then joins the next step)."""
        if not self.busy:
            self.busy = True
            self.loop.schedule(now, self.start, now, priority=EventPriority.STEP_START)

    def start(self, now: float) -> None:
        """Form every rank's batch and book the group step, or go idle when none has work."""
        batches = [engine.form(now) for engine in self.engines]
        if all(batch is None for batch in batches):
            self.busy = False
            return
        self.busy = True
        self.num_steps += 1
        span, times = self.price(batches)
        self.loop.schedule(
            now + span, self._complete, batches, times, priority=EventPriority.STEP_END
        )

    def price(self, batches: list[Batch | None]) -> tuple[float, list[StageTimes | None]]:
        """The group step's duration and each busy rank's times (None for a dummy step)."""
        cost = self.cost
        own: list[tuple[StageTimes, float] | None] = []
        slowest = 0.0
        tokens = 0
        for engine, batch in zip(self.engines, batches, strict=True):
            if batch is None:
                own.append(None)
                slowest = max(slowest, self.dummy_s)
                tokens += DUMMY_SHAPE.num_tokens
                continue
            times, host_s = engine.times(batch)
            own.append((times, host_s))
            slowest = max(slowest, times.overhead_s + host_s + times.stage_s[0])
            tokens += batch.num_prefill_tokens + len(batch.decodes)
        experts = cost.experts(tokens)
        moe_s = experts.stage_s[0]
        span = slowest + moe_s
        tp = cost.plan.tp
        out: list[StageTimes | None] = []
        for part in own:
            if part is None:
                out.append(None)
                continue
            times, host_s = part
            wait_s = slowest - (times.overhead_s + host_s + times.stage_s[0])
            out.append(
                StageTimes(
                    stage_s=(span - times.overhead_s - host_s,),
                    overhead_s=times.overhead_s,
                    # the experts' per-GPU work on each of this rank's tp GPUs
                    flops=times.flops + experts.flops * tp,
                    hbm_bytes=times.hbm_bytes + experts.num_bytes * tp,
                    energy_j=times.energy_j + experts.energy_j * tp + cost.idle_j(wait_s),
                    comm_s=times.comm_s + experts.comm_s,
                )
            )
        return span, out

    def _complete(self, batches: list[Batch | None], times: list[StageTimes | None]) -> None:
        """The group step has run: every busy rank books its batch, then the next step."""
        for engine, batch, rank_times in zip(self.engines, batches, times, strict=True):
            if batch is not None:
                assert rank_times is not None  # priced with its batch
                engine.finish(batch, rank_times)
        self.start(self.loop.now)


def rank_memory_plan(
    plan: ReplicaPlan,
    dp: int,
    cache: CacheConfig,
    max_num_batched_tokens: int,
    dense_mlp: str = "rank",
) -> MemoryPlan:
    """Memory of one GPU of a rank of a ``dp``-rank data-parallel-attention group: the
    rank's own layers at its TP, E / (tp x dp) whole experts, the dense MLP layers split as
    ``dense_mlp`` runs them (``perf.memory``, ``perf.dp_cost.dense_tp``)."""
    check_plan(plan)
    check_dp_attention(plan, dp)
    check_dense_mlp(plan, dp, dense_mlp)
    return plan_memory(
        plan,
        # vLLM's raised block for linear-attention hybrids (idempotent on a raised cache)
        block_size_tokens=vllm_block_size(plan, cache.block_size),
        gpu_memory_utilization=cache.gpu_memory_utilization,
        max_num_batched_tokens=max_num_batched_tokens,
        expert_ep=plan.tp * dp,
        dense_tp=dense_tp(plan, dp, dense_mlp),
    )


def check_rank(replica_id: int, setup: ReplicaSetup) -> None:
    """A data-parallel-attention rank runs the plain engine loop: one stage, no features
    priced per step outside the group's cost (speculation, LoRA, hybrid)."""
    for name, value in (
        ("speculative", setup.speculative),
        ("lora", setup.lora),
        ("hybrid", setup.hybrid),
    ):
        if value is not None:
            raise ConfigError(name, "with dp_attention", "is not modelled for DP-attention ranks")
    if setup.role != "unified":
        raise ConfigError("role", setup.role, "DP-attention ranks must be unified")
    if setup.plan.pp != 1:
        raise ConfigError("pp", setup.plan.pp, f"replica {replica_id}: DP-attention needs pp=1")
