"""Replica schedulers, registered by name in ``SCHEDULERS`` (importing this registers them)."""

from servesim.engine.schedulers.base import SCHEDULERS, ReplicaScheduler
from servesim.engine.schedulers.policies import FairScheduler, PriorityScheduler
from servesim.engine.schedulers.reserving import OrcaScheduler, StaticScheduler
from servesim.engine.schedulers.sarathi import SarathiScheduler
from servesim.engine.schedulers.vllm import VLLMScheduler

__all__ = [
    "SCHEDULERS",
    "FairScheduler",
    "OrcaScheduler",
    "PriorityScheduler",
    "ReplicaScheduler",
    "SarathiScheduler",
    "StaticScheduler",
    "VLLMScheduler",
]
