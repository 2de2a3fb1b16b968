"""``RooflinePerfModel``: the default ``PerfModel`` — op graph, calibrated roofline, memo caches.

The engine calls ``iteration_time`` millions of times. Per plan, a ``PlanGraph`` is built once
(keyed by object identity, the plan kept alive beside it); per call, the token-dependent part
(GEMMs, norms, MoE, collectives) is cached by the token count, the LM head by the number of
sampling sequences, the attention is closed-form on the aggregates, and the whole answer is
cached by the ``BatchShape``.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.perf.calibration import Calibration, load_calibration
from servesim.perf.energy import OpEnergy, power_fit_for
from servesim.perf.graph import PlanGraph
from servesim.perf.memory import check_plan, plan_memory
from servesim.perf.types import BatchShape, MemoryPlan, OpCost, ReplicaPlan, StageTimes


@dataclass(frozen=True, slots=True)
class _StagePart:
    """Summed costs of a group of ops, per stage."""

    stage_s: tuple[float, ...]
    kernels: tuple[int, ...]
    flops: float  # per GPU summed over stages (x tp later)
    num_bytes: float
    energy_j: float  # per GPU summed over stages (x tp later)


def _sum_ops(ops: list[OpCost], num_stages: int, energy: OpEnergy) -> _StagePart:
    times = [0.0] * num_stages
    kernels = [0] * num_stages
    flops = nbytes = joules = 0.0
    for op in ops:
        times[op.stage] += op.time_s
        kernels[op.stage] += op.count
        flops += op.flops
        joules += energy.op_j(op)
        if op.bound != "comm":
            nbytes += op.num_bytes
    return _StagePart(tuple(times), tuple(kernels), flops, nbytes, joules)


class _PlanCache:
    """Per-plan graph and memo tables."""

    __slots__ = (
        "by_batch",
        "by_sampling",
        "by_tokens",
        "energy",
        "graph",
        "host",
        "mla",
        "old_batches",
        "plan",
    )

    def __init__(self, plan: ReplicaPlan, calibration: Calibration) -> None:
        check_plan(plan)
        self.plan = plan
        # which CUDA graphs the engine replays and its per-step CPU time (servesim.perf.host)
        self.host = calibration.host_profile(plan.host_profile)
        self.graph = PlanGraph(plan, calibration)
        fit = power_fit_for(calibration, plan.gpu)
        self.energy = OpEnergy(fit, plan.gpu, self.graph.peak, self.graph.peak16)
        self.by_tokens: dict[int, _StagePart] = {}
        self.by_sampling: dict[int, _StagePart] = {}
        self.mla: dict[tuple[int, int], _StagePart] = {}
        # Two generations of the batch memo: new answers go to ``by_batch``; when it holds half
        # the bound it becomes ``old_batches`` (the previous old one is dropped), and a hit in
        # the old generation is promoted. An O(1) approximation of LRU: what a run keeps asking
        # for survives, the memory stays bounded.
        self.by_batch: dict[BatchShape, StageTimes] = {}
        self.old_batches: dict[BatchShape, StageTimes] = {}


class RooflinePerfModel:
    """Iteration time and memory of a replica from its op graph (see module docstring).

    Args:
        calibration: fitted curves; the packaged ``calibration.json`` by default.
        max_cached_batches: bound on the per-plan batch memo (two generations of half the
            bound each; ~370 bytes per entry, so the default holds it near 37 MB per plan).
            Decode shapes rarely repeat exactly (the context sum grows every step), so a large
            memo buys little speed (bench/bench_engine.py) and costs memory on long runs.
    """

    def __init__(
        self, calibration: Calibration | None = None, max_cached_batches: int = 100_000
    ) -> None:
        self.calibration = calibration if calibration is not None else load_calibration()
        self.max_cached_batches = max_cached_batches
        self._plans: dict[int, _PlanCache] = {}

    # ---- plan handling --------------------------------------------------------------------
    def _cache(self, plan: ReplicaPlan) -> _PlanCache:
        entry = self._plans.get(id(plan))
        if entry is not None and entry.plan is plan:
            return entry
        for other in self._plans.values():  # an equal plan built elsewhere shares the cache
            if other.plan == plan:
                self._plans[id(plan)] = other
                return other
        entry = _PlanCache(plan, self.calibration)
        self._plans[id(plan)] = entry
        return entry

    def kernel_sources(self, plan: ReplicaPlan) -> dict[str, str]:
        """Operator family -> which calibration (stack, GPU, measured/borrowed) prices it."""
        return self._cache(plan).graph.kernels.describe()

    def is_calibrated(self, plan: ReplicaPlan) -> bool:
        """True when the plan's GPU has fitted (measured) kernel curves."""
        return self._cache(plan).graph.is_calibrated

    # ---- the protocol -----------------------------------------------------------------------
    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        """Duration of one iteration of ``batch`` on a replica running ``plan``."""
        entry = self._cache(plan)
        found = entry.by_batch.get(batch)
        if found is not None:
            return found
        found = entry.old_batches.get(batch)
        if found is None:
            found = self._compute(entry, batch)
        if 2 * len(entry.by_batch) >= self.max_cached_batches:
            entry.old_batches = entry.by_batch
            entry.by_batch = {}
        entry.by_batch[batch] = found
        return found

    def _compute(self, entry: _PlanCache, batch: BatchShape) -> StageTimes:
        plan, graph = entry.plan, entry.graph
        if batch.is_empty:
            return StageTimes(stage_s=(0.0,) * plan.pp)
        tokens = batch.num_tokens
        part = entry.by_tokens.get(tokens)
        if part is None:
            part = entry.by_tokens[tokens] = _sum_ops(
                graph.token_ops(tokens), plan.pp, entry.energy
            )
        sampling = batch.num_prefill_seqs + batch.num_decode_seqs + batch.num_extra_logits
        head = entry.by_sampling.get(sampling)
        if head is None:
            head = entry.by_sampling[sampling] = _sum_ops(
                graph.head_ops(sampling), plan.pp, entry.energy
            )
        stage_s = [a + b for a, b in zip(part.stage_s, head.stage_s, strict=True)]
        kernels = [a + b for a, b in zip(part.kernels, head.kernels, strict=True)]
        flops = part.flops + head.flops
        nbytes = part.num_bytes + head.num_bytes
        joules = part.energy_j + head.energy_j
        if graph.shapes.is_mla:
            key = (batch.num_decode_seqs, batch.num_prefill_tokens)
            extra = entry.mla.get(key)
            if extra is None:
                extra = entry.mla[key] = _sum_ops(
                    graph.extra_mla_decode(batch), plan.pp, entry.energy
                )
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
        energy = entry.energy
        for op_class, cost in (("attention_prefill", pre), ("attention_decode", dec)):
            if cost.time_s > 0:  # per layer x layers: same utilisation, num_layers kernels
                joules += num_layers * energy.kernel_j(
                    op_class, cost.flops, cost.num_bytes, cost.time_s, 1, energy.peak16
                )
        kernel_s = sum(stage_s)
        host = entry.host
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
        joules += entry.energy.idle_j(sum(stage_s) - kernel_s + overhead * plan.pp)
        # flops/bytes/energy above are per GPU of a stage; the replica holds tp GPUs per stage
        return StageTimes(
            stage_s=tuple(stage_s),
            overhead_s=overhead,
            flops=flops * plan.tp,
            hbm_bytes=nbytes * plan.tp,
            energy_j=joules * plan.tp,
        )

    def explain(self, plan: ReplicaPlan, batch: BatchShape) -> list[OpCost]:
        """Every op of the iteration with its FLOPs, bytes, bound and time (per GPU)."""
        entry = self._cache(plan)
        graph = entry.graph
        ops = list(graph.token_ops(batch.num_tokens)) if not batch.is_empty else []
        ops.extend(
            graph.head_ops(batch.num_prefill_seqs + batch.num_decode_seqs + batch.num_extra_logits)
        )
        if graph.shapes.is_mla:
            ops.extend(graph.extra_mla_decode(batch))
        pre, dec = graph.attention(batch)
        for stage, layers in enumerate(graph.stages):
            n = len(layers)
            for name, cost in (("attn_prefill", pre), ("attn_decode", dec)):
                if cost.time_s > 0:
                    ops.append(
                        OpCost(
                            name,
                            graph.scope(stage, n),
                            n,
                            cost.flops * n,
                            cost.num_bytes * n,
                            cost.bound,
                            cost.time_s * n,
                            stage,
                        )
                    )
        times = self.iteration_time(plan, batch)
        launch_wait = sum(times.stage_s) - sum(op.time_s for op in ops)
        if launch_wait > 1e-12:
            ops.append(OpCost("cpu_launch_wait", "host", 1, 0.0, 0.0, "overhead", launch_wait, -1))
        if times.overhead_s:
            ops.append(
                OpCost("host_overhead", "host", 1, 0.0, 0.0, "overhead", times.overhead_s, -1)
            )
        return ops

    def memory_plan(
        self,
        plan: ReplicaPlan,
        *,
        block_size_tokens: int = 16,
        gpu_memory_utilization: float = 0.9,
        max_num_batched_tokens: int = 8192,
    ) -> MemoryPlan:
        """Memory breakdown per GPU; raises ``InfeasibleError`` when the weights do not fit."""
        check_plan(plan)
        return plan_memory(
            plan,
            block_size_tokens=block_size_tokens,
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_batched_tokens=max_num_batched_tokens,
        )
