"""Linear-attention state in the KV pool (vLLM V1's MambaSpec groups), by hand for Qwen3-Next.

Qwen3-Next-80B-A3B: 48 layers, 36 gated-DeltaNet (16 key heads, 32 value heads of 128, conv
kernel 4) and 12 full attention (2 KV heads of 256), bf16.
"""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from servesim.cli import app
from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig
from servesim.engine.blocks import KVBlockManager
from servesim.engine.config import SpeculativeConfig
from servesim.engine.speculative import draft_plan
from servesim.perf import default_perf_model
from servesim.perf.kv_groups import describe, kv_layout, state_pages_per_group, vllm_block_size
from servesim.perf.kv_layout import KVLayout
from servesim.perf.memory import CUDA_CONTEXT_BYTES, NCCL_BUFFER_BYTES, plan_memory
from servesim.perf.types import ReplicaPlan
from servesim.planner.analytic import Prefilter
from servesim.planner.plan import SchedulerVariant
from servesim.planner.scenario import Scenario, SLOCriterion, WorkloadShape
from servesim.planner.space import PlanSpec
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


def test_vllm_raises_the_block_for_every_group() -> None:
    # HybridAttentionMambaModelConfig: 16 * cdiv(state, 16 * 1,024 B) = 16 * 34 = 544 tokens
    # at tp=2, 16 * 17 = 272 at tp=4; a larger configured block is kept
    assert vllm_block_size(_plan(2), 16) == 544 and vllm_block_size(_plan(4), 16) == 272
    assert vllm_block_size(_plan(2), 1024) == 1024
    plain = ReplicaPlan(model=resolve_model("llama-3.1-8b"), gpu=get_gpu("h200"))
    assert vllm_block_size(plain, 16) == 16
    # at 544 tokens a state is one page; the full group's pages are 544 tokens too
    layout = kv_layout(_plan(2), 544)
    assert describe(layout) == "1 full + 3 state(x1 pages)" and layout.state_pages == 3
    assert layout.pages(1000) == 2 + 3  # before (16-token pages): 63 + 102 of 1/34 the size
    assert layout.pages(8192) == 16 + 3 and layout.peak_pages(32_768) == 61 + 3


def test_raised_pool_is_the_same_bytes_in_544_token_pages() -> None:
    small, raised = plan_memory(_plan(2)), plan_memory(_plan(2), block_size_tokens=544)
    assert raised.kv_bytes_per_token == 12 * 1024
    assert raised.num_kv_blocks == raised.kv_cache_bytes // (12 * 1024 * 544)
    assert raised.num_kv_blocks == small.num_kv_blocks // 34
    # sequences at 8k: num_blocks // (cdiv(8192, 544) + 3), vLLM's count (docs/kv-layout.md)
    before = small.num_kv_blocks // kv_layout(_plan(2), 16).peak_pages(8192)
    after = raised.num_kv_blocks // 19
    assert (before, after) == (449, 426)


def _max_overlap(cols: dict[str, np.ndarray]) -> int:
    starts, ends = cols["first_token_s"], cols["completion_s"]
    return max(int(((starts <= t) & (ends > t)).sum()) for t in starts)


def _state_setup(**changes: object) -> ReplicaSetup:
    return ReplicaSetup(
        plan=_plan(2),
        scheduler=VLLMSchedulerConfig(max_num_batched_tokens=256, enable_chunked_prefill=True),
        cache=CacheConfig(num_kv_blocks=22),
        **changes,  # type: ignore[arg-type]
    )


def test_engine_runs_as_many_sequences_as_the_states_allow() -> None:
    """A 22-page pool at vLLM's 544-token block: each 20 + 50 token request holds one full
    page and 3 state pages, 4, so 5 run at once (20 <= 22; a sixth needs 4 more); all are
    served and the books balance every step. The replica reports the raised block."""
    reqs = [req(i, 0.0, 20, 50) for i in range(10)]
    records = run(reqs, LinearPerf(), _state_setup())
    assert_all_served(records)
    assert records.counters.get("num_preemptions", 0) == 0
    assert _max_overlap(rows(records)) == 5
    assert records.replicas[0].block_size_tokens == 544


