"""``ReplicaSetup``: how one replica is deployed (plan, scheduler, cache, role, features).

Its own module so that the replica that is built from it and the simulation that takes a list
of them both import it from below (no import knot between ``replica`` and ``simulation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servesim.engine.config import (
    CacheConfig,
    HybridConfig,
    LoRAConfig,
    SchedulerConfig,
    SpeculativeConfig,
    VLLMSchedulerConfig,
)
from servesim.engine.profiles.base import EngineTiming
from servesim.perf.types import ReplicaPlan


@dataclass(frozen=True, slots=True)
class ReplicaSetup:
    """How one replica is deployed.

    Attributes:
        plan: model, GPU, parallelism and formats.
        scheduler: the replica scheduler's config (``kind`` picks it).
        cache: the paged KV cache's config.
        pool: name of the replica pool (heterogeneous deployments).
        role: ``unified``; ``prefill`` (hands each request to ``Replica.on_prefilled`` after
            its first token) or ``decode`` (receives them via ``Replica.receive``) when a
            cluster layer disaggregates.
        receives_kv: the replica may be given sequences computed elsewhere (``decode`` role,
            migration targets); it then steps one iteration at a time.
        timing: the engine's request entry and token delivery timing (its profile's
            ``EngineTiming``: steps scheduled ahead, front-end latency in and out); the
            default, all zero, is vLLM 0.6's loop.
        speculative: speculative decoding (None: off; ``engine.speculative``).
        lora: multi-LoRA serving (None: requests' adapter ids are ignored; ``engine.lora``).
        hybrid: CPU-GPU hybrid execution (None: GPU only; ``engine.hybrid``).
    """

    plan: ReplicaPlan
    scheduler: SchedulerConfig = field(default_factory=VLLMSchedulerConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    pool: str = "default"
    role: str = "unified"
    receives_kv: bool = False
    timing: EngineTiming = field(default_factory=EngineTiming)
    speculative: SpeculativeConfig | None = None
    lora: LoRAConfig | None = None
    hybrid: HybridConfig | None = None
