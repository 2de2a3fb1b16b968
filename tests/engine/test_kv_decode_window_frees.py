"""A decoding sequence's cached prompt pages become evictable as the window leaves them.

vLLM's SlidingWindowManager.remove_skipped_blocks (vllm/v1/core/single_type_kv_cache_manager.py,
run by allocate_slots before each step) frees the blocks wholly before token
``n - window + 1``: a cached prompt block goes back to the free queue, keeping its hash, so it
is evictable (and can still be hit) from that step on, decode steps included. Before, servesim
kept such pages referenced until the sequence left (the free count was the same, a private
page released instead). By hand on gpt-oss's 1 full + 1 sliding(128) pool, 16-token pages.
"""

from __future__ import annotations

import pytest

from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig, run_simulation
from servesim.engine.batch import Batch
from servesim.engine.blocks import KVBlockManager
from servesim.engine.records import TokenGapSamples
from servesim.engine.sequence import Seq, SeqStatus
from servesim.engine.state import ReplicaState
from servesim.perf.kv_layout import KVLayout, WindowGroups
from servesim.perf.types import ReplicaPlan
from servesim.specs import get_gpu, resolve_model
from tests.engine.fakes import (
    LinearPerf,
    assert_all_served,
    prefill_whole,
    req,
    shared_head_requests,
)

B = 16
GPT_OSS = KVLayout(B, 1, (WindowGroups("sliding", 128, 1),))
MISTRAL = KVLayout(B, 0, (WindowGroups("sliding", 128, 1),))  # one sliding group


def _state(layout: KVLayout) -> ReplicaState:
    blocks = KVBlockManager(1000, B, enable_prefix_caching=True, layout=layout)
    return ReplicaState(blocks, TokenGapSamples(), lambda name, n: None)


def _seq(prompt: int = 200, output: int = 400) -> Seq:
    # 12 cacheable prompt blocks (192 tokens); the last 8 tokens share block 12 (private)
    hashes = tuple(range(1, 13))
    return Seq(req(1, 0.0, prompt, output, prefix_block_hashes=hashes, prefix_block_size=B), 1)


def _kv(state: ReplicaState, seq: Seq) -> int:
    if seq in state.group.members:
        return seq.num_prompt_tokens + state.group.emitted(seq) - 1
    return seq.num_kv_tokens


def _decode_until(state: ReplicaState, seq: Seq, kv_tokens: int) -> None:
    """Decode steps of ``seq`` (alone) until it holds ``kv_tokens`` tokens of KV."""
    t = 1.0
    while _kv(state, seq) < kv_tokens:
        state.begin_step()
        state.allocate_decode_all()
        t += 0.01
        state.apply(Batch(decodes=[seq]), t, t, lambda s, now: None)
        state.check()


@pytest.mark.parametrize("layout", [GPT_OSS, MISTRAL], ids=["full+sliding", "sliding"])
def test_the_prompts_cached_window_pages_turn_evictable_while_it_decodes(
    layout: KVLayout,
) -> None:
    state = _state(layout)
    blocks = state.blocks
    seq = _seq()
    state.waiting.append(seq)
    prefill_whole(state, seq)
    # 200 tokens: the window skips (200 - 127) // 16 = 4 blocks: the sliding pages of blocks
    # 0..3 are freed (cached, evictable); those of 4..11 (cached) and 12 (private) are held
    assert seq.status == SeqStatus.DECODING
    assert blocks.num_evictable == 4 and seq.num_window_keys == 8
    # the window leaves block j once skipped_tokens(n) = n - 127 >= 16 (j + 1): block 4 at
    # n = 80 + 127 = 207 tokens, block 11 at 192 + 127 = 319, block 12 at 208 + 127 = 335
    _decode_until(state, seq, 206)
    assert blocks.num_evictable == 4  # before: 4 until the sequence left
    _decode_until(state, seq, 207)
    assert blocks.num_evictable == 5
    _decode_until(state, seq, 318)
    assert blocks.num_evictable == 11
    _decode_until(state, seq, 319)
    assert blocks.num_evictable == 12
    # full + sliding: the 12 full pages stay referenced, so 12 sliding pages are evictable;
    # one group: its 12 cached blocks are all there is
    free = blocks.num_free
    _decode_until(state, seq, 335)  # block 12's sliding page was private: released
    assert blocks.num_evictable == 12
    # 335 tokens: 21 rows; block 20 taken at 321 in each group; block 12 freed
    assert blocks.num_free == free - layout.pages_per_row + 1
    if seq in state.group.members:
        state.group.leave(seq)
        state.ready[seq] = None
    assert seq.num_window_keys == 0 and seq.num_blocks == layout.pages(335)
    state.finish(seq)
    state.check()
    assert blocks.num_used == 0
    assert blocks.num_evictable == (24 if layout is GPT_OSS else 12)


def _requests() -> list:  # type: ignore[type-arg]
    """Shared 40-block heads, long outputs (the window leaves the cached prompt pages while
    decoding), arrivals that keep a 900-page pool under pressure."""
    return shared_head_requests(60, 0.08, (0, 20, 40), (700, 5), (120, 7), B)


def _run(skip_ahead: bool, eviction: str = "lru") -> dict[str, int]:
    setup = ReplicaSetup(
        plan=ReplicaPlan(model=resolve_model("gpt-oss-20b"), gpu=get_gpu("h100-sxm")),
        scheduler=VLLMSchedulerConfig(version="v1", max_num_batched_tokens=1024),
        cache=CacheConfig(enable_prefix_caching=True, num_kv_blocks=900, eviction=eviction),
    )
    records = run_simulation(
        _requests(), [setup], LinearPerf(), skip_ahead=skip_ahead, check_invariants=True
    )
    assert_all_served(records)
    counts = dict(records.counters)
    counts.pop("num_skipped_iterations", None)
    return counts | {"_rows": int(records.requests.size)} | _columns(records)


def _columns(records) -> dict[str, int]:  # type: ignore[no-untyped-def]
    view = records.requests.view()
    return {f"col:{k}": hash(v.tobytes()) for k, v in view.items()}


@pytest.mark.parametrize("eviction", ["lru", "lfu"])
def test_skip_ahead_on_and_off_are_identical(eviction: str) -> None:
    fast, slow = _run(True, eviction), _run(False, eviction)
    assert fast == slow
    assert slow["prefix_cache_evictions"] > 0 and slow["prefix_cache_hit_tokens"] > 0
