"""The analytical pre-filter: memory feasibility and steady-state bounds, no simulation.

For each plan, from the perf model alone (no queueing):

- **memory**: the replica is built by the simulator's own builder (``cluster.pool_plan``:
  the engine profile's host model and kernel stack) and its memory planned at the token
  budget its scheduler really runs (``engine.scheduler_setup.memory_token_budget``: e.g. 512 tokens
  for vLLM 0.6 on a >32K-context model), so a plan is feasible here exactly when
  ``simulate`` builds it. A plan whose weights do not fit, or that vLLM would refuse (tp not
  dividing the heads, a dtype the GPU lacks), is *infeasible*, with the limit in numbers.
- **latency lower bounds**: every request's TTFT is at least the prefill time of its prompt
  alone, so p99 TTFT >= prefill(p99 prompt); every decode step takes at least the batch-1
  step, so TPOT >= decode(1). A bound above its target *prunes* the plan.
- **throughput upper bound**: decode batches are limited by KV memory (context ~ prompt +
  output / 2 per sequence; a windowed model's sequence holds the pages of its KV cache
  groups, ``perf/kv_layout.py``, as the engine's pool counts them), by ``max_num_seqs``,
  and by the TPOT target (the largest batch whose step still fits it); prefill runs at its
  best tokens/s in budget-sized batches. A request then costs ``prefill_share + output x
  step(b) / b`` seconds of a replica, and with pipeline parallelism the slowest stage sets
  the interval. This is optimistic by construction (no interference, perfect packing), so
  it both caps the capacity search and lets the search skip plans whose bound per dollar
  cannot beat a plan already simulated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from servesim.cluster.config import PoolConfig
from servesim.cluster.deployment import (
    DeploymentError,
    build_deployment,
    pool_dense_mlp,
    pool_engine,
    pool_plan,
)
from servesim.core.errors import ServesimError
from servesim.engine.dp_group import DUMMY_SHAPE, rank_memory_plan
from servesim.engine.scheduler_setup import memory_token_budget
from servesim.perf.dp_cost import DPGroupCost
from servesim.perf.kv_groups import kv_layout, vllm_block_size
from servesim.perf.kv_layout import KVLayout
from servesim.perf.memory import check_plan
from servesim.perf.types import BatchShape, MemoryPlan, PerfModel, ReplicaPlan
from servesim.planner.scenario import Scenario, WorkloadShape, deployment_config, pool_config
from servesim.planner.space import PlanSpec
from servesim.specs.catalog import resolve_model


def _hardware(plan: PlanSpec) -> tuple[object, ...]:
    """What a pool's replica plan and memory depend on (the memo key)."""
    hardware = (plan.gpu, plan.tp, plan.pp, plan.ep, plan.dtype, plan.kv_dtype)
    return (*hardware, plan.dp_attention, plan.all2all, plan.network, plan.dense_mlp)


# vLLM's default token budget when chunked prefill is on (V0 512, V1 2048/8192); for the
# prefill-throughput bound a large batch is the optimistic choice.
PREFILL_BOUND_TOKENS = 8192


@dataclass(frozen=True, slots=True)
class Estimate:
    """The analytical view of one plan.

    Attributes:
        plan: the plan.
        status: ``ok`` (simulate it), ``infeasible`` (cannot run) or ``pruned`` (cannot meet
            the SLO by the bounds).
        reason: why it is infeasible or pruned ("" when ok).
        max_kv_tokens: KV tokens one replica holds (pool pages x block size: a windowed
            model's sequence takes fewer pages than this suggests, see ``max_batch``).
        max_batch: decode batch the bound assumes (memory, max_num_seqs and TPOT limits).
        ttft_p99_lower_s: prefill time of the p99 prompt alone.
        tpot_lower_s: batch-1 decode step.
        rate_upper_per_s: throughput upper bound of the whole deployment (requests/s).
    """

    plan: PlanSpec
    status: str
    reason: str = ""
    max_kv_tokens: int = 0
    max_batch: int = 0
    ttft_p99_lower_s: float = math.nan
    tpot_lower_s: float = math.nan
    rate_upper_per_s: float = 0.0

    @property
    def rate_upper_per_dollar_hour(self) -> float:
        """Throughput bound per dollar-hour of rent."""
        price = self.plan.price_per_hour_usd
        return self.rate_upper_per_s / price if price > 0 else math.inf

    def to_dict(self) -> dict[str, float | int | str]:
        """The figures (for the store)."""
        return {
            "max_kv_tokens": self.max_kv_tokens,
            "max_batch": self.max_batch,
            "ttft_p99_lower_s": self.ttft_p99_lower_s,
            "tpot_lower_s": self.tpot_lower_s,
            "rate_upper_per_s": self.rate_upper_per_s,
        }


