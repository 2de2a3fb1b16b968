"""``Deployment``: pools of replicas placed on a cluster's nodes, checked before simulating.

``build_deployment`` turns a ``DeploymentConfig`` into frozen plans and collects every problem
(TP that does not divide the heads, PP beyond the layers, EP beyond the experts, an unknown GPU,
weights that do not fit, a prefill pool without a decode pool, more GPUs than the cluster has)
into one ``DeploymentError`` with one line per problem, so a user fixes them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servesim.cluster.config import AutoscaleConfig, DeploymentConfig, PoolConfig
from servesim.cluster.nodes import cluster_nodes, group_span, num_ranks, place_replicas
from servesim.cluster.placement import placed_plan

# ``pool_engine`` and ``pool_dense_mlp`` are imported from here by their callers too.
from servesim.cluster.pool_checks import (
    check_draft,
    check_memory,
    check_parallelism,
    check_roles,
    pool_dense_mlp,
    pool_engine,
)
from servesim.core.errors import ServesimError
from servesim.engine.config import (
    CacheConfig,
    HybridConfig,
    LoRAConfig,
    SchedulerConfig,
    SpeculativeConfig,
)
from servesim.engine.dp_group import DPGroupSpec
from servesim.engine.profiles import AUTO, EngineProfile, resolve_engine
from servesim.engine.setup import ReplicaSetup
from servesim.perf.host import resolve_host_profile
from servesim.perf.memory import check_dp_attention, check_plan
from servesim.perf.stacks import resolve_kernel_stack
from servesim.perf.types import PerfModel, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.specs.cluster import NodeSpec
from servesim.specs.dtypes import DType, serving_formats
from servesim.specs.gpu import LinkSpec


class DeploymentError(ServesimError):
    """A deployment that cannot work; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("deployment cannot work:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class Pool:
    """N identical replicas with one role.

    Attributes:
        name: unique pool name.
        role: ``unified``, ``prefill`` or ``decode``.
        plan: what each replica runs.
        scheduler: replica scheduler config.
        cache: KV cache config.
        num_replicas: replicas built (the maximum when autoscaled).
        autoscale: the scaling policy, or None for a fixed pool.
        nodes: index (into ``Deployment.nodes``) of the node holding each replica's first GPU.
        engine: the serving engine profile its replicas run (``pool_engine``).
        dp_attention: ranks per data-parallel-attention group (1: none); ``num_replicas``
            then counts ranks (each a replica of ``plan``), consecutive ranks forming a group.
    """

    name: str
    role: str
    plan: ReplicaPlan
    scheduler: SchedulerConfig
    cache: CacheConfig
    num_replicas: int
    autoscale: AutoscaleConfig | None
    nodes: tuple[int, ...]
    engine: EngineProfile = field(default_factory=lambda: resolve_engine(AUTO))
    dp_attention: int = 1
    all2all_backend: str = "allgather_reducescatter"
    dense_mlp: str = "rank"

    @property
    def num_gpus(self) -> int:
        """GPUs of all replicas of the pool."""
        return self.num_replicas * self.plan.num_gpus


@dataclass(frozen=True, slots=True)
class Deployment:
    """Pools, the nodes they sit on, and the cluster-level policies' configs."""

    pools: tuple[Pool, ...]
    nodes: tuple[NodeSpec, ...]
    config: DeploymentConfig
    speculative: SpeculativeConfig | None = None  # every replica's (SimConfig.speculative)
    lora: LoRAConfig | None = None  # every replica's (SimConfig.lora)
    hybrid: HybridConfig | None = None  # every replica's (SimConfig.hybrid)

    @property
    def num_gpus(self) -> int:
        """GPUs of every replica (autoscaled pools at their maximum)."""
        return sum(p.num_gpus for p in self.pools)

    @property
    def is_disaggregated(self) -> bool:
        """True when some pool is a prefill pool."""
        return any(p.role == "prefill" for p in self.pools)

    def setups(self) -> list[ReplicaSetup]:
        """One ``ReplicaSetup`` per replica, pools in order."""
        migrating = self.config.migration is not None
        return [
            ReplicaSetup(
                plan=p.plan,
                scheduler=p.scheduler,
                cache=p.cache,
                pool=p.name,
                role=p.role,
                receives_kv=p.role == "decode" or (migrating and p.role != "prefill"),
                timing=p.engine.timing,
                speculative=self.speculative,
                lora=self.lora,
                hybrid=self.hybrid,
            )
            for p in self.pools
            for _ in range(p.num_replicas)
        ]

    def dp_groups(self) -> list[DPGroupSpec]:
        """Data-parallel-attention groups (first replica, ranks, all2all backend, the servers
        the group spans), global replica order."""
        out: list[DPGroupSpec] = []
        first = 0
        for p in self.pools:
            dp = p.dp_attention
            if dp > 1:
                for k in range(0, p.num_replicas, dp):
                    span = group_span(list(self.nodes), list(p.nodes[k : k + dp]), p.plan.num_gpus)
                    out.append(DPGroupSpec(first + k, dp, p.all2all_backend, span, p.dense_mlp))
            first += p.num_replicas
        return out

    def replica_pools(self) -> list[int]:
        """Pool index of each replica (global replica order)."""
        return [i for i, p in enumerate(self.pools) for _ in range(p.num_replicas)]

    def pool_members(self) -> list[list[int]]:
        """Replica indices of each pool (global replica order)."""
        out: list[list[int]] = [[] for _ in self.pools]
        for i, p in enumerate(self.replica_pools()):
            out[p].append(i)
        return out

    def replica_nodes(self) -> list[int]:
        """Node index of each replica (global replica order)."""
        return [n for p in self.pools for n in p.nodes]

    def link_between(self, node_a: int, node_b: int) -> LinkSpec:
        """Per-GPU link a transfer between GPUs on these nodes crosses."""
        a, b = self.nodes[node_a], self.nodes[node_b]
        if node_a == node_b:
            return a.intra_node_link(min(2, a.num_gpus))
        la, lb = a.network_link(), b.network_link()
        return LinkSpec(
            name=f"{la.name}/{lb.name}" if la.name != lb.name else la.name,
            bandwidth_bytes_per_s=min(la.bandwidth_bytes_per_s, lb.bandwidth_bytes_per_s),
            latency_s=max(la.latency_s, lb.latency_s),
        )


def _plan(
    pool: PoolConfig, model_name: str, problems: list[str], perf: PerfModel | None = None
) -> ReplicaPlan | None:
    where = f"pool {pool.name!r}"
    try:
        model = resolve_model(pool.model or model_name)
        gpu = get_gpu(pool.gpu)
        weights = DType.parse(pool.dtype)
        kv = DType.parse(pool.kv_dtype) if pool.kv_dtype else None
    except ServesimError as exc:
        problems.append(f"{where}: {exc}")
        return None
    weights, act, kv = serving_formats(weights, kv, gpu.architecture)
    engine = pool_engine(pool)
    host_profile = resolve_host_profile(pool.host_overhead, engine_host_profile=engine.host_profile)
    plan = ReplicaPlan(
        model=model,
        gpu=gpu,
        tp=pool.tp,
        pp=pool.pp,
        ep=pool.ep if pool.dp_attention == 1 else 1,  # a rank's experts: DPGroupCost's
        weight_dtype=weights,
        activation_dtype=act,
        kv_dtype=kv,
        use_cuda_graphs=pool.cuda_graphs,
        custom_all_reduce=pool.custom_all_reduce,
        expert_popularity=tuple(pool.expert_popularity),
        expert_zipf_exponent=pool.expert_zipf_exponent,
        host_profile=host_profile,
        kernel_stack=(
            engine.kernel_stack
            if pool.kernel_stack == "auto"
            else resolve_kernel_stack(pool.kernel_stack, host_profile)
        ),
    )
    before = len(problems)
    check_parallelism(pool, plan, problems)
    if len(problems) > before:
        return None
    try:
        check_plan(plan)
        check_dp_attention(plan, pool.dp_attention)
        plan = placed_plan(plan, pool.expert_placement, pool.eplb_redundant_experts, perf)
    except ServesimError as exc:
        problems.append(f"{where}: {exc}")
        return None
    return plan


def pool_plan(pool: PoolConfig, model_name: str) -> ReplicaPlan:
    """The ``ReplicaPlan`` one replica of ``pool`` runs; raises ``DeploymentError`` listing
    every problem of the pool (memory is not checked here: that needs a perf model)."""
    problems: list[str] = []
    plan = _plan(pool, model_name, problems)
    if plan is None:
        raise DeploymentError(problems)
    return plan


def build_deployment(
    cfg: DeploymentConfig,
    model: str,
    perf: PerfModel,
    speculative: SpeculativeConfig | None = None,
) -> Deployment:
    """Check ``cfg`` and build its plans and placement (``model``: the default model;
    ``speculative``: the replicas' speculation, whose draft must fit beside the target).

    Raises:
        DeploymentError: one line per problem found.
    """
    problems: list[str] = []
    check_roles(cfg, problems)
    if cfg.migration is not None and any(p.dp_attention > 1 for p in cfg.pools):
        problems.append("migration with dp_attention pools is not modelled")
    plans: list[ReplicaPlan | None] = []
    for pool in cfg.pools:
        plan = _plan(pool, model, problems, perf)
        if plan is not None:
            check_memory(pool, plan, perf, problems)
            if speculative is not None and pool.cache.num_kv_blocks is None:
                check_draft(pool, plan, perf, speculative, problems)
        plans.append(plan)
    nodes = cluster_nodes(cfg, plans, problems)
    placement = place_replicas(cfg, plans, nodes, problems) if nodes is not None else None
    if problems or placement is None:
        raise DeploymentError(problems)
    pools = tuple(
        Pool(
            name=pc.name,
            role=pc.role,
            plan=plan,
            scheduler=pc.scheduler,
            cache=pc.cache,
            num_replicas=num_ranks(pc),
            autoscale=pc.autoscale,
            nodes=tuple(where),
            engine=pool_engine(pc),
            dp_attention=pc.dp_attention,
            all2all_backend=pc.all2all_backend,
            dense_mlp=pool_dense_mlp(pc),
        )
        for pc, plan, where in zip(cfg.pools, plans, placement, strict=True)
        if plan is not None
    )
    return Deployment(pools=pools, nodes=tuple(nodes or ()), config=cfg)
