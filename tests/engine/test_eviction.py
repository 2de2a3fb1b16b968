"""Prefix-cache eviction policies: the bucketed LFU evicts in exactly the order of the
heap-based LFU-DA it replaced (kept below as the reference), on random call sequences."""

from __future__ import annotations

import heapq
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.engine.eviction import LFUEviction, LRUEviction, make_eviction


class HeapLFU:
    """The LFU-DA as first written (commit a1dcde2): one heap entry per add, lazy deletion."""

    def __init__(self) -> None:
        self._uses: dict[int, int] = {}
        self._heap: list[tuple[int, int, int, int]] = []
        self._entry: dict[int, int] = {}
        self._age = 0
        self._counter = 0

    def add(self, key: int, depth: int) -> None:
        uses = self._uses.setdefault(key, 1)
        self._counter += 1
        self._entry[key] = self._counter
        heapq.heappush(self._heap, (self._age + uses, -depth, self._counter, key))

    def reuse(self, key: int, was_evictable: bool) -> None:
        self._uses[key] = self._uses.get(key, 1) + 1
        if was_evictable:
            del self._entry[key]

    def evict(self) -> int:
        while True:
            priority, _, order, key = heapq.heappop(self._heap)
            if self._entry.get(key) == order:
                del self._entry[key]
                del self._uses[key]
                self._age = priority
                return key


def _drive(ops: list[tuple[int, int, int]]) -> tuple[list[int], list[int]]:
    """Feed ``ops`` (kind, key, depth) to both LFUs the way the block manager would: add a
    key that is not evictable, reuse a cached one, evict when something is evictable.
    Returns the two eviction sequences."""
    new, ref = LFUEviction(), HeapLFU()
    evictable: set[int] = set()
    in_use: set[int] = set()
    out_new: list[int] = []
    out_ref: list[int] = []
    for kind, key, depth in ops:
        if kind == 0 and key not in evictable:
            for policy in (new, ref):
                policy.add(key, depth)
            in_use.discard(key)
            evictable.add(key)
        elif kind == 1 and (key in evictable or key in in_use):
            was = key in evictable
            for policy in (new, ref):
                policy.reuse(key, was)
            evictable.discard(key)
            in_use.add(key)
        elif kind == 1:
            in_use.add(key)  # a newly registered block: no policy call
        elif kind == 2 and evictable:
            a, b = new.evict(), ref.evict()
            out_new.append(a)
            out_ref.append(b)
            evictable.discard(b)
    return out_new, out_ref


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 25), st.integers(0, 12)),
        max_size=300,
    )
)
def test_bucketed_lfu_evicts_in_the_heap_lfu_order(ops: list[tuple[int, int, int]]) -> None:
    ours, reference = _drive(ops)
    assert ours == reference


@pytest.mark.parametrize("seed", range(5))
def test_long_random_sequences_match(seed: int) -> None:
    """Long runs where the age climbs and keys are reused many times (deep buckets)."""
    rng = random.Random(seed)
    ops = [
        (rng.choices((0, 1, 2), (4, 3, 3))[0], rng.randrange(400), rng.randrange(64))
        for _ in range(20_000)
    ]
    ours, reference = _drive(ops)
    assert len(reference) > 2_000
    assert ours == reference


def test_hand_computed_order() -> None:
    """Priority first, then the deeper block, then the one evictable longest; the age rises."""
    lfu = LFUEviction()
    lfu.add(1, 0)  # priority 0 + 1
    lfu.reuse(2, False)  # block 2 referenced twice before it becomes evictable: uses 2
    lfu.add(2, 5)  # priority 2
    lfu.add(3, 1)  # priority 1, deeper than 1
    lfu.add(4, 1)  # priority 1, same depth as 3, later
    assert [lfu.evict(), lfu.evict(), lfu.evict()] == [3, 4, 1]
    lfu.add(5, 0)  # the age is now 1: priority 1 + 1 = 2, depth 0, below 2's depth 5
    assert [lfu.evict(), lfu.evict()] == [2, 5]


def test_reuse_of_an_evictable_block_takes_it_out() -> None:
    lfu = LFUEviction()
    lfu.add(1, 0)
    lfu.add(2, 0)
    lfu.reuse(1, True)
    assert lfu.evict() == 2
    lfu.add(1, 0)  # back with 2 uses at age 1: priority 3
    assert lfu.evict() == 1


def test_registry_builds_both() -> None:
    assert isinstance(make_eviction("lru"), LRUEviction)
    assert isinstance(make_eviction("lfu"), LFUEviction)
