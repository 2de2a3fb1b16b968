"""The cost model: batch shape -> iteration time (op by op), and the memory plan.

``RooflinePerfModel`` is the default ``PerfModel``; ``explain`` lists an iteration's ops;
``op_time_s`` prices one operator under a kernel stack (docs/cost-model.md).
"""

from __future__ import annotations

from servesim.perf.memory import check_plan
from servesim.perf.op_query import OpTime, op_time_s
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import (
    BatchShape,
    MemoryPlan,
    OpCost,
    PerfModel,
    ReplicaPlan,
    StageTimes,
)

_DEFAULT: RooflinePerfModel | None = None


def default_perf_model() -> RooflinePerfModel:
    """A process-wide model on the packaged calibration (its caches are shared)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = RooflinePerfModel()
    return _DEFAULT


def explain(plan: ReplicaPlan, batch: BatchShape) -> list[OpCost]:
    """Every op of one iteration of ``batch`` under ``plan``, with its cost (per GPU)."""
    return default_perf_model().explain(plan, batch)


__all__ = [
    "BatchShape",
    "MemoryPlan",
    "OpCost",
    "OpTime",
    "PerfModel",
    "ReplicaPlan",
    "RooflinePerfModel",
    "StageTimes",
    "check_plan",
    "default_perf_model",
    "explain",
    "op_time_s",
]
