"""A replica's optional features (speculative decoding, multi-LoRA, CPU-GPU hybrid): their
state objects and what they take out of (or add to) the KV pool, decided once at build time.

``replica_features`` is a function of the replica's setup and memory plan only: the replica
keeps what it returns, and nothing here holds the replica.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from servesim.core.errors import ConfigError
from servesim.engine.hybrid import HybridExecutor
from servesim.engine.lora import AdapterCache
from servesim.engine.schedulers import ReplicaScheduler
from servesim.engine.setup import ReplicaSetup
from servesim.engine.speculative import Speculator, num_kv_blocks_with_draft
from servesim.perf.types import MemoryPlan, PerfModel


class ReplicaFeatures(NamedTuple):
    """The features' state objects (None: off) and the KV pool's block count with them."""

    speculator: Speculator | None
    adapters: AdapterCache | None
    hybrid: HybridExecutor | None
    num_kv_blocks: int


def replica_features(
    setup: ReplicaSetup,
    schedulers: list[ReplicaScheduler],
    perf: PerfModel,
    mem: MemoryPlan,
    budget: int,
    num_kv_blocks: int,
) -> ReplicaFeatures:
    """Speculative decoding and multi-LoRA: their state, the schedulers' decode cost and the
    KV blocks their weights take (unless the cache config fixes the count); then the hybrid
    executor, whose host blocks grow the pool.

    Raises:
        ConfigError: hybrid execution with speculative decoding, or with pipeline stages.
    """
    cache, plan = setup.cache, setup.plan
    speculator = adapters = None
    if setup.speculative is not None:
        speculator = Speculator(setup.speculative, plan, cache.block_size)
        for scheduler in schedulers:
            scheduler.num_tokens_per_decode = setup.speculative.num_speculative_tokens + 1
        if not cache.num_kv_blocks:
            draft_mem = perf.memory_plan(
                speculator.draft,
                block_size_tokens=cache.block_size,
                gpu_memory_utilization=cache.gpu_memory_utilization,
                max_num_batched_tokens=budget,
            )
            num_kv_blocks = num_kv_blocks_with_draft(
                speculator, plan, mem, draft_mem, setup.speculative
            )
    block_bytes = cache.block_size * mem.kv_bytes_per_token  # per GPU
    if setup.lora is not None:
        adapters = AdapterCache(setup.lora, plan)
        if not cache.num_kv_blocks and block_bytes:
            # vLLM reserves max_loras slots of the largest rank out of the KV pool
            slot_blocks = math.ceil(adapters.slot_bytes_per_gpu() / block_bytes)
            num_kv_blocks = max(num_kv_blocks - slot_blocks, 0)
    hybrid = None
    if setup.hybrid is not None:
        hybrid = _hybrid(setup)
        # the KV pool grows by the host blocks; the GPU's share is what the executor keeps
        # GPU-resident each step
        hybrid.num_gpu_blocks = num_kv_blocks
        num_kv_blocks += hybrid.num_host_blocks(block_bytes)
    return ReplicaFeatures(speculator, adapters, hybrid, num_kv_blocks)


def _hybrid(setup: ReplicaSetup) -> HybridExecutor:
    """The CPU-GPU hybrid executor of ``setup`` (its ``hybrid`` config set).

    Raises:
        ConfigError: with speculative decoding, or with pipeline stages.
    """
    if setup.speculative is not None:
        raise ConfigError(
            "hybrid",
            "with speculative",
            "hybrid and speculative decoding together are not modelled",
        )
    if setup.plan.pp > 1:
        raise ConfigError("hybrid", f"pp={setup.plan.pp}", "needs one pipeline stage")
    if setup.hybrid is None:
        raise ValueError("_hybrid needs a setup with hybrid execution")
    return HybridExecutor(setup.hybrid, setup.plan, setup.cache.block_size)
