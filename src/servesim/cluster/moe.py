"""MoE at the cluster level: expert-parallel load balance (EPLB) and expert offloading.

The perf model (``perf/moe.py``) already prices an EP step by its busiest device for a routing
distribution under contiguous placement. This module changes the placement and the memory:

- ``eplb_popularity``: DeepSeek's expert-parallel load balancer (EPLB) replicates the hottest
  experts into spare slots (each copy takes an equal share of its expert's tokens) and packs
  the slots onto devices heaviest-first onto the least loaded device. The result is expressed
  as an ``expert_popularity`` vector whose contiguous per-device sums are the balanced loads,
  so the unchanged perf model prices the balanced step (``with_eplb``).
- ``ExpertOffloadPerf``: a single GPU keeps only ``num_cached_experts`` routed experts per MoE
  layer (the most popular: the optimal static cache for independent routing) and fetches the
  others over the host link when a step routes to them (MoE-Infinity, Mixtral-offloading).
  The hit rate follows from the routing distribution; misses pay PCIe time per step.
"""

from __future__ import annotations

import heapq
from dataclasses import replace

import numpy as np

from servesim.core.errors import ConfigError
from servesim.perf.memory import moe_layer_count
from servesim.perf.moe import expert_frequencies
from servesim.perf.types import BatchShape, MemoryPlan, PerfModel, ReplicaPlan, StageTimes


def routing_frequencies(plan: ReplicaPlan) -> np.ndarray:
    """Per-expert routing probabilities of ``plan`` (uniform, Zipf, or given)."""
    moe = plan.model.moe
    if moe is None:
        raise ConfigError("model", plan.model.name, "has no experts")
    return expert_frequencies(moe, plan.expert_popularity, plan.expert_zipf_exponent)


def device_loads(freq: np.ndarray, ep: int) -> np.ndarray:
    """Share of routed tokens each of ``ep`` devices computes under contiguous placement."""
    if ep < 1 or len(freq) % ep:
        raise ConfigError("ep", ep, f"must divide the {len(freq)} experts")
    return freq.reshape(ep, -1).sum(axis=1)


def eplb_devices(freq: np.ndarray, ep: int, num_redundant: int) -> list[list[int]]:
    """EPLB: the experts (ids, a replicated one several times) on each of ``ep`` devices.

    Each of ``num_redundant`` extra copies goes to the expert with the largest load per copy;
    slots are then packed heaviest-first onto the least loaded device with a free slot
    (``(num_experts + num_redundant) / ep`` slots per device).
    """
    e = len(freq)
    if num_redundant < 0 or (e + num_redundant) % ep:
        raise ConfigError(
            "num_redundant", num_redundant, f"experts + redundant must be a multiple of ep={ep}"
        )
    copies = np.ones(e, dtype=int)
    for _ in range(num_redundant):
        copies[int(np.argmax(freq / copies))] += 1
    slots = sorted(
        ((float(freq[x] / copies[x]), x) for x in range(e) for _ in range(copies[x])),
        reverse=True,
    )
    per_device = (e + num_redundant) // ep
    heap = [(0.0, d) for d in range(ep)]
    devices: list[list[int]] = [[] for _ in range(ep)]
    for load, x in slots:
        total, d = heapq.heappop(heap)
        devices[d].append(x)
        if len(devices[d]) < per_device:
            heapq.heappush(heap, (total + load, d))
    return devices


def slot_loads(freq: np.ndarray, devices: list[list[int]]) -> list[list[float]]:
    """Per-device lists of slot loads: each copy of an expert takes an equal share of its
    tokens (``freq[x] / copies of x``)."""
    copies = np.zeros(len(freq), dtype=int)
    for experts in devices:
        for x in experts:
            copies[x] += 1
    return [[float(freq[x] / copies[x]) for x in experts] for experts in devices]


def eplb_slots(freq: np.ndarray, ep: int, num_redundant: int) -> list[list[float]]:
    """EPLB: per-device lists of slot loads after replicating the hottest experts
    (``eplb_devices`` priced by ``slot_loads``)."""
    return slot_loads(freq, eplb_devices(freq, ep, num_redundant))


def eplb_popularity(freq: np.ndarray, ep: int, num_redundant: int) -> tuple[float, ...]:
    """An ``expert_popularity`` vector that prices the EPLB placement in the perf model
    (``placement_popularity`` of ``eplb_devices``)."""
    return placement_popularity(freq, eplb_devices(freq, ep, num_redundant))


