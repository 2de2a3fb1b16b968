"""Turn a chosen plan into something to run: a SimConfig mapping and vLLM launch flags.

``sim_config_dict`` returns a plain mapping with ``SimConfig``'s keys (the planner sits below
the config layer; ``servesim.api.plan_config`` validates it into a ``SimConfig``), so the
YAML written for the winner is accepted by ``servesim simulate --config``.
"""

from __future__ import annotations

import shlex
from typing import Any

from servesim.planner.scenario import Scenario, plan_roles, pool_fields
from servesim.planner.space import PlanSpec
from servesim.specs.catalog import resolve_model


def sim_config_dict(scenario: Scenario, plan: PlanSpec, rate_per_s: float | None) -> dict[str, Any]:
    """A ``SimConfig``-shaped mapping: ``plan`` serving ``scenario`` at ``rate_per_s``."""
    hardware: dict[str, Any] = {
        "gpu": plan.gpu,
        "tp": plan.tp,
        "pp": plan.pp,
        "dtype": plan.dtype,
    }
    if plan.kv_dtype is not None:
        hardware["kv_dtype"] = plan.kv_dtype
    workload = scenario.workload
    if rate_per_s is not None and rate_per_s > 0:
        workload = workload.with_rate(rate_per_s)
    crit = scenario.criterion
    slo: dict[str, Any] = {}
    if crit.ttft_p99_s is not None:
        slo["ttft_s"] = crit.ttft_p99_s
    if crit.tpot_p99_s is not None:
        slo["tpot_s"] = crit.tpot_p99_s
    if crit.min_attainment is not None:
        slo["attainment_target"] = crit.min_attainment
    out: dict[str, Any] = {
        "model": scenario.model,
        "hardware": hardware,
        "scheduler": plan.scheduler.to_dict(),
        "cache": scenario.cache.model_dump(mode="json", exclude_unset=True),
        "workload": workload.model_dump(mode="json", exclude_none=True),
        "slo": slo or None,
        "seed": scenario.seed,
        "num_requests": scenario.num_requests(plan),
    }
    if plan.per_phase or plan.ep > 1:
        # Pools with their own hardware (or EP, which ``hardware:`` has no field for) need
        # the full ``deployment:`` form; the shorthands below give every pool ``hardware``.
        del out["hardware"], out["scheduler"]
        out["deployment"] = _deployment_dict(scenario, plan)
        return out
    if plan.router != "round_robin":
        out["router"] = plan.router
    if plan.mode == "disaggregated":
        out["disagg"] = f"{plan.prefill_replicas}P:{plan.replicas}D"
    else:
        out["replicas"] = plan.replicas
    return out


def _deployment_dict(scenario: Scenario, plan: PlanSpec) -> dict[str, Any]:
    """The ``deployment:`` mapping: one pool per role, each with its own hardware."""
    pools = []
    for role in plan_roles(plan):
        pool = pool_fields(scenario, plan, role)
        pool["cache"] = scenario.cache.model_dump(mode="json", exclude_unset=True)
        if pool["kv_dtype"] is None:
            del pool["kv_dtype"]
        if pool["ep"] == 1:
            del pool["ep"]
        pools.append(pool)
    return {"pools": pools, "router": {"kind": plan.router}}


def vllm_flags(scenario: Scenario, plan: PlanSpec, role: str = "decode") -> list[str]:
    """``vllm serve`` arguments for one replica of ``plan``'s ``role`` pool (vLLM's CLI
    names; ``role`` matters only for disaggregated plans, whose pools differ in TP)."""
    phase = plan.phase(role if plan.mode == "disaggregated" else "unified")
    spec = resolve_model(scenario.model)
    model = spec.source if "/" in spec.source and " " not in spec.source else scenario.model
    s = phase.scheduler
    cache = scenario.cache
    args = [
        "vllm",
        "serve",
        model,
        "--tensor-parallel-size",
        str(phase.tp),
        "--pipeline-parallel-size",
        str(phase.pp),
        "--max-num-seqs",
        str(s.max_num_seqs),
        "--gpu-memory-utilization",
        str(cache.gpu_memory_utilization),
        "--block-size",
        str(cache.block_size),
    ]
    if phase.ep > 1:
        # vLLM has no separate EP size: --enable-expert-parallel spreads the experts over
        # the TP (x DP) ranks instead of sharding each expert.
        args.append("--enable-expert-parallel")
    if s.max_num_batched_tokens is not None:
        args += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
    if s.enable_chunked_prefill is not None:  # None: leave vLLM's own default
        args += ["--enable-chunked-prefill", str(s.enable_chunked_prefill)]
    if phase.dtype == "fp8":
        args += ["--quantization", "fp8"]
    elif phase.dtype in ("int8", "int4"):
        # Weight-only formats come from a pre-quantised checkpoint (AWQ/GPTQ); name it.
        args += ["--quantization", "<awq|gptq: the checkpoint's method>"]
    else:
        args += ["--dtype", "bfloat16" if phase.dtype == "bf16" else "float16"]
    if phase.kv_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    if cache.enable_prefix_caching:
        args.append("--enable-prefix-caching")
    return args


def vllm_command(scenario: Scenario, plan: PlanSpec) -> str:
    """The launch line(s), shell-quoted, with a note on replicas (one line per pool when
    the prefill and decode pools differ)."""
    if plan.mode == "disaggregated" and plan.per_phase:
        lines = []
        for role in ("prefill", "decode"):
            phase = plan.phase(role)
            lines.append(
                shlex.join(vllm_flags(scenario, plan, role))
                + f"   # {role}: {phase.replicas} instance(s) on {phase.gpu}, KV handed over "
                "by a --kv-transfer-config connector"
            )
        return "\n".join(lines)
    line = shlex.join(vllm_flags(scenario, plan))
    if plan.mode == "disaggregated":
        line += (
            f"   # {plan.prefill_replicas} prefill + {plan.replicas} decode instances, "
            "KV handed over by a --kv-transfer-config connector"
        )
    elif plan.replicas > 1:
        line += f"   # x{plan.replicas} instances behind a round-robin load balancer"
    return line
