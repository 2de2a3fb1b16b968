"""Turn a chosen plan into something to run: a SimConfig mapping and the engine's launch line.

``sim_config_dict`` returns a plain mapping with ``SimConfig``'s keys (the planner sits below
the config layer; ``servesim.api.plan_config`` validates it into a ``SimConfig``), so the
YAML written for the winner is accepted by ``servesim simulate --config``. The launch line is
written by the chosen engine profile's launcher (``EngineProfile.launch_command``), so it is the
profile's program, flags and version.
"""

from __future__ import annotations

from typing import Any

from servesim.engine.profiles import AUTO, LaunchSettings, resolve_engine
from servesim.planner.scenario import (
    Scenario,
    SLOCriterion,
    node_groups,
    plan_roles,
    pool_fields,
)
from servesim.planner.space import PlanSpec
from servesim.specs.catalog import resolve_model


def sim_config_dict(
    scenario: Scenario, plan: PlanSpec, rate_per_s: float | None, engine: str | None = None
) -> dict[str, Any]:
    """A ``SimConfig``-shaped mapping: ``plan`` serving ``scenario`` at ``rate_per_s`` on
    ``engine`` (a profile name; None: the scenario's, so the config runs the engine the plan
    was evaluated on; ``auto``: left out, the scheduler decides)."""
    engine = scenario.engine if engine is None else engine
    workload = scenario.workload
    if rate_per_s is not None and rate_per_s > 0:
        workload = workload.with_rate(rate_per_s)
    out: dict[str, Any] = {
        "model": scenario.model,
        "hardware": _hardware_dict(plan, engine),
        "scheduler": plan.scheduler.to_dict(),
        "cache": scenario.cache.model_dump(mode="json", exclude_unset=True),
        "workload": workload.model_dump(mode="json", exclude_none=True),
        "slo": _slo_dict(scenario.criterion),
        "seed": scenario.seed,
        "num_requests": scenario.num_requests(plan),
    }
    if plan.per_phase or plan.ep > 1 or plan.dp_attention > 1 or node_groups(plan) is not None:
        # Pools with their own hardware (or EP or servers, which ``hardware:`` has no field
        # for) need the full ``deployment:`` form; the shorthands give every pool ``hardware``.
        del out["hardware"], out["scheduler"]
        out["deployment"] = _deployment_dict(scenario, plan, engine)
        return out
    if plan.router != "round_robin":
        out["router"] = plan.router
    if plan.mode == "disaggregated":
        out["disagg"] = f"{plan.prefill_replicas}P:{plan.replicas}D"
    else:
        out["replicas"] = plan.replicas
    return out


def _hardware_dict(plan: PlanSpec, engine: str) -> dict[str, Any]:
    """The ``hardware:`` shorthand of a plan whose pools share one hardware (``engine``
    left out under ``auto``, ``kv_dtype`` only when the plan sets one)."""
    hardware: dict[str, Any] = {
        "gpu": plan.gpu,
        "tp": plan.tp,
        "pp": plan.pp,
        "dtype": plan.dtype,
    }
    if engine != AUTO:
        hardware["engine"] = engine
    if plan.kv_dtype is not None:
        hardware["kv_dtype"] = plan.kv_dtype
    return hardware


def _slo_dict(crit: SLOCriterion) -> dict[str, Any] | None:
    """The ``slo:`` mapping of the search's criterion (None when it sets no target)."""
    slo: dict[str, Any] = {}
    if crit.ttft_p99_s is not None:
        slo["ttft_s"] = crit.ttft_p99_s
    if crit.tpot_p99_s is not None:
        slo["tpot_s"] = crit.tpot_p99_s
    if crit.min_attainment is not None:
        slo["attainment_target"] = crit.min_attainment
    return slo or None


def _deployment_dict(scenario: Scenario, plan: PlanSpec, engine: str) -> dict[str, Any]:
    """The ``deployment:`` mapping: one pool per role, each with its own hardware."""
    pools = []
    for role in plan_roles(plan):
        pool = pool_fields(scenario, plan, role)
        if engine != AUTO:
            pool["engine"] = engine
        pool["cache"] = scenario.cache.model_dump(mode="json", exclude_unset=True)
        if pool["kv_dtype"] is None:
            del pool["kv_dtype"]
        if pool["ep"] == 1:
            del pool["ep"]
        pools.append(pool)
    out: dict[str, Any] = {"pools": pools, "router": {"kind": plan.router}}
    nodes = node_groups(plan)
    if nodes is not None:
        out["nodes"] = [n.model_dump(mode="json", exclude_none=True) for n in nodes]
    return out


