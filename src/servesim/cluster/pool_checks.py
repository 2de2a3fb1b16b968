"""Every problem of one pool config, one line each, and what a pool config resolves to.

``build_deployment`` collects these lines into one ``DeploymentError`` (``cluster.deployment``):
parallelism that does not divide the model, what a data-parallel-attention pool cannot combine
with, weights (and a draft) that leave no KV cache, pool roles that do not pair up.
"""

from __future__ import annotations

from servesim.cluster.config import DeploymentConfig, PoolConfig
from servesim.cluster.moe import max_redundant_experts
from servesim.core.errors import ServesimError
from servesim.engine.config import SpeculativeConfig
from servesim.engine.dp_group import rank_memory_plan
from servesim.engine.profiles import EngineProfile, resolve_engine
from servesim.engine.scheduler_setup import memory_token_budget
from servesim.engine.speculative import draft_memory_problem
from servesim.perf.kv_groups import vllm_block_size
from servesim.perf.types import PerfModel, ReplicaPlan


def pool_engine(pool: PoolConfig) -> EngineProfile:
    """The engine profile a pool runs: its ``engine``, or under ``auto`` the one its
    scheduler config implies (vLLM ``version: v1``: ``vllm-v1``; else ``vllm-0.6``)."""
    return resolve_engine(
        pool.engine, pool.scheduler.kind, getattr(pool.scheduler, "version", None)
    )


def pool_dense_mlp(pool: PoolConfig) -> str:
    """Where a DP-attention pool's dense MLP layers run (``perf.dp_cost.DENSE_MLP_MODES``):
    its ``dense_mlp``, or under ``auto`` its engine's (SGLang: the whole group, else the
    rank)."""
    if pool.dense_mlp != "auto":
        return pool.dense_mlp
    return "group" if pool_engine(pool).engine == "sglang" else "rank"


def check_parallelism(pool: PoolConfig, plan: ReplicaPlan, problems: list[str]) -> None:
    """Every parallelism problem of a pool (``check_plan`` stops at the first)."""
    m, where = plan.model, f"pool {pool.name!r}"
    if m.num_attention_heads % pool.tp:
        problems.append(
            f"{where}: tp={pool.tp} does not divide the {m.num_attention_heads} attention "
            f"heads of {m.name}"
        )
    if pool.pp > m.num_layers:
        problems.append(f"{where}: pp={pool.pp} exceeds the {m.num_layers} layers of {m.name}")
    if pool.dp_attention > 1:
        _check_dp_pool(pool, problems)
    elif pool.ep > 1:
        if m.moe is None:
            problems.append(f"{where}: ep={pool.ep} but {m.name} has no experts (use ep=1)")
        elif pool.ep > m.moe.num_experts:
            problems.append(
                f"{where}: ep={pool.ep} exceeds the {m.moe.num_experts} experts of {m.name}"
            )


def _check_dp_pool(pool: PoolConfig, problems: list[str]) -> None:
    """What a data-parallel-attention pool cannot combine with (one line each)."""
    where, dp = f"pool {pool.name!r}", pool.dp_attention
    ep = pool.tp * dp
    if pool.ep not in (1, ep):
        problems.append(
            f"{where}: ep={pool.ep} must be tp x dp_attention = {ep} (vLLM's EP = TP x DP) or 1"
        )
    unsupported = (
        ("role", pool.role != "unified", f"role={pool.role}"),
        ("autoscale", pool.autoscale is not None, "autoscale"),
        ("eplb", pool.eplb_redundant_experts > 0, "eplb_redundant_experts"),
    )
    for _, bad, what in unsupported:
        if bad:
            problems.append(f"{where}: dp_attention={dp} with {what} is not modelled")
    sglang = pool_engine(pool).engine == "sglang"
    if pool.dense_mlp in ("group", "replicated") and not sglang:
        problems.append(
            f"{where}: dense_mlp={pool.dense_mlp} is SGLang's (vLLM runs a DP rank's dense "
            "layers at the rank's tp): use engine sglang or dense_mlp rank"
        )
    if pool.dense_mlp == "rank" and sglang and pool.tp > 1:
        problems.append(
            f"{where}: dense_mlp=rank at tp={pool.tp}: SGLang's --moe-dense-tp-size takes 1 "
            "or the whole group (server_args.py): use group or replicated"
        )


