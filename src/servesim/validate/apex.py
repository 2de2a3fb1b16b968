"""Fidelity against real measurements: replay measured vLLM runs and compare the means.

The reference data is ``../shared/data/validation/apex_vllm_llama70b`` (real vLLM 0.6.0 runs of
Llama-3.1-70B on 8x H100-SXM, published by microsoft/apex_plus; see its PROVENANCE.md). Every plan
is replayed: a single-server plan (8TP, 4TP, 2TP) on the trace it actually served, a data-parallel
plan (2DP4TP, 4DP2TP) as independent servers, each replica on its OWN served trace (one per
``dp_rank``), all with the launch settings of that run. The replicas' means are combined as
``plans.csv`` combines the measured ones (``combine_replicas``) and the predicted mean TTFT, mean
inter-token latency (token-weighted, as the measurement) and mean end-to-end latency are compared
with the measured ones. A plan with a missing replica file is compared over the replicas present,
as ``plans.csv``'s own aggregate is.

The data is never copied into the package: the caller passes the folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from servesim.api import simulate
from servesim.config import SimConfig
from servesim.core.errors import ConfigError
from servesim.perf.types import PerfModel
from servesim.validate.apex_data import (
    MeasuredPlan,
    MeasuredRun,
    ServedMeans,
    combine_replicas,
    load_apex_plans,
)


def _rel(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured


def _errors(predicted: ServedMeans, measured: ServedMeans) -> dict[str, float]:
    return {
        "ttft": _rel(predicted.mean_ttft_s, measured.mean_ttft_s),
        "itl": _rel(predicted.mean_itl_s, measured.mean_itl_s),
        "e2e": _rel(predicted.mean_e2e_s, measured.mean_e2e_s),
    }


@dataclass(frozen=True, slots=True)
class RunComparison:
    """Predicted vs measured means of one server run."""

    run: MeasuredRun
    predicted: ServedMeans

    @property
    def is_consistent(self) -> bool:
        """The run's measured means agree with each other."""
        return self.run.is_consistent

    def errors(self) -> dict[str, float]:
        """Signed relative error per metric: (predicted - measured) / measured."""
        return _errors(self.predicted, self.run.measured)


@dataclass(frozen=True, slots=True)
class PlanComparison:
    """Predicted vs measured means of one plan; the replicas' predictions combined."""

    plan: MeasuredPlan
    replicas: tuple[RunComparison, ...]

    @property
    def predicted(self) -> ServedMeans:
        """The replicas' predicted means, combined as the measured ones."""
        return combine_replicas([r.predicted for r in self.replicas])

    @property
    def is_consistent(self) -> bool:
        """The plan's measured means agree with each other (every replica run)."""
        return self.plan.is_consistent

    def errors(self) -> dict[str, float]:
        """Signed relative error per metric: (predicted - measured) / measured."""
        return _errors(self.predicted, self.plan.measured)


def mape(
    comparisons: Sequence[RunComparison] | Sequence[PlanComparison],
    *,
    consistent_only: bool = False,
) -> dict[str, float]:
    """Mean absolute percentage error per metric over the runs or plans (as a fraction).

    ``consistent_only`` leaves out those whose measured means contradict each other.
    """
    if consistent_only:
        comparisons = [c for c in comparisons if c.is_consistent]
    if not comparisons:
        return {}
    keys = comparisons[0].errors().keys()
    return {k: sum(abs(c.errors()[k]) for c in comparisons) / len(comparisons) for k in keys}


def mape_by_subset(comparisons: Sequence[PlanComparison]) -> dict[str, dict[str, float]]:
    """The headline MAPE (consistent plans), its single-server and DP parts, and all plans."""
    single = [c for c in comparisons if not c.plan.is_data_parallel]
    parallel = [c for c in comparisons if c.plan.is_data_parallel]
    return {
        "consistent_plans": mape(comparisons, consistent_only=True),
        "consistent_single_server": mape(single, consistent_only=True),
        "consistent_data_parallel": mape(parallel, consistent_only=True),
        "all_plans": mape(comparisons),
    }


def replay_config(run: MeasuredRun, *, seed: int = 0) -> dict[str, object]:
    """The ``SimConfig`` (as a mapping) that replays ``run`` with its launch settings."""
    return {
        "model": "llama-3.1-70b",
        "hardware": {
            "gpu": "h100-sxm",
            "tp": run.tp,
            "dtype": "bf16",
            "gpu_memory_utilization": run.gpu_memory_utilization,
            "custom_all_reduce": run.use_custom_all_reduce,
        },
        "scheduler": {
            "kind": "vllm",
            "version": "v0",
            "enable_chunked_prefill": run.chunked_prefill,
            "max_num_batched_tokens": run.max_num_batched_tokens,
            "max_num_seqs": 256,
        },
        # The served lengths (what the server counted), at the client's arrival offsets (a DP
        # replica's are the parent trace's global offsets: only latencies are compared).
        "workload": {"trace": {"path": str(run.served_trace), "format": "served"}},
        "seed": seed,
    }


def replay(run: MeasuredRun, *, perf: PerfModel | None = None) -> RunComparison:
    """Simulate ``run`` and compare the means with the measurement."""
    summary = simulate(SimConfig.from_dict(replay_config(run)), perf=perf).summary
    if summary.ttft.mean_s is None or summary.itl.mean_s is None or summary.e2e.mean_s is None:
        raise ConfigError("served_trace", str(run.served_trace), "no request completed")
    return RunComparison(
        run=run,
        predicted=ServedMeans(
            num_requests=summary.ttft.count,
            num_decode_gaps=summary.itl.count,
            mean_ttft_s=summary.ttft.mean_s,
            mean_itl_s=summary.itl.mean_s,
            mean_e2e_s=summary.e2e.mean_s,
        ),
    )


def replay_plan(
    plan: MeasuredPlan,
    *,
    perf: PerfModel | None = None,
    on_run: Callable[[str], None] | None = None,
) -> PlanComparison:
    """Simulate every present replica of ``plan`` as an independent server and combine them."""
    comparisons = []
    for run in plan.replicas:
        if on_run is not None:
            on_run(run.name)
        comparisons.append(replay(run, perf=perf))
    return PlanComparison(plan=plan, replicas=tuple(comparisons))


def validate_apex(
    data_dir: Path, *, perf: PerfModel | None = None, on_run: Callable[[str], None] | None = None
) -> list[PlanComparison]:
    """Replay every APEX vLLM plan, DP ones replica by replica; one comparison per plan."""
    return [replay_plan(p, perf=perf, on_run=on_run) for p in load_apex_plans(data_dir)]