def launch_settings(
    scenario: Scenario, plan: PlanSpec, role: str = "decode", engine: str = AUTO
) -> LaunchSettings:
    """What one replica of ``plan``'s ``role`` pool is launched with (``role`` matters only
    for disaggregated plans, whose pools differ in hardware); a prefix-caching setting left
    to the engine takes ``engine``'s default."""
    phase = plan.phase(role if plan.mode == "disaggregated" else "unified")
    profile = resolve_engine(engine, phase.scheduler.kind)
    spec = resolve_model(scenario.model)
    model = spec.source if "/" in spec.source and " " not in spec.source else scenario.model
    s = phase.scheduler
    cache = scenario.cache
    prefix = cache.enable_prefix_caching
    if prefix is None:
        prefix = bool(profile.cache.get("enable_prefix_caching", False))
    return LaunchSettings(
        model=model,
        tp=phase.tp,
        pp=phase.pp,
        dtype=phase.dtype,
        max_num_seqs=s.max_num_seqs,
        max_num_batched_tokens=s.max_num_batched_tokens,
        enable_chunked_prefill=s.enable_chunked_prefill,
        enable_prefix_caching=prefix,
        gpu_memory_utilization=cache.gpu_memory_utilization,
        block_size=cache.block_size,
        ep=phase.ep,
        kv_dtype=phase.kv_dtype,
        dp_attention=phase.dp_attention,
        all2all_backend=phase.all2all,
        dense_mlp=phase.dense_mlp,
    )


def _dp_note(plan: PlanSpec, engine: str) -> str:
    """What a DP-attention plan's line means, and where the engine cannot run it as written."""
    dp, ep = plan.dp_attention, plan.tp * plan.dp_attention
    text = f"; {dp} attention ranks of tp={plan.tp}, experts over EP={ep}"
    if engine == "vllm-0.6":  # V0 has no DP ranks (DPEngineCoreProc is V1's, vLLM >= 0.9)
        text += "; DP attention needs vLLM >= 0.9 (V1): plan with --engine vllm-v1"
    elif engine == "trtllm":  # its DP attention is an LLM API option, not a flag
        text += (
            f"; TensorRT-LLM: --tp_size {ep} with enable_attention_dp: true in "
            "--extra_llm_api_options (attention DP over all its ranks, each of tp=1)"
        )
    return text


def launch_args(
    scenario: Scenario, plan: PlanSpec, role: str = "decode", engine: str = AUTO
) -> list[str]:
    """The launch command of one replica of ``plan``'s ``role`` pool as argv, in the chosen
    engine's CLI (``vllm serve``, ``python -m sglang.launch_server``, ``trtllm-serve``)."""
    phase = plan.phase(role if plan.mode == "disaggregated" else "unified")
    profile = resolve_engine(engine, phase.scheduler.kind)
    return profile.launcher.args(launch_settings(scenario, plan, role, engine), profile.version)


def launch_command(scenario: Scenario, plan: PlanSpec, engine: str = AUTO) -> str:
    """The launch line(s) for ``engine`` (``auto``: vLLM 0.6, the planner's default
    scheduler), shell-quoted, each naming the engine version, with a note on replicas (one
    line per pool when the prefill and decode pools differ)."""
    profile = resolve_engine(engine, plan.scheduler.kind)

    def line(role: str) -> str:
        return profile.launch_command(launch_settings(scenario, plan, role, engine))

    if plan.mode == "disaggregated" and plan.per_phase:
        lines = []
        for role in ("prefill", "decode"):
            phase = plan.phase(role)
            lines.append(
                line(role) + f"; {role}: {phase.replicas} instance(s) on {phase.gpu}, KV "
                "handed over by a KV-transfer connector"
            )
        return "\n".join(lines)
    text = line("decode")
    if plan.dp_attention > 1:
        text += _dp_note(plan, profile.name)
    if plan.mode == "disaggregated":
        text += (
            f"; {plan.prefill_replicas} prefill + {plan.replicas} decode instances, "
            "KV handed over by a KV-transfer connector"
        )
    elif plan.replicas > 1:
        text += f"; x{plan.replicas} instances behind a round-robin load balancer"
    return text
