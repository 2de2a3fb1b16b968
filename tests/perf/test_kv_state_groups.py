"""Linear-attention state in the KV pool (vLLM V1's MambaSpec groups), by hand for Qwen3-Next.

Qwen3-Next-80B-A3B: 48 layers, 36 gated-DeltaNet (16 key heads, 32 value heads of 128, conv
kernel 4) and 12 full attention (2 KV heads of 256), bf16.
"""

from __future__ import annotations

import numpy as np

from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig
from servesim.engine.blocks import KVBlockManager
from servesim.perf.kv_groups import describe, kv_layout, state_pages_per_group
from servesim.perf.kv_layout import KVLayout
from servesim.perf.memory import CUDA_CONTEXT_BYTES, NCCL_BUFFER_BYTES, plan_memory
from servesim.perf.types import ReplicaPlan
from servesim.specs import get_gpu, resolve_model
from tests.engine.fakes import LinearPerf, assert_all_served, req, rows, run


def _plan(tp: int) -> ReplicaPlan:
    return ReplicaPlan(model=resolve_model("qwen3-next-80b-a3b"), gpu=get_gpu("h200"), tp=tp)


def test_state_pages_per_group_by_hand() -> None:
    # tp=2: state = (32/2 * 128 * 128 + 8192/2 * 3) * 2 B = 548,864 B (conv channels
    # 2 * 16 * 128 + 32 * 128 = 8,192); one attention token of one layer = 1 KV head * 256 * 2
    # (K, V) * 2 B = 1,024 B. cdiv(548864, 16 * 1024) = 34: vLLM raises the attention block
    # to 16 * 34 = 544 tokens; here a state takes 34 pages of 16 tokens.
    assert state_pages_per_group(_plan(2), 16) == 34
    # tp=4: the state halves (274,432 B), the 2 KV heads are replicated (1,024 B a token):
    # cdiv(274432, 16384) = 17 (vLLM: a 272-token block).
    assert state_pages_per_group(_plan(4), 16) == 17


def test_qwen3_next_groups_and_pages() -> None:
    # buckets: 12 full, 36 linear -> group size 12 (36 >= 1.5 * 12): 1 full + 3 state groups
    layout = kv_layout(_plan(2), 16)
    assert describe(layout) == "1 full + 3 state(x34 pages)"
    assert not layout.plain and layout.pages_per_row == 1 and layout.state_pages == 102
    assert layout.pages(0) == 0
    assert layout.pages(1) == 1 + 102  # the states are held from the first token
    assert layout.pages(8192) == 512 + 102
    assert layout.step_pages(16, 1) == 2 + 102
    assert layout.freed(100, 50) == 0  # states are freed only at finish
    assert layout.peak_pages(8192) == 614


def test_state_is_no_longer_reserved_outside_the_pool() -> None:
    # Before, 256 sequences' states were set aside (256 * 36 * 548,864 B = 4.71 GiB at tp=2);
    # now the overhead is the CUDA context and NCCL buffers only, and a page is 16 tokens of
    # the 12 full layers (12 * 1,024 B a token).
    mem = plan_memory(_plan(2))
    assert mem.overhead_bytes == CUDA_CONTEXT_BYTES + NCCL_BUFFER_BYTES
    assert mem.kv_bytes_per_token == 12 * 1024
    assert mem.num_kv_blocks == mem.kv_cache_bytes // (12 * 1024 * 16)


def test_prefix_caching_is_off_with_state_groups() -> None:
    # vLLM v0.10 disables prefix caching for hybrid linear-attention models
    layout = KVLayout(16, 1, (), 3, 34)
    blocks = KVBlockManager(1000, 16, enable_prefix_caching=True, layout=layout)
    assert not blocks.enable_prefix_caching
    assert KVBlockManager(1000, 16, enable_prefix_caching=True).enable_prefix_caching


def _max_overlap(cols: dict[str, np.ndarray]) -> int:
    starts, ends = cols["first_token_s"], cols["completion_s"]
    return max(int(((starts <= t) & (ends > t)).sum()) for t in starts)


def test_engine_runs_as_many_sequences_as_the_states_allow() -> None:
    """A 330-page pool: each 20 + 50 token request holds cdiv(70, 16) = 5 pages + 102 state
    pages = 107 at most, so 3 run at once (3 * 107 = 321 <= 330 - watermark 3; a fourth's
    admission needs 104 more); all are served and the books balance every step."""
    setup = ReplicaSetup(
        plan=_plan(2),
        scheduler=VLLMSchedulerConfig(max_num_batched_tokens=256, enable_chunked_prefill=True),
        cache=CacheConfig(),
    )
    reqs = [req(i, 0.0, 20, 50) for i in range(10)]
    records = run(reqs, LinearPerf(num_kv_blocks=330), setup)
    assert_all_served(records)
    assert records.counters.get("num_preemptions", 0) == 0
    assert _max_overlap(rows(records)) == 3
