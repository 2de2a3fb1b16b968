"""KV block manager: counts, prefix-cache keys, ref-counting and LRU eviction."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from servesim.engine.blocks import KVBlockManager, mix64, prompt_block_keys


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
