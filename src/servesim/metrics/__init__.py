"""servesim.metrics: per-request records in, run summaries out.

``summarize(records, slo)`` gives a ``Summary`` whose latency, throughput and goodput figures
follow ``vllm bench serve``'s definitions (see ``servesim.metrics.summary``).

The names load on first use (``servesim.core.lazy``): importing one metrics module does not
load the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servesim.core.lazy import lazy_exports

if TYPE_CHECKING:
    from servesim.metrics.efficiency import Efficiency
    from servesim.metrics.slo import ClassAttainment, SLOResult, SLOSpec, SLOTargets
    from servesim.metrics.stats import LatencyStats, weighted_percentile
    from servesim.metrics.summary import Summary, summarize
    from servesim.metrics.timeseries import TimeSeriesStats

# name -> the module (under servesim.metrics) that defines it
_EXPORTS = {
    "Efficiency": "efficiency",
    "ClassAttainment": "slo",
    "SLOResult": "slo",
    "SLOSpec": "slo",
    "SLOTargets": "slo",
    "LatencyStats": "stats",
    "weighted_percentile": "stats",
    "Summary": "summary",
    "summarize": "summary",
    "TimeSeriesStats": "timeseries",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ClassAttainment",
    "Efficiency",
    "LatencyStats",
    "SLOResult",
    "SLOSpec",
    "SLOTargets",
    "Summary",
    "TimeSeriesStats",
    "summarize",
    "weighted_percentile",
]
