"""Deterministic random streams: one root ``SeedSequence`` spawning one generator per component.

Streams are keyed by a component name through a stable digest (never Python's ``hash()``, which
is salted per process), so adding a new component never shifts the numbers of another.
"""

from __future__ import annotations

import zlib

import numpy as np


class RandomStreams:
    """Hands out independent, reproducible ``numpy.random.Generator`` objects by name."""

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed

    def generator(self, name: str) -> np.random.Generator:
        """A fresh generator for component ``name``; the same name always gives the same stream."""
        key = zlib.crc32(name.encode("utf-8"))
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(key,)))

    def child(self, name: str) -> RandomStreams:
        """A derived set of streams for a sub-component (e.g. one replica of many)."""
        key = zlib.crc32(name.encode("utf-8"))
        derived = np.random.SeedSequence(self.seed, spawn_key=(key,)).generate_state(1)[0]
        return RandomStreams(int(derived))