def placement_popularity(
    freq: np.ndarray, devices: list[list[int]], *, keep_if_worse: bool = True
) -> tuple[float, ...]:
    """An ``expert_popularity`` vector that prices a placement in the perf model: device d's
    contiguous block of ``E/ep`` entries sums to its load (extra slots of a device are merged
    into its last entry, keeping the sum and the busiest device). A placement whose busiest
    device is no lighter than contiguous placement's is not used: the routing stays as it is
    (a deployer would keep the contiguous layout; greedy packing is a heuristic) unless
    ``keep_if_worse`` is False (pricing a placement as it is)."""
    loads = slot_loads(freq, devices)
    ep = len(devices)
    width = len(freq) // ep
    if keep_if_worse and max(map(sum, loads)) >= device_loads(freq, ep).max():
        return tuple(float(x) for x in freq)
    out: list[float] = []
    for slots in loads:
        block = sorted(slots, reverse=True)
        head, tail = block[: width - 1], block[width - 1 :]
        out.extend([*head, float(sum(tail))])
    return tuple(out)


def max_redundant_experts(plan: ReplicaPlan, free_bytes_per_gpu: float) -> int:
    """Most redundant expert copies per MoE layer that fit in ``free_bytes_per_gpu`` on each
    of the ``ep`` devices, rounded down to a multiple of ``ep``."""
    moe = plan.model.moe
    if moe is None:
        return 0
    per_expert = 3 * plan.model.hidden_size * moe.expert_ffn_size * plan.weight_dtype.num_bytes
    per_expert *= moe_layer_count(plan) / plan.pp / max(plan.tp // plan.ep, 1)
    per_device = int(free_bytes_per_gpu // per_expert) if per_expert > 0 else 0
    return per_device * plan.ep


def with_eplb(plan: ReplicaPlan, num_redundant: int) -> ReplicaPlan:
    """``plan`` with its routing re-expressed under EPLB placement (see ``eplb_popularity``)."""
    freq = routing_frequencies(plan)
    return replace(plan, expert_popularity=eplb_popularity(freq, plan.ep, num_redundant))


def expert_cache_hit_rate(freq: np.ndarray, num_cached: int) -> float:
    """Fraction of token-expert assignments served by a GPU cache of the ``num_cached`` most
    popular experts (the best static cache under independent routing)."""
    if not 0 <= num_cached <= len(freq):
        raise ConfigError("num_cached_experts", num_cached, f"must be in [0, {len(freq)}]")
    return float(np.sort(freq)[::-1][:num_cached].sum())


def expected_misses(freq: np.ndarray, num_cached: int, num_tokens: int, top_k: int) -> float:
    """Expected distinct uncached experts one MoE layer touches in a step of ``num_tokens``."""
    cold = np.sort(freq)[::-1][num_cached:]
    return float((1.0 - np.power(1.0 - cold, num_tokens * top_k)).sum())


class ExpertOffloadPerf:
    """A perf model for a single GPU holding ``num_cached_experts`` experts per MoE layer in
    HBM and the rest in host memory: iteration times add the PCIe fetch of the missed experts
    (not overlapped: a layer cannot run before its experts arrive); the memory plan frees the
    offloaded experts' bytes for KV cache."""

    def __init__(self, base: PerfModel, num_cached_experts: int) -> None:
        self.base = base
        self.num_cached_experts = num_cached_experts

    def _expert_bytes(self, plan: ReplicaPlan) -> float:
        moe = plan.model.moe
        assert moe is not None
        return 3 * plan.model.hidden_size * moe.expert_ffn_size * plan.weight_dtype.num_bytes

    def fetch_s(self, plan: ReplicaPlan, num_tokens: int) -> float:
        """PCIe seconds per iteration to bring the missed experts of every MoE layer."""
        moe = plan.model.moe
        if moe is None or num_tokens <= 0:
            return 0.0
        freq = routing_frequencies(plan)
        misses = expected_misses(
            freq, self.num_cached_experts, num_tokens, moe.num_experts_per_token
        )
        link = plan.gpu.host_link
        layer_s = misses * self._expert_bytes(plan) / link.bandwidth_bytes_per_s
        return moe_layer_count(plan) * (layer_s + (link.latency_s if misses > 0 else 0.0))

    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        """The base time plus the expert fetches."""
        times = self.base.iteration_time(plan, batch)
        extra = self.fetch_s(plan, batch.num_prefill_tokens + batch.num_decode_seqs)
        stages = tuple(s + extra / len(times.stage_s) for s in times.stage_s)
        return replace(times, stage_s=stages)

    def memory_plan(self, plan: ReplicaPlan, **kwargs: object) -> MemoryPlan:
        """The base plan of a model that keeps only the cached experts in HBM (the freed
        bytes go to the KV cache; a model too big for the GPU may now fit)."""
        moe = plan.model.moe
        if moe is None:
            return self.base.memory_plan(plan, **kwargs)  # type: ignore[arg-type]
        kept = max(self.num_cached_experts, moe.num_experts_per_token)
        model = replace(plan.model, moe=replace(moe, num_experts=kept))
        resident = replace(plan, model=model, expert_popularity=())
        return self.base.memory_plan(resident, **kwargs)  # type: ignore[arg-type]
