"""Shared fixtures of the planner tests: a constant-service perf model and tiny scenarios."""

from __future__ import annotations

from dataclasses import dataclass

from servesim.perf.types import BatchShape, MemoryPlan, ReplicaPlan, StageTimes
from servesim.planner.scenario import Scenario, SLOCriterion
from servesim.workload.config import WorkloadConfig


@dataclass(frozen=True)
class ConstantPerf:
    """Every iteration takes ``service_s``, whatever the batch; memory is plentiful."""

    service_s: float = 1.0

    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        return StageTimes(stage_s=(self.service_s,) * plan.pp)

    def memory_plan(
        self,
        plan: ReplicaPlan,
        *,
        block_size_tokens: int = 16,
        gpu_memory_utilization: float = 0.9,
        max_num_batched_tokens: int = 8192,
    ) -> MemoryPlan:
        num_blocks = 100_000
        return MemoryPlan(
            gpu_memory_bytes=80 * 2**30,
            usable_bytes=72 * 2**30,
            weight_bytes=2**30,
            activation_bytes=0,
            overhead_bytes=0,
            kv_cache_bytes=num_blocks * block_size_tokens * 1024,
            kv_bytes_per_token=1024.0,
            block_size_tokens=block_size_tokens,
            num_kv_blocks=num_blocks,
        )


def fixed_workload(prompt_tokens: int, output_tokens: int) -> WorkloadConfig:
    """Poisson arrivals of identical requests."""
    return WorkloadConfig.model_validate(
        {
            "arrival": {"kind": "poisson", "rate_per_s": 1.0},
            "lengths": {
                "kind": "independent",
                "prompt": {"kind": "fixed", "tokens": prompt_tokens},
                "output": {"kind": "fixed", "tokens": output_tokens},
            },
        }
    )


def small_scenario(**criterion: float) -> Scenario:
    """Llama-3.1-8B on ShareGPT with few requests per probe (fast)."""
    return Scenario(
        model="llama-3.1-8b",
        workload=WorkloadConfig(preset="sharegpt-vidur"),
        criterion=SLOCriterion(**criterion),  # type: ignore[arg-type]
        requests_per_replica=80,
        min_requests=80,
    )
