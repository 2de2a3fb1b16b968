"""What every plan of a search is judged on: model, workload shape, SLO, run length, seed.

``Scenario`` is the fixed part of a search (the ``PlanSpec`` is what varies); ``simulate_plan``
runs one plan at one arrival rate and summarises it. The planner sits below the config/api
layer, so it builds the cluster deployment itself, as ``api.simulate`` does; ``servesim.api``
turns a ``SimConfig`` into a ``Scenario``, and ``deploy.sim_config_dict`` turns a plan back
into a ``SimConfig`` mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servesim.cluster import (
    DeploymentConfig,
    NodeGroupConfig,
    PoolConfig,
    RouterConfig,
    build_deployment,
    run_cluster,
)
from servesim.core.rng import RandomStreams
from servesim.engine import CacheConfig
from servesim.engine.simulation import StopWhen
from servesim.metrics import Summary, summarize
from servesim.metrics.slo import SLOSpec
from servesim.perf.types import PerfModel
from servesim.planner.plan import DEFAULT_ALL2ALL
from servesim.planner.space import PlanSpec
from servesim.specs.catalog import get_gpu
from servesim.specs.cluster import default_node
from servesim.workload.config import WorkloadConfig

# Requests per replica in one capacity probe. A short run overstates capacity: near
# saturation the batch (and TPOT) keeps growing long after the run starts. Measured on
# Llama-3.1-8B / H100 / ShareGPT, SLO p99 TTFT 1 s and TPOT 50 ms: 80 requests gave
# 3.73 req/s, 300 gave 2.87, 1,000 gave 2.63, 3,000 gave 2.52. 1,000 is within ~5% of the
# long-run figure at a few seconds per 70B capacity search.
DEFAULT_REQUESTS_PER_REPLICA = 1000
# Floor on requests per probe: a p99 over fewer than 200 requests rests on one or two of them.
DEFAULT_MIN_REQUESTS = 200
# Cheap bracketing probes (``capacity.bracketed_capacity_search``) send this fraction of a
# full probe's requests, and only when that is at least ``SHORT_MIN_REQUESTS``: shorter runs
# overstate capacity too much to save anything. Measured (Llama-3.1-8B / H100 / ShareGPT, p99
# TTFT 1 s, TPOT 50 ms): 200 requests overstate by ~30%, 400 by ~2%; on six fixed plans,
# one-replica plans (400-request short probes) cost as much or more bracketed (TP2-PP2: 8.9
# against 3.5 CPU-s), while 2x A100 (800) needed 2 full probes instead of 6.
SHORT_FRACTION = 0.4
SHORT_MIN_REQUESTS = 500
# Requests sampled to describe the workload's size distribution for the analytical bounds.
NUM_SHAPE_SAMPLES = 2000


@dataclass(frozen=True, slots=True)
class SLOCriterion:
    """When a run "holds the SLO" for capacity search (every given target must hold).

    Attributes:
        ttft_p99_s: p99 TTFT target (queueing included).
        tpot_p99_s: p99 TPOT target.
        ttft_mean_s: mean TTFT target (queueing theory checks use it).
        min_attainment: fraction of requests meeting ``ttft_p99_s``/``tpot_p99_s`` as
            per-request targets (DistServe's attainment); None: percentile targets only.
        max_unfinished_fraction: requests still queued when the run stops, as a fraction;
            more than this means the queue did not drain (overload).
    """

    ttft_p99_s: float | None = None
    tpot_p99_s: float | None = None
    ttft_mean_s: float | None = None
    min_attainment: float | None = None
    max_unfinished_fraction: float = 0.0

    def slo_spec(self) -> SLOSpec:
        """The metrics-layer targets (per-request checks for attainment and goodput)."""
        return SLOSpec(
            ttft_s=self.ttft_p99_s,
            tpot_s=self.tpot_p99_s,
            attainment_target=self.min_attainment if self.min_attainment is not None else 0.99,
        )

    def check(self, summary: Summary) -> tuple[bool, str, float]:
        """(holds, limiting metric, its value / target) for one run's summary.

        The limiting metric is the one with the largest value-to-target ratio (for
        attainment, shortfall is expressed the same way: target / achieved).
        """
        ratios: list[tuple[float, str]] = []
        n = max(summary.num_requests, 1)
        unfinished = summary.rejected_by_reason.get("not_finished", 0) / n
        if unfinished > self.max_unfinished_fraction:
            ratios.append((math.inf, "unfinished"))
        pairs = (
            ("ttft_p99", summary.ttft.p99_s, self.ttft_p99_s),
            ("tpot_p99", summary.tpot.p99_s, self.tpot_p99_s),
            ("ttft_mean", summary.ttft.mean_s, self.ttft_mean_s),
        )
        for name, value, target in pairs:
            if target is not None:
                ratios.append((math.inf if value is None else value / target, name))
        if self.min_attainment is not None:
            got = summary.slo.overall.attainment if summary.slo is not None else None
            ratio = math.inf if not got else self.min_attainment / got
            ratios.append((ratio, "attainment"))
        if not ratios:
            return True, "none", 0.0
        worst, name = max(ratios)
        return worst <= 1.0, name, worst

    def drain_margin_s(self, max_output_tokens: int) -> float:
        """Simulated time after the last arrival before a run is cut short as overloaded.

        A run that holds the SLO finishes its last request within TTFT + output x TPOT of
        its arrival; twice that (at least a minute) separates "slow" from "queue exploding".
        """
        ttft = self.ttft_p99_s or self.ttft_mean_s or 10.0
        tpot = self.tpot_p99_s or 0.2
        return max(60.0, 2.0 * (ttft + max_output_tokens * tpot))


@dataclass(frozen=True, slots=True)
class WorkloadShape:
    """Size statistics of the workload's requests (from a sample)."""

    mean_prompt_tokens: float
    mean_output_tokens: float
    p99_prompt_tokens: float
    max_output_tokens: int


@dataclass(frozen=True, slots=True)
class Scenario:
    """The fixed part of a search.

    Attributes:
        model: catalog name, HF id or config path.
        workload: the workload shape; its rate is what capacity search varies.
        criterion: the SLO to hold.
        cache: paged KV cache settings.
        seed: root seed; every plan and probe uses it (common random numbers, so plans are
            compared on the same requests and results do not depend on the executor).
        requests_per_replica: requests simulated per replica in each probe.
        min_requests: floor on requests per probe.
        engine: the serving engine profile every plan runs (``servesim.engine.profiles``):
            its scheduler rules, host time, kernel stack and timing price every probe.
    """

    model: str
    workload: WorkloadConfig = field(
        default_factory=lambda: WorkloadConfig(preset="sharegpt-vidur")
    )
    criterion: SLOCriterion = field(default_factory=SLOCriterion)
    cache: CacheConfig = field(default_factory=CacheConfig)
    seed: int = 0
    requests_per_replica: int = DEFAULT_REQUESTS_PER_REPLICA
    min_requests: int = DEFAULT_MIN_REQUESTS
    engine: str = "auto"

    def num_requests(self, plan: PlanSpec) -> int:
        """Requests in one probe of ``plan`` (per engine replica: each DP-attention rank)."""
        engines = plan.replicas * plan.dp_attention + plan.prefill_replicas
        return max(self.min_requests, self.requests_per_replica * engines)

    def short_num_requests(self, plan: PlanSpec) -> int | None:
        """Requests in one cheap bracketing probe of ``plan`` (None: not worth it)."""
        short = round(self.num_requests(plan) * SHORT_FRACTION)
        return short if short >= SHORT_MIN_REQUESTS else None

    def shape(self) -> WorkloadShape:
        """Request-size statistics from a sample of the workload (seeded)."""
        sample = self.workload.with_rate(1.0).model_copy(update={"num_requests": NUM_SHAPE_SAMPLES})
        prompts, outputs = [], []
        for req in sample.build(RandomStreams(self.seed)):
            prompts.append(req.num_prompt_tokens)
            outputs.append(req.num_output_tokens)
        p = np.asarray(prompts, dtype=np.float64)
        o = np.asarray(outputs, dtype=np.float64)
        return WorkloadShape(
            float(p.mean()), float(o.mean()), float(np.percentile(p, 99)), int(o.max())
        )


def pool_fields(scenario: Scenario, plan: PlanSpec, role: str) -> dict[str, Any]:
    """``PoolConfig`` fields of one pool of ``plan`` (``unified``, ``prefill`` or ``decode``)."""
    phase = plan.phase(role)
    return {
        "name": "default" if role == "unified" else role,
        "role": role,
        "replicas": phase.replicas,
        "gpu": phase.gpu,
        "tp": phase.tp,
        "pp": phase.pp,
        "ep": phase.ep,
        "dtype": phase.dtype,
        "kv_dtype": phase.kv_dtype,
        "scheduler": phase.scheduler.to_dict(),
        "cache": scenario.cache,
        "engine": scenario.engine,
        **({"dp_attention": phase.dp_attention} if phase.dp_attention > 1 else {}),
        **({"all2all_backend": phase.all2all} if phase.all2all != DEFAULT_ALL2ALL else {}),
        **({"dense_mlp": phase.dense_mlp} if phase.dense_mlp != "auto" else {}),
    }


def plan_roles(plan: PlanSpec) -> tuple[str, ...]:
    """The pool roles of ``plan``, in pool order."""
    return ("prefill", "decode") if plan.mode == "disaggregated" else ("unified",)


def pool_config(scenario: Scenario, plan: PlanSpec, role: str = "unified") -> PoolConfig:
    """The validated ``PoolConfig`` of one pool of ``plan`` (engine defaults applied), as the
    simulator receives it; ``cluster.pool_plan`` turns it into the replica's ``ReplicaPlan``."""
    return PoolConfig(**pool_fields(scenario, plan, role))


def deployment_config(scenario: Scenario, plan: PlanSpec) -> DeploymentConfig:
    """The cluster deployment of ``plan``: one unified pool, or prefill + decode pools, each
    with its own hardware (``PlanSpec.phase``), on the servers its placement names."""
    pools = [pool_config(scenario, plan, role) for role in plan_roles(plan)]
    return DeploymentConfig(
        pools=pools, router=RouterConfig(kind=plan.router), nodes=node_groups(plan)
    )


def node_groups(plan: PlanSpec) -> list[NodeGroupConfig] | None:
    """The servers ``plan`` is placed on (None: the deployment's default, packed servers).

    ``pack`` with a network: the usual servers of each GPU type, as many as the GPUs need,
    on that network (the deployment fills one before the next, so pools that fit share one
    and hand KV over NVLink). ``spread``: one server per replica, sized to it (at most the
    usual server), pools in order, so every prefill-to-decode handoff crosses the network.
    """
    if plan.placement == "pack" and plan.network is None:
        return None
    if plan.placement == "pack":
        return [
            NodeGroupConfig(gpu=gpu, count=-(-num // _server_gpus(gpu)), network=plan.network)
            for gpu, num in plan.gpus_by_type().items()
        ]
    groups = []
    for role in plan_roles(plan):
        phase = plan.phase(role)
        size, server = phase.gpus_per_replica, _server_gpus(phase.gpu)
        groups.append(
            NodeGroupConfig(
                gpu=phase.gpu,
                count=phase.replicas * -(-size // server),
                gpus_per_node=min(size, server),
                network=plan.network,
            )
        )
    return groups


def _server_gpus(gpu: str) -> int:
    return default_node(get_gpu(gpu)).num_gpus


def simulate_plan(
    scenario: Scenario,
    plan: PlanSpec,
    rate_per_s: float,
    perf: PerfModel,
    *,
    max_output_tokens: int = 4096,
    num_requests: int | None = None,
    stop_when: StopWhen | None = None,
) -> Summary:
    """Simulate ``plan`` at ``rate_per_s``; the run is cut short once the queue cannot drain.

    The clock stops at the expected last arrival plus the criterion's drain margin, so an
    overloaded probe costs about as much as a healthy one (requests still queued then are
    reported ``not_finished`` and fail the check). ``num_requests`` overrides the scenario's
    probe length (short bracketing probes); ``stop_when`` ends the run early (a probe whose
    SLO is already lost, ``servesim.planner.probe``).
    """
    num = num_requests if num_requests is not None else scenario.num_requests(plan)
    workload = scenario.workload.with_rate(rate_per_s).model_copy(update={"num_requests": num})
    requests = workload.build(RandomStreams(scenario.seed))
    deployment = build_deployment(deployment_config(scenario, plan), scenario.model, perf)
    stop_s = num / rate_per_s * 1.5 + scenario.criterion.drain_margin_s(max_output_tokens)
    run = run_cluster(
        requests, deployment, perf, seed=scenario.seed, duration_s=stop_s, stop_when=stop_when
    )
    return summarize(run.records, scenario.criterion.slo_spec())
