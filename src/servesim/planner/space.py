"""The deployment search space: candidate plans built from the user's hardware and options.

A ``PlanSpec`` (``servesim.planner.plan``, re-exported here) is one candidate deployment
(GPU type, parallelism, replicas, formats, scheduler knobs). ``SearchSpace`` holds what the
user offers (GPU types and how many of each, a GPU or dollar budget, dtypes, scheduler
variants) and ``enumerate_plans`` expands it into every combination that divides the model
and fits the budget. Disaggregated plans (DistServe/Splitwise) give the prefill pool its own
GPU type and TP degree (e.g. H100 prefill with A100 decode, as Splitwise proposes); MoE
models also vary the expert-parallel degree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import product

from servesim.cluster import ROUTERS
from servesim.core.errors import ConfigError, UnknownNameError
from servesim.perf.dp_cost import ALL2ALL_BACKENDS, DENSE_MLP_MODES
from servesim.planner.plan import DEFAULT_ALL2ALL, PLACEMENTS, PlanSpec, SchedulerVariant
from servesim.specs.catalog import get_gpu
from servesim.specs.cluster import default_node, get_network
from servesim.specs.model import ModelSpec


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """What the user offers the planner.

    Attributes:
        gpus: ``(gpu name, GPUs available)`` pairs.
        max_total_gpus: cap on GPUs per deployment (None: the availability only).
        max_price_per_hour_usd: cap on a deployment's rent (None: no cap).
        tp_options: tensor-parallel degrees to try (those not dividing the model are skipped).
        pp_options: pipeline-parallel degrees to try.
        max_replicas: cap on replicas (None: as many as the GPUs allow).
        dtypes: weight formats to try.
        kv_dtypes: KV-cache formats to try (None entry: the default for the weights).
        schedulers: scheduler variants to try.
        disaggregated: also try prefill/decode disaggregation (every P:D split that fits).
        routers: entry routers to try when there is more than one replica to route to.
        per_phase: with ``disaggregated``, let the prefill pool take its own GPU type (of
            ``gpus``) and TP degree (of ``tp_options``) within the GPUs available; False:
            both pools use the same hardware.
        ep_options: expert-parallel degrees tried for MoE models (those within a replica's
            GPUs; ep=1 only for dense models). Degrees that vLLM refuses (not dividing the
            experts or tp) are listed once and recorded infeasible with the reason.
        per_phase_knobs: with ``disaggregated`` and ``per_phase``, the prefill pool also
            takes its own PP degree (of ``pp_options``), weight format (of ``dtypes``) and
            scheduler variant (of ``schedulers``); False: those are shared by both pools.
        placements: replica placements tried for disaggregated plans (``plan.PLACEMENTS``:
            ``pack`` shares servers and NVLink where pools fit, ``spread`` puts every
            replica on its own server so handoffs cross the network); ``spread`` is tried
            only when every replica fits one server.
        networks: inter-node networks tried for disaggregated plans (``specs.cluster``
            names; None: the GPU's usual one).
        dp_attention_options: data-parallel-attention group sizes tried for MoE models
            (colocated, pp=1, EP = tp x size across the ranks, vLLM's
            ``--data-parallel-size`` with ``--enable-expert-parallel``; 1: none). Sizes whose
            EP does not divide the experts are listed once and recorded infeasible. A group
            wider than one server is tried on each of ``networks``.
        all2all_backends: how DP-attention plans move tokens to the experts (vLLM's
            ``--all2all-backend`` values, ``perf.dp_cost.ALL2ALL_BACKENDS``); each is tried.
        dense_mlp_modes: where DP-attention plans run a MoE model's dense MLP layers (the
            pool's ``dense_mlp``); modes the engine cannot run are recorded infeasible.
    """

    gpus: tuple[tuple[str, int], ...]
    max_total_gpus: int | None = None
    max_price_per_hour_usd: float | None = None
    tp_options: tuple[int, ...] = (1, 2, 4, 8)
    pp_options: tuple[int, ...] = (1, 2)
    max_replicas: int | None = None
    dtypes: tuple[str, ...] = ("bf16",)
    kv_dtypes: tuple[str | None, ...] = (None,)
    schedulers: tuple[SchedulerVariant, ...] = (SchedulerVariant(),)
    disaggregated: bool = False
    routers: tuple[str, ...] = ("round_robin",)
    per_phase: bool = True
    ep_options: tuple[int, ...] = (1, 2, 4, 8)
    per_phase_knobs: bool = False
    placements: tuple[str, ...] = ("pack",)
    networks: tuple[str | None, ...] = (None,)
    dp_attention_options: tuple[int, ...] = (1,)
    all2all_backends: tuple[str, ...] = (DEFAULT_ALL2ALL,)
    dense_mlp_modes: tuple[str, ...] = ("auto",)

    def __post_init__(self) -> None:
        for mode in self.dense_mlp_modes:
            if mode not in ("auto", *DENSE_MLP_MODES):
                raise UnknownNameError("dense MLP mode", mode, ["auto", *DENSE_MLP_MODES])
        for backend in self.all2all_backends:
            if backend not in ALL2ALL_BACKENDS:
                raise UnknownNameError("all2all backend", backend, list(ALL2ALL_BACKENDS))
        if not self.all2all_backends:
            raise ConfigError("all2all_backends", "", "give at least one backend")
        known = ROUTERS.names()
        for router in self.routers:
            if router not in known:
                raise UnknownNameError("router", router, known)
        for placement in self.placements:
            if placement not in PLACEMENTS:
                raise UnknownNameError("placement", placement, list(PLACEMENTS))
        for network in self.networks:
            if network is not None:
                get_network(network)  # unknown names fail here, listing the known ones
        if not self.placements or not self.networks:
            raise ConfigError("placements", "", "give at least one placement and network")
        if not self.gpus:
            raise ConfigError("gpus", "", "give at least one GPU type, e.g. h100-sxm:8")
        for name, count in self.gpus:
            get_gpu(name)  # unknown names fail here, with "did you mean"
            if count < 1:
                raise ConfigError("gpus", f"{name}:{count}", "the count must be >= 1")


def parse_gpus(text: str) -> tuple[tuple[str, int], ...]:
    """Parse ``h100-sxm:8,a100-80gb:4`` into ``(("h100-sxm", 8), ("a100-80gb", 4))``.

    Every type needs its count (no silent "1"), at least 1, and each type is named once.
    """
    out: list[tuple[str, int]] = []
    for item in (p.strip() for p in text.split(",") if p.strip()):
        name, _, count = item.partition(":")
        try:
            num = int(count)
        except ValueError:
            raise ConfigError("gpus", item, "expected NAME:COUNT, e.g. h100-sxm:8") from None
        if num < 1:
            raise ConfigError("gpus", item, "the count must be >= 1")
        gpu = get_gpu(name).name
        if any(gpu == seen for seen, _ in out):
            raise ConfigError("gpus", text, f"{gpu} is listed twice; give its total count once")
        out.append((gpu, num))
    if not out:
        raise ConfigError("gpus", text, "expected NAME:COUNT[,NAME:COUNT...]")
    return tuple(out)


def parse_ints(text: str, name: str, minimum: int = 1) -> tuple[int, ...]:
    """Parse ``1,2,4,8`` (a CLI list) into distinct integers >= ``minimum``; ``name`` is the
    flag for errors."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(name, text, "expected comma-separated integers, e.g. 1,2,4,8") from None
    if not values:
        raise ConfigError(name, text, "give at least one value")
    low = [v for v in values if v < minimum]
    if low:
        raise ConfigError(name, text, f"every value must be >= {minimum} (got {low[0]})")
    return tuple(dict.fromkeys(values))


def divides_model(model: ModelSpec, tp: int, pp: int, ep: int = 1, dp: int = 1) -> str | None:
    """Why ``tp``/``pp``/``ep`` (and ``dp`` DP-attention ranks) cannot split ``model``
    (vLLM's checks), or None when they can."""
    if model.num_attention_heads % tp:
        return f"tp={tp} does not divide the {model.num_attention_heads} attention heads"
    kv = model.num_kv_heads
    if model.mla is None and ((tp <= kv and kv % tp) or (tp > kv and tp % kv)):
        return f"tp={tp} neither divides nor is a multiple of the {kv} KV heads"
    if model.ffn_size % tp:
        return f"tp={tp} does not divide the FFN size {model.ffn_size}"
    if pp > model.num_layers:
        return f"pp={pp} exceeds the {model.num_layers} layers"
    if dp > 1:
        if model.moe is None or model.moe.num_experts % (tp * dp) or pp != 1:
            return f"dp_attention={dp}: EP = tp x dp = {tp * dp} must divide the experts (pp=1)"
    elif ep > 1 and (model.moe is None or model.moe.num_experts % ep or tp % ep):
        return f"ep={ep} must divide the experts and tp={tp}"
    return None


def ep_degrees(space: SearchSpace, model: ModelSpec, tp: int, pp: int) -> tuple[int, ...]:
    """EP degrees to try for a ``tp`` x ``pp`` replica: 1, plus for MoE models every
    option above 1 within the replica's GPUs (vLLM spreads experts over the replica's ranks)."""
    if model.moe is None:
        return (1,)
    more = tuple(ep for ep in space.ep_options if 1 < ep <= tp * pp)
    return (1, *more) if 1 not in more else more


def _replica_limit(space: SearchSpace, available: int, per_replica: int) -> int:
    limit = available // per_replica
    if space.max_total_gpus is not None:
        limit = min(limit, space.max_total_gpus // per_replica)
    if space.max_replicas is not None:
        limit = min(limit, space.max_replicas)
    return limit


def enumerate_plans(
    space: SearchSpace,
    model: ModelSpec,
    holds_model: Callable[[PlanSpec], bool] | None = None,
) -> Iterator[PlanSpec]:
    """Every plan of ``space`` that fits the GPUs available and the budgets.

    ``holds_model`` (e.g. the pre-filter's memory check on a one-replica colocated plan)
    says whether a pool's hardware can run the model at all; a disaggregated pairing with a
    pool that cannot is listed with one replica per pool only, so its reason is recorded
    once instead of once per P:D split.

    Parallel degrees that do not divide ``model`` are still listed (the pre-filter records
    them as infeasible with vLLM's reason, so nothing disappears silently), but with one
    replica only: more replicas of an impossible replica add nothing. Order is deterministic:
    GPU types as given, then tp, pp, ep, replicas, dtypes, schedulers; disaggregated plans
    follow their decode hardware's colocated plans (prefill hardware, then P:D splits).
    """
    refusal = split_refusal(model, space.dp_attention_options)
    if refusal is not None:
        raise ConfigError("dp_attention", max(space.dp_attention_options), refusal)
    for gpu, available in space.gpus:
        for tp in space.tp_options:
            for pp in space.pp_options:
                if tp * pp > available:
                    continue
                for ep in ep_degrees(space, model, tp, pp):
                    base = PlanSpec(gpu, tp, pp, ep=ep)
                    yield from _colocated(space, model, base, available)
                    if space.disaggregated and divides_model(model, tp, pp, ep) is None:
                        yield from _disaggregated(space, model, base, holds_model)
            yield from _dp_attention(space, model, gpu, tp, available)


def split_refusal(model: ModelSpec, dp_options: Sequence[int]) -> str | None:
    """Why no engine runs ``model`` with attention and FFN split within a replica (DP
    attention ranks), or None when the split is possible (a MoE model, or no split asked).

    vLLM's ``--data-parallel-size`` of a dense model runs independent replicas (its DP
    ranks synchronise only in MoE layers: docs/serving/data_parallel_deployment.md); SGLang's
    ``--enable-dp-attention`` is written into MoE model files (DeepSeek-V2/V3, Qwen2/3-MoE:
    sglang PR #6121) and its dense MLP options (``--moe-dense-tp-size``) are for the dense
    layers of those models; TensorRT-LLM's ``enable_attention_dp`` is for DeepSeek-style MoE.
    """
    if model.moe is not None or all(dp <= 1 for dp in dp_options):
        return None
    return (
        f"{model.name} is dense: no engine splits attention and FFN parallelism inside a "
        "dense replica (vLLM's --data-parallel-size gives independent replicas, SGLang's "
        "--enable-dp-attention is for MoE models only); use more replicas instead"
    )


def _dp_attention(
    space: SearchSpace, model: ModelSpec, gpu: str, tp: int, available: int
) -> Iterator[PlanSpec]:
    """DP-attention plans of ``tp``-GPU ranks (MoE models, pp=1), vLLM's DP load balancer
    routing over the ranks, for every all2all backend and, when a group is wider than one
    server, every network between the servers."""
    if model.moe is None:
        return
    ranks = replace(space, routers=("dp_least_loaded",))
    server = default_node(get_gpu(gpu)).num_gpus
    for dp in space.dp_attention_options:
        if dp > 1 and tp * dp <= available:
            networks = space.networks if tp * dp > server else (None,)
            modes = product(space.all2all_backends, networks, space.dense_mlp_modes)
            for all2all, network, dense in modes:
                base = PlanSpec(
                    gpu, tp, 1, ep=tp * dp, dp_attention=dp, router="dp_least_loaded",
                    all2all=all2all, network=network, dense_mlp=dense,
                )  # fmt: skip
                yield from _colocated(ranks, model, base, available)


def _within_price(space: SearchSpace, plan: PlanSpec) -> bool:
    cap = space.max_price_per_hour_usd
    return cap is None or plan.price_per_hour_usd <= cap


def _colocated(
    space: SearchSpace, model: ModelSpec, base: PlanSpec, available: int
) -> Iterator[PlanSpec]:
    limit = _replica_limit(space, available, base.gpus_per_replica)
    if divides_model(model, base.tp, base.pp, base.ep, base.dp_attention) is not None:
        limit = min(limit, 1)
    for replicas in range(1, limit + 1):
        plan = replace(base, replicas=replicas)
        if _within_price(space, plan):
            yield from _variants(space, plan)


def _prefill_hardware(space: SearchSpace, model: ModelSpec, base: PlanSpec) -> list[PlanSpec]:
    """Disaggregated plans (one replica per pool) for every prefill GPU type and TP."""
    if not space.per_phase:
        return [replace(base, mode="disaggregated", prefill_replicas=1)]
    pps = space.pp_options if space.per_phase_knobs else (base.pp,)
    out = []
    for gpu, available in space.gpus:
        for tp in space.tp_options:
            for pp in pps:
                if tp * pp > available or divides_model(model, tp, pp, base.ep):
                    continue
                same = (gpu, tp) == (base.gpu, base.tp)
                out.append(
                    replace(
                        base,
                        mode="disaggregated",
                        prefill_replicas=1,
                        prefill_gpu=None if same else gpu,
                        prefill_tp=None if same else tp,
                        prefill_pp=None if pp == base.pp else pp,
                    )
                )
    return out


def _fits(space: SearchSpace, plan: PlanSpec) -> bool:
    available = dict(space.gpus)
    if any(n > available[g] for g, n in plan.gpus_by_type().items()):
        return False
    if space.max_total_gpus is not None and plan.num_gpus > space.max_total_gpus:
        return False
    if space.max_replicas is not None and plan.num_replicas > space.max_replicas:
        return False
    return _within_price(space, plan)


def _disaggregated(
    space: SearchSpace,
    model: ModelSpec,
    base: PlanSpec,
    holds_model: Callable[[PlanSpec], bool] | None,
) -> Iterator[PlanSpec]:
    """Every P:D split of every prefill hardware that fits (GPUs, budgets, replica cap)."""
    most = max(dict(space.gpus).values())
    for one in _prefill_hardware(space, model, base):
        limit = most
        if holds_model is not None and not all(
            holds_model(replace(one.phase(role), replicas=1)) for role in ("prefill", "decode")
        ):
            limit = 1  # 1P:1D alone records why this pairing cannot run
        for prefill in range(1, limit + 1):
            for decode in range(1, limit + 1):
                plan = replace(one, replicas=decode, prefill_replicas=prefill)
                if not _fits(space, plan):
                    break
                yield from _variants(space, plan)


def _variants(space: SearchSpace, plan: PlanSpec) -> Iterator[PlanSpec]:
    # With one replica to route to (colocated x1, or a single prefill replica), routers agree.
    entry_replicas = plan.prefill_replicas or plan.replicas
    routers = space.routers if entry_replicas > 1 else space.routers[:1]
    for dtype in space.dtypes:
        for kv_dtype in space.kv_dtypes:
            for sched in space.schedulers:
                for router in routers:
                    one = replace(
                        plan, dtype=dtype, kv_dtype=kv_dtype, scheduler=sched, router=router
                    )
                    if plan.mode == "disaggregated":
                        yield from _pool_variants(space, one)
                    else:
                        yield one


def _pool_variants(space: SearchSpace, plan: PlanSpec) -> Iterator[PlanSpec]:
    """A disaggregated plan's prefill formats and knobs (when searched), then placements and
    networks; a prefill value equal to the decode pool's is written None (one key per plan)."""
    knobs = space.per_phase_knobs and space.per_phase
    dtypes = space.dtypes if knobs else (plan.dtype,)
    schedulers = space.schedulers if knobs else (plan.scheduler,)
    fits_a_server = "spread" in space.placements and all(
        plan.phase(role).gpus_per_replica <= default_node(get_gpu(plan.phase(role).gpu)).num_gpus
        for role in ("prefill", "decode")
    )
    for dtype in dtypes:
        for sched in schedulers:
            for placement in space.placements:
                if placement == "spread" and not fits_a_server:
                    continue
                for network in space.networks:
                    yield replace(
                        plan,
                        prefill_dtype=None if dtype == plan.dtype else dtype,
                        prefill_scheduler=None if sched == plan.scheduler else sched,
                        placement=placement,
                        network=network,
                    )


def scheduler_grid(
    max_num_seqs: Sequence[int] = (256,),
    max_num_batched_tokens: Sequence[int | None] = (None,),
    chunked_prefill: Sequence[bool | None] = (None,),
) -> tuple[SchedulerVariant, ...]:
    """vLLM scheduler variants: every combination of the given knob values."""
    return tuple(
        SchedulerVariant("vllm", seqs, mbt, chunked)
        for seqs in max_num_seqs
        for mbt in max_num_batched_tokens
        for chunked in chunked_prefill
        # Without chunked prefill the budget must hold a whole prompt and vLLM's default
        # rule sets its own, so only explicitly chunked variants vary the budget.
        if chunked is True or mbt is None
    )