def test_speculation_holds_a_state_per_draft() -> None:
    """MTP with k = 2: vLLM's MambaManager holds 1 + 2 states per state group, so a request
    holds 1 + 3 x 3 = 10 pages and 2 run at once in the 22-page pool (5 without the
    speculative states)."""
    assert describe(kv_layout(_plan(2), 544, 2)) == "1 full + 3 state(3 states x1 pages)"
    assert kv_layout(_plan(2), 544, 2).pages(70) == 10
    spec = SpeculativeConfig(method="mtp", num_speculative_tokens=2)
    reqs = [req(i, 0.0, 20, 50) for i in range(10)]
    records = run(reqs, LinearPerf(), _state_setup(speculative=spec))
    assert_all_served(records)
    assert records.counters.get("num_preemptions", 0) == 0
    assert _max_overlap(rows(records)) == 2


def test_planner_sizes_the_pool_at_the_raised_block() -> None:
    """The analytic pre-filter's pool is in 544-token pages too: at a mean context of
    8000 + 384 / 2 = 8192 tokens a sequence holds cdiv(8192, 544) + 3 = 19 of them."""
    scenario = Scenario("qwen3-next-80b-a3b", criterion=SLOCriterion())
    pre = Prefilter(scenario, default_perf_model(), WorkloadShape(8000, 384, 8000, 384))
    est = pre.estimate(PlanSpec("h200", tp=2, scheduler=SchedulerVariant(max_num_seqs=1024)))
    assert est.status == "ok", est.reason
    assert est.max_kv_tokens % 544 == 0
    assert est.max_batch == est.max_kv_tokens // 544 // 19


def test_perf_command_reports_the_raised_block() -> None:
    # `servesim perf` shows the pool the replica runs: 8,109 pages of 544 tokens at tp=2;
    # a 262,144-token sequence holds cdiv(262144, 544) + 3 = 482 + 3 pages: 8109 // 485 = 16
    args = ["perf", "--model", "qwen3-next-80b-a3b", "--gpu", "h200", "--tp", "2"]
    result = CliRunner().invoke(app, [*args, "--batch", "decode=8x8192", "--json"])
    assert result.exit_code == 0, result.output
    memory = json.loads(result.output)["memory"]
    assert memory["block_size_tokens"] == 544 and memory["num_kv_blocks"] == 8109
    assert memory["kv_pages_per_seq_at_262144"] == 485 and memory["max_seqs_at_262144"] == 16


def test_mtp_head_of_a_linear_first_layer_is_full_attention() -> None:
    # vLLM's Qwen3-Next MTP layer is full attention (qwen3_next_mtp.py); the target's first
    # layer is DeltaNet. Before, the head copied it and its memory plan failed ("no layer
    # whose KV grows per token"); now its KV is one full layer's: 1,024 B a token at tp=2.
    head = draft_plan(_plan(2), SpeculativeConfig(method="mtp", num_speculative_tokens=2))
    assert head.model.layer_types == ("full",)
    assert plan_memory(head, block_size_tokens=544).kv_bytes_per_token == 1024


def test_dp_attention_ranks_and_pool_checks_size_at_the_raised_block() -> None:
    """A DP-attention rank's memory plan and the deployment check see the replica's pool:
    a configured 16-token block gives the same pages as vLLM's raised 544-token one."""
    from servesim.engine.dp_group import rank_memory_plan

    plan = ReplicaPlan(model=resolve_model("qwen3-next-80b-a3b"), gpu=get_gpu("h200"), tp=2)
    raised = rank_memory_plan(plan, 2, CacheConfig(block_size=544), 8192)
    configured = rank_memory_plan(plan, 2, CacheConfig(block_size=16), 8192)
    assert configured.num_kv_blocks == raised.num_kv_blocks
    assert vllm_block_size(plan, 16) == 544