def check_memory(pool: PoolConfig, plan: ReplicaPlan, perf: PerfModel, problems: list[str]) -> None:
    """A replica's memory plan that fails, EPLB's redundant experts that do not fit beside
    the weights, or weights that leave no KV block (a DP-attention rank's plan is
    ``rank_memory_plan``'s, the others the perf model's)."""
    # The budget the replica's scheduler runs (engine defaults included), as the replica does.
    budget = memory_token_budget(pool.scheduler, max_model_len=plan.model.max_context_tokens)
    try:
        if pool.dp_attention > 1:
            dense = pool_dense_mlp(pool)
            mem = rank_memory_plan(plan, pool.dp_attention, pool.cache, budget, dense)
        else:
            mem = perf.memory_plan(
                plan,
                block_size_tokens=vllm_block_size(plan, pool.cache.block_size),
                gpu_memory_utilization=pool.cache.gpu_memory_utilization,
                max_num_batched_tokens=budget,
            )
    except ServesimError as exc:
        problems.append(f"pool {pool.name!r} ({plan.gpu.name} tp={plan.tp} pp={plan.pp}): {exc}")
        return
    redundant = pool.eplb_redundant_experts
    if redundant and redundant > max_redundant_experts(plan, mem.kv_cache_bytes):
        problems.append(
            f"pool {pool.name!r}: eplb_redundant_experts={redundant} do not fit in the "
            f"{mem.kv_cache_bytes / 1e9:.1f} GB per GPU left after the weights"
        )
    if mem.num_kv_blocks < 1 and pool.cache.num_kv_blocks is None:
        problems.append(
            f"pool {pool.name!r}: weights {mem.weight_bytes / 1e9:.1f} GB per GPU leave no KV "
            f"cache in {mem.usable_bytes / 1e9:.1f} GB usable on {plan.gpu.name}"
        )


def check_draft(
    pool: PoolConfig,
    plan: ReplicaPlan,
    perf: PerfModel,
    speculative: SpeculativeConfig,
    problems: list[str],
) -> None:
    """The draft's weights and KV beside the target's (engine/speculative.py), as sized."""
    budget = memory_token_budget(pool.scheduler, max_model_len=plan.model.max_context_tokens)
    problem = draft_memory_problem(
        plan,
        speculative,
        perf,
        block_size_tokens=vllm_block_size(plan, pool.cache.block_size),
        gpu_memory_utilization=pool.cache.gpu_memory_utilization,
        max_num_batched_tokens=budget,
    )
    if problem is not None:
        problems.append(f"pool {pool.name!r}: {problem}")


def check_roles(cfg: DeploymentConfig, problems: list[str]) -> None:
    """Pool names used twice, prefill and decode pools without each other, unified pools
    mixed with them, and an autoscale minimum above the pool's replicas."""
    roles = [p.role for p in cfg.pools]
    names = [p.name for p in cfg.pools]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"pool name {name!r} is used by {names.count(name)} pools")
    if "prefill" in roles and "decode" not in roles:
        problems.append("a prefill pool needs a decode pool to hand its requests to")
    if "decode" in roles and "prefill" not in roles:
        problems.append("a decode pool needs a prefill pool to receive requests from")
    if "decode" in roles and "unified" in roles:
        problems.append("unified pools cannot be mixed with prefill/decode pools")
    for p in cfg.pools:
        if p.autoscale is not None and p.autoscale.min_replicas > p.replicas:
            problems.append(
                f"pool {p.name!r}: autoscale.min_replicas={p.autoscale.min_replicas} exceeds "
                f"replicas={p.replicas} (the maximum)"
            )
