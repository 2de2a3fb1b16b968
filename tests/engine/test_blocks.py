"""KV block manager: counts, prefix-cache keys, ref-counting and eviction policies."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.engine.blocks import KVBlockManager, mix64, prompt_block_keys
from servesim.engine.contracts import ContractError


def test_watermark_and_allocation() -> None:
    blocks = KVBlockManager(200, 16, watermark=0.01)
    assert blocks.num_watermark_blocks == 2
    assert blocks.can_allocate(198, keep_watermark=True)
    assert not blocks.can_allocate(199, keep_watermark=True)
    assert blocks.can_allocate(200)
    blocks.allocate(150)
    assert blocks.num_used == 150 and blocks.num_free == 50
    blocks.release(100)
    blocks.check()
    assert blocks.num_free == 150


def test_keys_chain_over_prefix_blocks_of_another_size() -> None:
    # prefix blocks of 32 tokens, KV blocks of 16: two KV blocks per prefix id
    a = prompt_block_keys((7, 8, 9), 32, 100, 16)
    assert len(a) == 6  # 96 tokens covered, 100 in the prompt
    b = prompt_block_keys((7, 8, 5), 32, 100, 16)
    assert a[:4] == b[:4] and a[4] != b[4]
    c = prompt_block_keys((1, 8, 9), 32, 100, 16)
    assert all(x != y for x, y in zip(a, c, strict=True))  # a changed head changes every block
    # a prompt shorter than its hashed prefix only keys its own full blocks
    assert len(prompt_block_keys((7, 8, 9), 32, 40, 16)) == 2
    assert prompt_block_keys((), 0, 100, 16) == []
    assert mix64(1, 2) == mix64(1, 2) != mix64(2, 1)


def test_prefix_refcount_and_lru_eviction() -> None:
    blocks = KVBlockManager(4, 16, watermark=0.0, enable_prefix_caching=True)
    blocks.allocate(2)
    assert blocks.register(101) and blocks.register(102)
    assert not blocks.register(101)  # already cached
    blocks.acquire([101])  # a second sequence shares block 101
    assert blocks.num_used == 2
    blocks.deref([101, 102])  # first sequence leaves: 102 evictable, 101 still shared
    assert blocks.num_evictable == 1 and blocks.num_used == 1
    blocks.deref([101])
    assert blocks.num_evictable == 2 and blocks.num_available == 4
    blocks.check()
    # LRU: 102 was released first (tail before head), so it is evicted first
    blocks.allocate(3)
    assert blocks.count_hits([101], 5) == 1
    assert blocks.count_hits([102], 5) == 0
    assert blocks.num_evictions == 1
    blocks.check()


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 5)), max_size=60))
def test_invariant_under_random_operations(ops: list[tuple[int, int]]) -> None:
    blocks = KVBlockManager(20, 4, enable_prefix_caching=True)
    held: list[int] = []  # keys this test references
    private = 0
    next_key = 0
    for op, n in ops:
        if op == 0 and blocks.can_allocate(n):
            blocks.allocate(n)
            private += n
        elif op == 1 and private:
            k = min(n, private)
            blocks.release(k)
            private -= k
        elif op == 2 and private:
            next_key += 1
            if blocks.register(next_key):
                private -= 1
                held.append(next_key)
        elif op == 3 and held:
            blocks.deref([held.pop()])
        blocks.check()
        assert blocks.num_private == private


# ---- eviction policies -----------------------------------------------------------------


def _cache(blocks: KVBlockManager, keys: list[int]) -> None:
    """One sequence computes ``keys`` (private blocks turned cached) and leaves."""
    blocks.allocate(len(keys))
    for key in keys:
        assert blocks.register(key)
    blocks.deref(keys)


def test_lfu_keeps_a_shared_block_over_newer_one_off_blocks() -> None:
    blocks = KVBlockManager(3, 16, watermark=0.0, enable_prefix_caching=True, eviction="lfu")
    _cache(blocks, [1])  # a system-prompt block...
    for _ in range(2):  # ...that two more requests hit
        blocks.acquire([1])
        blocks.deref([1])
    _cache(blocks, [2, 3])  # a newer one-off prompt
    blocks.allocate(1)  # LRU would drop 1 (oldest); LFU drops 3 (1 use, the deeper of 2 and 3)
    assert blocks.count_hits([1], 1) == 1
    assert blocks.count_hits([2], 1) == 1 and blocks.count_hits([3], 1) == 0
    blocks.check()


def test_lfu_ages_out_a_block_that_stopped_being_used() -> None:
    blocks = KVBlockManager(2, 16, watermark=0.0, enable_prefix_caching=True, eviction="lfu")
    _cache(blocks, [1])
    blocks.acquire([1])
    blocks.deref([1])  # block 1: priority 0 + 2 uses = 2
    key = 100
    evicted_one = False
    for _ in range(3):  # each one-off block enters at age + 1; the age climbs with evictions
        blocks.allocate(1)
        key += 1
        assert blocks.register(key)
        blocks.deref([key])
        evicted_one = evicted_one or blocks.count_hits([1], 1) == 0
    assert evicted_one  # plain LFU would keep block 1 forever
    blocks.check()


def test_lru_default_evicts_oldest_first() -> None:
    blocks = KVBlockManager(3, 16, watermark=0.0, enable_prefix_caching=True)
    assert blocks.eviction == "lru"
    _cache(blocks, [1])
    for _ in range(2):
        blocks.acquire([1])
        blocks.deref([1])
    _cache(blocks, [2, 3])  # released tail first: 3 then 2
    blocks.allocate(2)
    assert blocks.count_hits([1], 1) == 0 and blocks.count_hits([3], 1) == 0
    assert blocks.count_hits([2], 1) == 1


@given(
    st.sampled_from(["lru", "lfu"]),
    st.lists(st.tuples(st.integers(0, 4), st.integers(1, 6)), max_size=80),
)
def test_every_policy_keeps_the_books(eviction: str, ops: list[tuple[int, int]]) -> None:
    """Any sequence of allocate / register / acquire / deref keeps the invariant, and every
    evicted key was evictable (the manager checks each choice)."""
    blocks = KVBlockManager(12, 4, watermark=0.0, enable_prefix_caching=True, eviction=eviction)
    held: list[int] = []
    next_key = 0
    for op, n in ops:
        if op == 0 and blocks.can_allocate(n):
            blocks.allocate(n)
            for _ in range(n):
                next_key += 1
                assert blocks.register(next_key)
                held.append(next_key)
        elif op in (1, 2) and held:
            blocks.deref([held.pop(0 if op == 1 else -1)])
        elif op == 3:
            cached = [k for k in range(1, next_key + 1) if blocks.count_hits([k], 1)]
            if cached:
                key = cached[n % len(cached)]
                blocks.acquire([key])
                held.append(key)
        blocks.check()
        assert blocks.num_private == 0


_MRU = """
class MostRecent:
    def __init__(self):
        self.stack = []
    def add(self, key, depth):
        self.stack.append(key)
    def reuse(self, key, was_evictable):
        if was_evictable:
            self.stack.remove(key)
    def evict(self):
        return self.stack.pop()

class Cheat(MostRecent):
    def evict(self):
        return 12345  # not an evictable block

class NoEvict:
    def add(self, key, depth): pass
    def reuse(self, key, was_evictable): pass
"""


def test_a_user_policy_loads_by_path_and_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "evict.py"
    path.write_text(_MRU)
    blocks = KVBlockManager(
        3, 16, watermark=0.0, enable_prefix_caching=True, eviction=f"{path}:MostRecent"
    )
    _cache(blocks, [1, 2])  # released 2 then 1: 1 is the most recent
    blocks.allocate(2)
    assert blocks.count_hits([1], 1) == 0 and blocks.count_hits([2], 1) == 1
    cheat = KVBlockManager(
        2, 16, watermark=0.0, enable_prefix_caching=True, eviction=f"{path}:Cheat"
    )
    _cache(cheat, [1])
    with pytest.raises(ContractError, match="evict returned 12345") as err:
        cheat.allocate(2)
    assert err.value.rule == "eviction-key"
    with pytest.raises(ConfigError, match="has no evict method"):
        KVBlockManager(2, 16, eviction=f"{path}:NoEvict")
    with pytest.raises(UnknownNameError, match="lfu"):
        KVBlockManager(2, 16, eviction="fifo")
