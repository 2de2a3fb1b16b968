"""servesim.metrics: per-request records in, run summaries out.

``summarize(records, slo)`` gives a ``Summary`` whose latency, throughput and goodput figures
follow ``vllm bench serve``'s definitions (see ``servesim.metrics.summary``).
"""

from servesim.metrics.efficiency import Efficiency
from servesim.metrics.slo import ClassAttainment, SLOResult, SLOSpec, SLOTargets
from servesim.metrics.stats import LatencyStats, weighted_percentile
from servesim.metrics.summary import Summary, summarize
from servesim.metrics.timeseries import TimeSeriesStats

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
