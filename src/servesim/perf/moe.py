"""Mixture-of-experts routing statistics: expected load and distinct experts hit per device.

With T tokens each picking k experts, expert e receives T*k*p_e token-assignments in
expectation and is touched (its weights read) with probability 1 - (1 - p_e)^(T*k). Few tokens
touch many experts, each with a sliver of work: the reason MoE decode is memory-bound.
Expert parallelism places experts contiguously (vLLM's EP layout); the MoE step waits for the
busiest device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.core.errors import ConfigError
from servesim.specs.model import MoESpec


def expert_frequencies(moe: MoESpec, popularity: tuple[float, ...], zipf: float) -> np.ndarray:
    """Routing probabilities per expert (sum 1), in expert-index order.

    ``popularity`` wins when given. A Zipf exponent ranks experts by popularity; ranks are dealt
    round-robin over expert indices with stride 1 (rank r -> expert r), so under contiguous EP
    placement the hottest experts share a device: the pessimistic layout without a load
    balancer.
    """
    e = moe.num_experts
    if popularity:
        if len(popularity) != e:
            raise ConfigError("expert_popularity", len(popularity), f"needs {e} entries")
        freq = np.asarray(popularity, dtype=float)
        if (freq < 0).any() or freq.sum() <= 0:
            raise ConfigError("expert_popularity", popularity, "entries must be >= 0, sum > 0")
    else:
        if zipf < 0:
            raise ConfigError("expert_zipf_exponent", zipf, "must be >= 0")
        freq = np.arange(1, e + 1, dtype=float) ** (-zipf)
    return freq / freq.sum()


@dataclass(frozen=True, slots=True)
class DeviceLoad:
    """The busiest EP device's expected routed assignments and experts touched."""

    assignments: float  # token-expert pairs computed on the device
    experts_touched: float  # distinct experts whose weights it reads


def busiest_device(freq: np.ndarray, num_tokens: int, top_k: int, ep: int) -> DeviceLoad:
    """Expected load of the slowest of ``ep`` devices for ``num_tokens`` tokens.

    "Slowest" ranks by assignments (compute) and breaks ties by experts touched (weight reads);
    for uniform routing every device is equal.
    """
    picks = float(num_tokens * top_k)
    touched = 1.0 - np.power(1.0 - np.minimum(freq, 1.0), picks)
    per_device = freq.reshape(ep, -1)
    loads = per_device.sum(axis=1) * picks
    hits = touched.reshape(ep, -1).sum(axis=1)
    index = int(np.lexsort((hits, loads))[-1])
    return DeviceLoad(assignments=float(loads[index]), experts_touched=float(hits[index]))
