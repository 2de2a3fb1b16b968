"""The serving engine: event-driven replicas, their schedulers and paged KV caches.

Public API: ``run_simulation(requests, replicas, perf, ...) -> SimulationRecords`` with one
``ReplicaSetup`` per replica; ``ReplicaView`` is what a ``dispatch`` function sees.
"""

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
