"""``RooflinePerfModel``: the default ``PerfModel`` — op graph, calibrated roofline, fast path.

The engine calls ``iteration_time`` once per iteration, hundreds of thousands of times per run.
Per plan, a ``PlanCost`` (graph, memo tables by token count and by sampling sequences) is built
once, keyed by object identity (the plan kept alive beside it). Iterations are priced by
``FastCost`` (the same float operations with the per-plan work hoisted; bit-identical to
``PlanCost.general``, the reference path). No memo on the whole ``BatchShape``: shapes almost
never repeat (0 hits in 70,000 calls of ``bench/bench_engine.py``) and hashing them cost more
than it saved.
"""

from __future__ import annotations

from collections.abc import Callable

from servesim.perf.calibration import Calibration, load_calibration
from servesim.perf.fastcost import FastCost
from servesim.perf.memory import check_plan, plan_memory
from servesim.perf.plan_cost import PlanCost
from servesim.perf.types import BatchShape, MemoryPlan, OpCost, ReplicaPlan, StageTimes

# per plan id: the plan (kept alive), its cost tables, and the function that prices a batch
_Entry = tuple[ReplicaPlan, PlanCost, Callable[[BatchShape], StageTimes]]


class RooflinePerfModel:
    """Iteration time and memory of a replica from its op graph (see module docstring).

    Args:
        calibration: fitted curves; the packaged ``calibration.json`` by default.
        fast_path: price iterations with ``FastCost`` (bit-identical to the general path);
            False sends every plan through ``PlanCost.general``, the reference the fast path
            is tested against.
    """

    def __init__(self, calibration: Calibration | None = None, *, fast_path: bool = True) -> None:
        self.calibration = calibration if calibration is not None else load_calibration()
        self.fast_path = fast_path
        self._plans: dict[int, _Entry] = {}  # by id(plan): the lookup of every call
        self._distinct: list[_Entry] = []  # one per distinct plan (compared by value)

    # ---- plan handling --------------------------------------------------------------------
    def _entry(self, plan: ReplicaPlan) -> _Entry:
        found = self._plans.get(id(plan))
        if found is not None and found[0] is plan:
            return found
        # an equal plan built elsewhere (each simulation builds its own) shares the tables
        same = next((e for e in self._distinct if e[0] == plan), None)
        if same is None:
            cost = PlanCost(plan, self.calibration)
            same = (plan, cost, FastCost(cost) if self.fast_path else cost.general)
            self._distinct.append(same)
        # the plan is kept alive beside its entry, so its id cannot be reused by another
        found = self._plans[id(plan)] = (plan, same[1], same[2])
        return found

    def _cache(self, plan: ReplicaPlan) -> PlanCost:
        return self._entry(plan)[1]

    def kernel_sources(self, plan: ReplicaPlan) -> dict[str, str]:
        """Operator family -> which calibration (stack, GPU, measured/borrowed) prices it."""
        return self._cache(plan).graph.kernels.describe()

    def is_calibrated(self, plan: ReplicaPlan) -> bool:
        """True when the plan's GPU has fitted (measured) kernel curves."""
        return self._cache(plan).graph.is_calibrated

    def uses_fast_path(self, plan: ReplicaPlan) -> bool:
        """True when ``plan``'s iterations are priced by ``FastCost``."""
        return isinstance(self._entry(plan)[2], FastCost)

    def pricer(self, plan: ReplicaPlan) -> Callable[[BatchShape], StageTimes]:
        """What ``iteration_time(plan, shape)`` calls, looked up once (the engine's loop)."""
        return self._entry(plan)[2]

    # ---- the protocol -----------------------------------------------------------------------
    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        """Duration of one iteration of ``batch`` on a replica running ``plan``."""
        found = self._plans.get(id(plan))
        if found is None or found[0] is not plan:
            found = self._entry(plan)
        return found[2](batch)

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
