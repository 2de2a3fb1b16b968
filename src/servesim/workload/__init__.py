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

from __future__ import annotations

import importlib
from typing import Any

# ``describe`` is also a submodule's name: bound here eagerly, so importing the submodule can
# never shadow the function.
from servesim.workload.describe import WorkloadStats, describe

# name -> module that defines it, imported on first use (PEP 562): ``servesim.engine`` needs
# ``Request`` only, and a preset run never loads the trace readers.
_LAZY = {
    "ARRIVALS": "servesim.workload.arrivals",
    "ArrivalProcess": "servesim.workload.arrivals",
    "WorkloadConfig": "servesim.workload.config",
    "LENGTHS": "servesim.workload.lengths",
    "LengthDistribution": "servesim.workload.lengths",
    "LengthSampler": "servesim.workload.lengths",
    "Preset": "servesim.workload.presets",
    "get_preset": "servesim.workload.presets",
    "preset_names": "servesim.workload.presets",
    "Request": "servesim.workload.request",
    "Trace": "servesim.workload.traces",
    "TraceOptions": "servesim.workload.traces",
    "load_trace": "servesim.workload.traces",
    "Workload": "servesim.workload.workload",
}


def __getattr__(name: str) -> Any:
    """Resolve the public names lazily (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