class Prefilter:
    """Estimates plans of one scenario; memoises what plans share (memory, step times)."""

    def __init__(self, scenario: Scenario, perf: PerfModel, shape: WorkloadShape) -> None:
        self.scenario = scenario
        self.perf = perf
        self.shape = shape
        self._settings: dict[tuple[object, ...], tuple[PoolConfig, str, int] | str] = {}
        self._rplans: dict[tuple[object, ...], ReplicaPlan | str] = {}
        self._memory: dict[tuple[object, ...], MemoryPlan | str] = {}
        self._steps: dict[tuple[object, ...], float] = {}
        self._dp_costs: dict[tuple[object, ...], tuple[ReplicaPlan, DPGroupCost]] = {}

    def estimate(self, plan: PlanSpec) -> Estimate:
        """The analytical estimate of ``plan`` (never raises for a bad plan: records it).

        A disaggregated plan is checked pool by pool: each pool must hold the model and the
        p99 prompt on its own hardware; TTFT is bounded by the prefill pool's hardware and
        TPOT by the decode pool's.
        """
        roles = ("prefill", "decode") if plan.mode == "disaggregated" else ("unified",)
        pools: list[tuple[PlanSpec, ReplicaPlan, MemoryPlan]] = []
        for role in roles:
            phase = plan.phase(role)
            pp = f" pp={phase.pp}" if phase.pp > 1 else ""
            where = f"{role} pool ({phase.gpu} tp={phase.tp}{pp}): " if plan.per_phase else ""
            built = self._replica(phase)
            if isinstance(built, str):
                return Estimate(plan, "infeasible", where + built)
            rplan, mem = built
            setting = self._settings[(_hardware(phase), phase.scheduler)]
            assert not isinstance(setting, str)  # _replica returned its reason otherwise
            short = self._prompt_misfit(rplan, mem, setting[2])
            if short:
                return Estimate(plan, "infeasible", where + short)
            pools.append((phase, rplan, mem))
        return self._bounds(plan, pools[0][:2], pools[-1])

    def _prompt_misfit(self, rplan: ReplicaPlan, mem: MemoryPlan, budget: int) -> str:
        """Why one replica's KV pool cannot hold the p99 prompt ("" when it can). A windowed
        model's prompt takes its groups' pages at their fullest during a prefill step of
        the scheduler's ``budget`` tokens (the engine's ``reject_reason``:
        ``KVLayout.peak_pages``)."""
        p99 = self.shape.p99_prompt_tokens
        layout = kv_layout(rplan, mem.block_size_tokens)
        if layout.plain:
            if mem.max_kv_tokens >= p99:
                return ""
            return (
                f"KV cache holds {mem.max_kv_tokens} tokens, less than the p99 prompt ({p99:.0f})"
            )
        prompt = math.ceil(p99)
        step = min(prompt, budget)
        need = layout.peak_pages(prompt, step)
        if need <= mem.num_kv_blocks:
            return ""
        return (
            f"KV cache holds {mem.num_kv_blocks} pages, less than the {need} the p99 prompt "
            f"({p99:.0f} tokens) takes in its KV cache groups"
        )

    def replica_plan(self, plan: PlanSpec, role: str = "unified") -> ReplicaPlan | str:
        """The ``ReplicaPlan`` one replica of ``plan``'s ``role`` pool runs in the pre-filter
        (``cluster.pool_plan``, the simulator's own builder), or why it cannot run."""
        built = self._replica(plan.phase(role))
        return built if isinstance(built, str) else built[0]

    def _replica(self, phase: PlanSpec) -> tuple[ReplicaPlan, MemoryPlan] | str:
        """The replica plan and memory plan of one pool, built as the simulator builds them
        (``cluster.pool_plan`` with the engine profile's host model and kernel stack; the
        memory plan at the scheduler's real token budget), or why it cannot run.

        Memoised in three layers so a large space stays fast: the pool's engine and budget
        per (hardware, scheduler); the replica plan per (hardware, engine); the memory plan
        per (hardware, engine, budget)."""
        hw = _hardware(phase)
        setting = self._settings.get((hw, phase.scheduler))
        if setting is None:
            setting = self._setting(replace(phase, replicas=1, router="round_robin"))
            self._settings[(hw, phase.scheduler)] = setting
        if isinstance(setting, str):
            return setting
        pool, engine, budget = setting
        rplan = self._rplans.get((hw, engine))
        if rplan is None:
            rplan = self._rplans[(hw, engine)] = self._replica_plan(pool)
        if isinstance(rplan, str):
            return rplan
        mem = self._memory.get((hw, engine, budget))
        if mem is None:
            mem = self._memory[(hw, engine, budget)] = self._memory_plan(pool, rplan, budget)
        return mem if isinstance(mem, str) else (rplan, mem)

    def _setting(self, phase: PlanSpec) -> tuple[PoolConfig, str, int] | str:
        """The pool's config, engine profile name and the token budget its scheduler runs."""
        try:
            pool = pool_config(self.scenario, phase)
            engine = pool_engine(pool).name
            model = resolve_model(pool.model or self.scenario.model)
            budget = memory_token_budget(pool.scheduler, max_model_len=model.max_context_tokens)
        except ServesimError as exc:
            return str(exc)
        return pool, engine, budget

    def _replica_plan(self, pool: PoolConfig) -> ReplicaPlan | str:
        try:
            rplan = pool_plan(pool, self.scenario.model)
            # vLLM's parallelism checks (tp/pp/ep dividing the model), whatever perf model.
            check_plan(rplan)
        except DeploymentError as exc:
            return "; ".join(p.removeprefix("pool 'default': ") for p in exc.problems)
        except ServesimError as exc:
            return str(exc)
        return rplan

    def _memory_plan(self, pool: PoolConfig, rplan: ReplicaPlan, budget: int) -> MemoryPlan | str:
        if pool.dp_attention > 1 and getattr(self.perf, "calibration", None) is None:
            return "dp_attention needs the roofline perf model (MoE priced apart)"
        try:
            if pool.dp_attention > 1:  # a rank's GPU: E / (tp x dp) whole experts
                dense = pool_dense_mlp(pool)
                mem = rank_memory_plan(rplan, pool.dp_attention, pool.cache, budget, dense)
            else:
                mem = self.perf.memory_plan(
                    rplan,
                    # the replica's: raised for linear-attention hybrids (kv_groups.py)
                    block_size_tokens=vllm_block_size(rplan, pool.cache.block_size),
                    gpu_memory_utilization=pool.cache.gpu_memory_utilization,
                    max_num_batched_tokens=budget,
                )
        except ServesimError as exc:
            return f"{exc} (activations for the scheduler's {budget}-token step)"
        num_blocks = pool.cache.num_kv_blocks or mem.num_kv_blocks
        if num_blocks < rplan.pp:  # the replica's check: one block per virtual engine
            return (
                f"{num_blocks} KV blocks leave none for {rplan.pp} pipeline virtual engines "
                f"(weights {mem.weight_bytes / 2**30:.2f} GiB of {mem.usable_bytes / 2**30:.2f} "
                "GiB usable per GPU)"
            )
        return mem

    def _step(
        self,
        rplan: ReplicaPlan,
        plan: PlanSpec,
        batch: BatchShape,
        total: bool,
        alone: bool = False,
    ) -> float:
        """One step of ``batch`` on a replica (``total``: through every stage, else the
        slowest stage); a DP-attention rank's with the other ranks idle when ``alone``
        (latency bounds), else with every rank running ``batch`` (throughput bounds)."""
        hw = _hardware(plan)
        key = (*hw, rplan.host_profile, rplan.kernel_stack, batch, total, alone)
        value = self._steps.get(key)
        if value is None:
            if plan.dp_attention > 1:
                value = self._group_step(rplan, plan, batch, alone)
            else:
                times = self.perf.iteration_time(rplan, batch)
                value = times.total_s if total else times.bottleneck_s
            self._steps[key] = value
        return value

    def _group_step(
        self, rplan: ReplicaPlan, plan: PlanSpec, batch: BatchShape, alone: bool
    ) -> float:
        """A DP-attention group step (``engine.dp_group``): one rank's own time plus the
        experts for its tokens and the others' (the same batch each, or one-token dummy
        steps when ``alone``), with the plan's all2all backend, on the servers the
        deployment places one group on (``Deployment.dp_groups``)."""
        dp = plan.dp_attention
        # rplans are memoised: their ids are stable
        key = (id(rplan), dp, plan.all2all, plan.network, plan.dense_mlp)
        found = self._dp_costs.get(key)
        if found is None or found[0] is not rplan:
            calibration = getattr(self.perf, "calibration", None)
            assert calibration is not None  # _memory_plan refused the plan otherwise
            one = replace(plan, replicas=1)
            deployment = build_deployment(
                deployment_config(self.scenario, one), self.scenario.model, self.perf
            )
            group = deployment.dp_groups()[0]
            cost = DPGroupCost(
                rplan,
                dp,
                calibration,
                all2all=plan.all2all,
                span=group.span,
                dense_mlp=group.dense_mlp,
            )
            found = self._dp_costs[key] = (rplan, cost)
        cost = found[1]
        own = cost.iteration_time(rplan, batch)
        others = (dp - 1) * (DUMMY_SHAPE.num_tokens if alone else batch.num_tokens)
        return own.total_s + cost.experts(batch.num_tokens + others).stage_s[0]

    def _decode(
        self, rplan: ReplicaPlan, plan: PlanSpec, num_seqs: int, total: bool, alone: bool = False
    ) -> float:
        ctx = int(self.shape.mean_prompt_tokens + self.shape.mean_output_tokens / 2)
        batch = BatchShape(
            num_decode_seqs=num_seqs,
            decode_context_tokens=num_seqs * ctx,
            max_decode_context_tokens=ctx,
        )
        return self._step(rplan, plan, batch, total, alone)

    def _bounds(
        self,
        plan: PlanSpec,
        prefill: tuple[PlanSpec, ReplicaPlan],
        decode: tuple[PlanSpec, ReplicaPlan, MemoryPlan],
    ) -> Estimate:
        """Bounds from the prefill pool's (or unified) and the decode pool's hardware."""
        shape = self.shape
        crit = self.scenario.criterion
        p_phase, p_rplan = prefill
        d_phase, d_rplan, d_mem = decode
        max_kv_tokens = d_mem.max_kv_tokens
        p99_prompt = max(1, int(shape.p99_prompt_tokens))
        prompt = BatchShape.from_lists([(p99_prompt, 0)])
        ttft_low = self._step(p_rplan, p_phase, prompt, True, alone=True)
        tpot_low = self._decode(d_rplan, d_phase, 1, True, alone=True)
        base = {"ttft_p99_lower_s": ttft_low, "tpot_lower_s": tpot_low}
        if crit.ttft_p99_s is not None and ttft_low > crit.ttft_p99_s:
            reason = f"p99 TTFT >= {ttft_low:.3g} s (prefill alone) > target {crit.ttft_p99_s} s"
            return Estimate(plan, "pruned", reason, max_kv_tokens, **base)
        if crit.tpot_p99_s is not None and tpot_low > crit.tpot_p99_s:
            reason = f"TPOT >= {tpot_low:.3g} s (batch-1 decode) > target {crit.tpot_p99_s} s"
            return Estimate(plan, "pruned", reason, max_kv_tokens, **base)
        ctx = shape.mean_prompt_tokens + shape.mean_output_tokens / 2
        layout = kv_layout(d_rplan, d_mem.block_size_tokens)
        held = kv_batch_bound(layout, d_mem.num_kv_blocks, ctx)
        batch = max(1, min(plan.scheduler.max_num_seqs, held))
        if crit.tpot_p99_s is not None:
            batch = self._largest_batch_within(d_rplan, d_phase, batch, crit.tpot_p99_s)
        prefill_s = self._prefill_seconds(p_rplan, p_phase)
        decode_s = self._decode_seconds(d_rplan, d_phase, batch)
        if plan.mode == "disaggregated":
            # Each pool caps the throughput on its own (DistServe's per-phase goodput).
            rate = min(plan.prefill_replicas / prefill_s, plan.replicas / decode_s)
        else:  # each rank of a DP-attention group serves its own requests
            rate = plan.replicas * plan.dp_attention / (prefill_s + decode_s)
        return Estimate(plan, "ok", "", max_kv_tokens, batch, rate_upper_per_s=rate, **base)

    def _largest_batch_within(
        self, rplan: ReplicaPlan, plan: PlanSpec, limit: int, tpot_s: float
    ) -> int:
        """Largest decode batch (<= limit) whose step through all stages fits ``tpot_s``."""
        lo, hi = 1, limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            # Each of the pp virtual engines holds 1/pp of the batch (vLLM's PP scheduling).
            if self._decode(rplan, plan, max(1, mid // plan.pp), True, alone=True) <= tpot_s:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _prefill_seconds(self, rplan: ReplicaPlan, plan: PlanSpec) -> float:
        """Replica time one request's prefill needs at best (budget-sized batches)."""
        prompt = max(1, int(self.shape.mean_prompt_tokens))
        per_batch = max(1, PREFILL_BOUND_TOKENS // prompt)
        prefill = BatchShape.from_lists([(prompt, 0)] * per_batch)
        return self._step(rplan, plan, prefill, plan.pp == 1) / per_batch

    def _decode_seconds(self, rplan: ReplicaPlan, plan: PlanSpec, batch: int) -> float:
        """Replica time one request's decode steps need at best, at decode batch ``batch``."""
        per_engine = max(1, batch // plan.pp)
        step_s = self._decode(rplan, plan, per_engine, plan.pp == 1)
        # With pp > 1 the pp virtual engines overlap: one micro-batch of ``per_engine``
        # sequences leaves the pipeline every bottleneck-stage interval.
        return self.shape.mean_output_tokens * step_s / per_engine


def kv_batch_bound(layout: KVLayout, num_pages: int, context_tokens: float) -> int:
    """Sequences of ``context_tokens`` tokens of KV a pool of ``num_pages`` pages holds.

    A model without windows takes ``context / block_size`` blocks a sequence (the
    fractional count: an optimistic bound, as before the KV cache groups). A windowed
    model's sequence holds its full groups' pages of the whole context and each window
    group's pages of the window alone (``KVLayout.pages``: vLLM's ``remove_skipped_blocks``
    has freed the rest), so the pool holds ``num_pages // pages(context)`` of them.
    """
    if context_tokens <= 0:
        return num_pages
    if layout.plain:
        return int(num_pages * layout.block_size / context_tokens)
    return num_pages // max(1, layout.pages(math.ceil(context_tokens)))
