"""Requests, arrival processes, length distributions, trace readers and workload presets.

Entry points: ``WorkloadConfig(...).build(streams)`` and ``load_trace(path)`` give a lazy
``Workload`` (an iterable of ``Request`` in arrival order, ids 0..n-1); ``describe(workload)``
summarises it. Examples::

    from servesim.core.rng import RandomStreams
    from servesim.workload import WorkloadConfig, describe, load_trace

    streams = RandomStreams(0)
    chat = WorkloadConfig(preset="sharegpt-vidur", rate_per_s=4.0, num_requests=2000).build(streams)
    bursty = WorkloadConfig(
        arrival={"kind": "gamma", "rate_per_s": 5.0, "cv": 3.0},
        lengths={"kind": "independent", "prompt": {"kind": "fixed", "tokens": 512},
                 "output": {"kind": "lognormal", "median_tokens": 200, "sigma": 1.0}},
        duration_s=600,
    ).build(streams)
    mooncake = load_trace("conversation_trace.jsonl", max_context_tokens=32768)
    print(describe(mooncake).prefix_reuse_ratio, mooncake.num_capped_requests)
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
