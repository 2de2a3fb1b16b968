"""``PlanCost``: one replica plan's op graph, memo tables and the general iteration price.

Per plan, a ``PlanGraph`` is built once. Per call, the token-dependent part (GEMMs, norms,
MoE, collectives) is cached by the token count, the LM head by the number of sampling
sequences, and the attention is closed-form on the batch aggregates. ``PlanCost.general``
prices any plan; ``servesim.perf.fastcost`` prices the common plan shapes with the same
floating-point operations in fewer Python steps, and is checked against ``general``.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.perf.calibration import Calibration
from servesim.perf.energy import OpEnergy, power_fit_for
from servesim.perf.graph import PlanGraph
from servesim.perf.memory import check_plan
from servesim.perf.types import BatchShape, OpCost, ReplicaPlan, StageTimes


@dataclass(frozen=True, slots=True)
class StagePart:
    """Summed costs of a group of ops, per stage."""

    stage_s: tuple[float, ...]
    kernels: tuple[int, ...]
    flops: float  # per GPU summed over stages (x tp later)
    num_bytes: float
    energy_j: float  # per GPU summed over stages (x tp later)
    comm_s: float = 0.0  # time of the collectives among the ops, summed over stages


def sum_ops(ops: list[OpCost], num_stages: int, energy: OpEnergy) -> StagePart:
    """Per-stage time and kernel count, and total FLOPs, HBM bytes and energy of ``ops``."""
    times = [0.0] * num_stages
    kernels = [0] * num_stages
    flops = nbytes = joules = comm_s = 0.0
    for op in ops:
        times[op.stage] += op.time_s
        kernels[op.stage] += op.count
        flops += op.flops
        joules += energy.op_j(op)
        if op.bound != "comm":
            nbytes += op.num_bytes
        else:
            comm_s += op.time_s
    return StagePart(tuple(times), tuple(kernels), flops, nbytes, joules, comm_s)


class PlanCost:
    """Per-plan graph, energy and host models, and the memo tables of the token-only parts.

    The memo tables are bounded by the batch limits: one entry per distinct token count
    (at most ``max_num_batched_tokens``) and per distinct number of sampling sequences.
    """

    __slots__ = ("by_sampling", "by_tokens", "energy", "graph", "host", "mla", "plan")

    def __init__(
        self, plan: ReplicaPlan, calibration: Calibration, graph: PlanGraph | None = None
    ) -> None:
        check_plan(plan)
        self.plan = plan
        # which CUDA graphs the engine replays and its per-step CPU time (servesim.perf.host)
        self.host = calibration.host_profile(plan.host_profile)
        # a subclass's graph may price some ops elsewhere (perf/dp_cost.py: a DP rank's MoE)
        self.graph = graph if graph is not None else PlanGraph(plan, calibration)
        fit = power_fit_for(calibration, plan.gpu)
        self.energy = OpEnergy(fit, plan.gpu, self.graph.peak, self.graph.peak16)
        self.by_tokens: dict[int, StagePart] = {}
        self.by_sampling: dict[int, StagePart] = {}
        self.mla: dict[tuple[int, int], StagePart] = {}

    def token_part(self, tokens: int) -> StagePart:
        """Summed token-dependent ops (GEMMs, norms, MoE, collectives) for ``tokens``."""
        part = self.by_tokens.get(tokens)
        if part is None:
            ops = self.graph.token_ops(tokens)
            part = self.by_tokens[tokens] = sum_ops(ops, self.plan.pp, self.energy)
        return part

    def head_part(self, num_sampling: int) -> StagePart:
        """Summed LM-head and sampling ops for ``num_sampling`` sequences."""
        head = self.by_sampling.get(num_sampling)
        if head is None:
            ops = self.graph.head_ops(num_sampling)
            head = self.by_sampling[num_sampling] = sum_ops(ops, self.plan.pp, self.energy)
        return head

    def mla_part(self, batch: BatchShape) -> StagePart:
        """MLA's absorbed-weight and kv_b GEMMs of ``batch`` (by decode seqs, prefill tokens)."""
        key = (batch.num_decode_seqs, batch.num_prefill_tokens)
        extra = self.mla.get(key)
        if extra is None:
            ops = self.graph.extra_mla_decode(batch)
            extra = self.mla[key] = sum_ops(ops, self.plan.pp, self.energy)
        return extra

    def general(self, batch: BatchShape) -> StageTimes:
        """The iteration price of ``batch`` for any plan (the reference path)."""
        plan, graph = self.plan, self.graph
        if batch.is_empty:
            return StageTimes(stage_s=(0.0,) * plan.pp)
        tokens = batch.num_tokens
        part = self.token_part(tokens)
        head = self.head_part(
            batch.num_prefill_seqs + batch.num_decode_seqs + batch.num_extra_logits
        )
        stage_s = [a + b for a, b in zip(part.stage_s, head.stage_s, strict=True)]
        kernels = [a + b for a, b in zip(part.kernels, head.kernels, strict=True)]
        flops = part.flops + head.flops
        nbytes = part.num_bytes + head.num_bytes
        joules = part.energy_j + head.energy_j
        comm_s = part.comm_s + head.comm_s  # MLA's extra GEMMs and attention: no collectives
        if graph.shapes.is_mla:
            extra = self.mla_part(batch)
            stage_s = [a + b for a, b in zip(stage_s, extra.stage_s, strict=True)]
            flops += extra.flops
            nbytes += extra.num_bytes
            joules += extra.energy_j
        pre, dec = graph.attention(batch)
        per_layer_s = pre.time_s + dec.time_s
        num_calls = (pre.time_s > 0) + (dec.time_s > 0)
        for stage, layers in enumerate(graph.stages):
            n = len(layers)
            stage_s[stage] += per_layer_s * n
            kernels[stage] += num_calls * n
        num_layers = plan.model.num_layers
        flops += (pre.flops + dec.flops) * num_layers
        nbytes += (pre.num_bytes + dec.num_bytes) * num_layers
        energy = self.energy
        for op_class, cost in (("attention_prefill", pre), ("attention_decode", dec)):
            if cost.time_s > 0:  # per layer x layers: same utilisation, num_layers kernels
                joules += num_layers * energy.kernel_j(
                    op_class, cost.flops, cost.num_bytes, cost.time_s, 1, energy.peak16
                )
        return self._finish(batch, tokens, stage_s, kernels, flops, nbytes, joules, comm_s)

    def _finish(
        self,
        batch: BatchShape,
        tokens: int,
        stage_s: list[float],
        kernels: list[int],
        flops: float,
        nbytes: float,
        joules: float,
        comm_s: float,
    ) -> StageTimes:
        """Launch waits, host time and idle energy on top of the kernels' stage times."""
        plan, host = self.plan, self.host
        kernel_s = sum(stage_s)
        # speculative verify chunks are decode steps to the engine (graphs, host work)
        num_prefills = batch.num_prefill_seqs - batch.num_verify_seqs
        if not (plan.use_cuda_graphs and host.replays_graph(tokens, num_prefills)):
            # eager mode: the CPU must launch every kernel; the GPU waits when it is faster
            stage_s = [max(t, k * host.launch_s) for t, k in zip(stage_s, kernels, strict=True)]
        # CPU work of the step; an engine that overlaps it with the GPU (V1 async scheduling,
        # SGLang's overlap scheduler) hides it under the slowest stage (servesim.perf.host)
        overhead = host.host_time_s(
            batch.num_decode_seqs + batch.num_verify_seqs, num_prefills, tokens, gpu_s=max(stage_s)
        )
        # GPUs wait, clocked up, through launch waits (their stage) and host time (all stages)
        joules += self.energy.idle_j(sum(stage_s) - kernel_s + overhead * plan.pp)
        # flops/bytes/energy above are per GPU of a stage; the replica holds tp GPUs per stage
        return StageTimes(
            stage_s=tuple(stage_s),
            overhead_s=overhead,
            flops=flops * plan.tp,
            hbm_bytes=nbytes * plan.tp,
            energy_j=joules * plan.tp,
            comm_s=comm_s,
        )
