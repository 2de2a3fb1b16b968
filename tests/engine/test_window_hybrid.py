"""gpt-oss's hybrid full + sliding pool (1 full + 1 sliding(128) group, a page per group per
16 tokens): the sliding group's pages outside the window are freed as it slides while the
full group's stay (vLLM's SlidingWindowManager.remove_skipped_blocks), by hand."""

from __future__ import annotations

import dataclasses

from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig
from servesim.perf.kv_groups import describe, kv_layout
from servesim.perf.types import ReplicaPlan
from servesim.specs import get_gpu, resolve_model
from tests.engine.fakes import LinearPerf, assert_all_served, req, rows, run


def _setup(*, windowed: bool = True) -> ReplicaSetup:
    model = resolve_model("gpt-oss-20b")
    if not windowed:  # every layer full: the same 24 layers, nothing freed
        model = dataclasses.replace(model, layer_types=("full",) * model.num_layers)
    return ReplicaSetup(
        plan=ReplicaPlan(model=model, gpu=get_gpu("h100-sxm")),
        scheduler=VLLMSchedulerConfig(max_num_batched_tokens=2048, enable_chunked_prefill=True),
        cache=CacheConfig(),
    )


def test_pages_after_prefill_and_decode_steps_by_hand() -> None:
    layout = kv_layout(_setup().plan, 16)
    assert describe(layout) == "1 full + 1 sliding(128)"
    # a 1,000-token prompt: 63 full pages + 63 sliding - (1000 - 127) // 16 = 54 skipped
    assert layout.pages(1000) == 63 + 9
    # 500 decode steps later (1,500 tokens): 94 full + 94 - (1373 // 16 = 85) sliding
    assert layout.pages(1500) == 94 + 9
    # one decode step across a block boundary (1,008 -> 1,009 tokens): a page in each group
    # is taken, the sliding group frees none ((1009 - 127) // 16 = 55 as before); it frees
    # one when 1,023 - 127 = 896 = 56 * 16 tokens have left the window
    assert layout.step_pages(1008, 1) - layout.pages(1008) == 2
    assert layout.freed(1008, 1) == 0 and layout.freed(1022, 1) == 1


def test_two_long_sequences_share_a_pool_only_the_window_frees_make_room_for() -> None:
    """A 230-page pool, two 1,000 + 500-token requests: windowed, each holds at most 94 + 9
    = 103 pages (126 while its prompt computes; the second waits one step), so both run to
    the end without preemption; with every layer full (a page then 16 tokens of 12 layers
    twice over: 188 pages each at the end) the second waits for the first to finish
    (63 + 63 = 126 > 115 - watermark 1 from the start)."""
    reqs = [req(0, 0.0, 1000, 500), req(1, 0.0, 1000, 500)]
    windowed = run(reqs, LinearPerf(num_kv_blocks=230), _setup())
    assert_all_served(windowed)
    assert windowed.counters.get("num_preemptions", 0) == 0
    cols = rows(windowed)
    assert cols["first_token_s"][1] < cols["completion_s"][0]  # they decoded together
    # the plain pool of the same bytes: 230 pages of 12 layers = 115 blocks of 24 layers
    full = run(reqs, LinearPerf(num_kv_blocks=115), _setup(windowed=False))
    assert_all_served(full)
    assert rows(full)["first_token_s"][1] >= rows(full)["completion_s"][0]
