"""The cost model: batch shape -> iteration time (op by op), and the memory plan.

``RooflinePerfModel`` is the default ``PerfModel``; ``explain`` lists an iteration's ops;
``op_time_s`` prices one operator under a kernel stack (docs/cost-model.md).

The names load on first use (``servesim.core.lazy``): importing one perf module (the KV
layout, the shapes) does not load the whole cost model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servesim.core.lazy import lazy_exports

if TYPE_CHECKING:
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

# name -> the module (under servesim.perf) that defines it
_EXPORTS = {
    "check_plan": "memory",
    "OpTime": "op_query",
    "op_time_s": "op_query",
    "RooflinePerfModel": "roofline",
    "BatchShape": "types",
    "MemoryPlan": "types",
    "OpCost": "types",
    "PerfModel": "types",
    "ReplicaPlan": "types",
    "StageTimes": "types",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

_DEFAULT: RooflinePerfModel | None = None


def default_perf_model() -> RooflinePerfModel:
    """A process-wide model on the packaged calibration (its caches are shared)."""
    from servesim.perf.roofline import RooflinePerfModel

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
