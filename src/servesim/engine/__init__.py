"""The serving engine: event-driven replicas, their schedulers and paged KV caches.

Public API: ``run_simulation(requests, replicas, perf, ...) -> SimulationRecords`` with one
``ReplicaSetup`` per replica; ``ReplicaView`` is what a ``dispatch`` function sees.

The names load on first use (``servesim.core.lazy``): importing one engine module does not
load the others (a vLLM run never needs the SGLang or TensorRT-LLM profiles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servesim.core.lazy import lazy_exports

if TYPE_CHECKING:
    from servesim.engine.batch import Batch
    from servesim.engine.config import (
        CacheConfig,
        CustomSchedulerConfig,
        FairSchedulerConfig,
        OrcaSchedulerConfig,
        PrioritySchedulerConfig,
        SarathiSchedulerConfig,
        SchedulerConfig,
        StaticSchedulerConfig,
        VLLMSchedulerConfig,
    )
    from servesim.engine.records import (
        RejectReason,
        ReplicaInfo,
        SimulationRecords,
        TokenGapSamples,
    )
    from servesim.engine.schedulers import SCHEDULERS, ReplicaScheduler
    from servesim.engine.sequence import Seq, SeqStatus
    from servesim.engine.setup import ReplicaSetup
    from servesim.engine.simulation import Dispatch, ReplicaView, run_simulation
    from servesim.engine.state import ReplicaState

# name -> the module (under servesim.engine) that defines it
_EXPORTS = {
    "Batch": "batch",
    "CacheConfig": "config",
    "CustomSchedulerConfig": "config",
    "FairSchedulerConfig": "config",
    "OrcaSchedulerConfig": "config",
    "PrioritySchedulerConfig": "config",
    "SarathiSchedulerConfig": "config",
    "SchedulerConfig": "config",
    "StaticSchedulerConfig": "config",
    "VLLMSchedulerConfig": "config",
    "RejectReason": "records",
    "ReplicaInfo": "records",
    "SimulationRecords": "records",
    "TokenGapSamples": "records",
    "SCHEDULERS": "schedulers",
    "ReplicaScheduler": "schedulers",
    "Seq": "sequence",
    "SeqStatus": "sequence",
    "ReplicaSetup": "setup",
    "Dispatch": "simulation",
    "ReplicaView": "simulation",
    "run_simulation": "simulation",
    "ReplicaState": "state",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "SCHEDULERS",
    "Batch",
    "CacheConfig",
    "CustomSchedulerConfig",
    "Dispatch",
    "FairSchedulerConfig",
    "OrcaSchedulerConfig",
    "PrioritySchedulerConfig",
    "RejectReason",
    "ReplicaInfo",
    "ReplicaScheduler",
    "ReplicaSetup",
    "ReplicaState",
    "ReplicaView",
    "SarathiSchedulerConfig",
    "SchedulerConfig",
    "Seq",
    "SeqStatus",
    "SimulationRecords",
    "StaticSchedulerConfig",
    "TokenGapSamples",
    "VLLMSchedulerConfig",
    "run_simulation",
]
