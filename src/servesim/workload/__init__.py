"""Requests, arrival processes, length distributions, trace readers and workload presets.

Entry points: ``WorkloadConfig(...).build(streams)`` and ``load_trace(path)`` give a lazy
``Workload`` (an iterable of ``Request`` in arrival order); ``describe(workload)`` summarises it.
"""

from servesim.workload.arrivals import ARRIVALS, ArrivalProcess
from servesim.workload.config import WorkloadConfig
from servesim.workload.describe import WorkloadStats, describe
from servesim.workload.lengths import LENGTHS, LengthDistribution, LengthSampler
from servesim.workload.presets import Preset, get_preset, preset_names
from servesim.workload.request import Request
from servesim.workload.traces import Trace, TraceOptions, load_trace
from servesim.workload.workload import Workload

__all__ = [
    "ARRIVALS",
    "LENGTHS",
    "ArrivalProcess",
    "LengthDistribution",
    "LengthSampler",
    "Preset",
    "Request",
    "Trace",
    "TraceOptions",
    "Workload",
    "WorkloadConfig",
    "WorkloadStats",
    "describe",
    "get_preset",
    "load_trace",
    "preset_names",
]
