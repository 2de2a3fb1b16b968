"""Per-request preemption choice (engine/preemption.py): fixed mode, or the cheaper of a swap
round trip over the host link and a recompute, with hand-computed boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.engine.config import VLLMSchedulerConfig
from servesim.engine.preemption import CheaperPreemption, FixedPreemption, prefill_seconds
from servesim.engine.records import SimulationRecords
from servesim.engine.sequence import Seq
from servesim.engine.timeline import BatchPricer, SwapLink
from tests.engine.fakes import LinearPerf, plan, req, rows, run, setup


def _seq(prompt: int, emitted: int = 0) -> Seq:
    seq = Seq(req(0, 0.0, prompt, 500), 0)
    seq.num_emitted = emitted
    return seq


def test_fixed_choice_is_the_configured_mode() -> None:
    assert FixedPreemption("swap").choose(_seq(100), 7) == "swap"
    assert FixedPreemption("recompute").choose(_seq(100), 7) == "recompute"


def test_cheaper_choice_compares_the_round_trip_with_the_recompute() -> None:
    # recompute: 1e-4 s per token; swap: 1e-4 s per block + 10 ms latency, out and back
    choice = CheaperPreemption(SwapLink(1e-4, 0.01, 0.0), lambda n: 1e-4 * n)
    # 100 tokens: recompute 10 ms < round trip 2 * (7 * 0.1 + 10) ms = 21.4 ms
    assert choice.choose(_seq(100), 7) == "recompute"
    # 1,000 tokens (900 prompt + 100 generated): recompute 100 ms > 2 * (63 * 0.1 + 10) ms
    assert choice.choose(_seq(900, 100), 63) == "swap"
    # no latency: 2 * 7 * 0.1 ms = 1.4 ms < 10 ms
    assert (
        CheaperPreemption(SwapLink(1e-4, 0.0, 0.0), lambda n: 1e-4 * n).choose(_seq(100), 7)
        == "swap"
    )


def test_recompute_time_is_a_one_chunk_prefill_of_the_tokens() -> None:
    perf = LinearPerf(a=0.01, b=1e-4, c=0.0)
    recompute_s = prefill_seconds(BatchPricer(perf, plan(pp=2)))
    # a + b * n, split over two stages and summed back
    assert recompute_s(300) == pytest.approx(0.01 + 1e-4 * 300, rel=1e-12)


def _assert_identical(a: SimulationRecords, b: SimulationRecords) -> None:
    ca, cb = rows(a), rows(b)
    assert ca.keys() == cb.keys()
    for key in ca:
        np.testing.assert_array_equal(ca[key], cb[key], err_msg=key)


def _preempting(choice: str, mode: str = "recompute", perf: LinearPerf | None = None, **kw):  # type: ignore[no-untyped-def]
    requests = [req(i, 0.0, 50, 100) for i in range(4)]
    replica = setup(num_kv_blocks=24, preemption_mode=mode, preemption_choice=choice, **kw)
    return run(requests, perf or LinearPerf(), replica)


def test_cheaper_swaps_when_recompute_is_slow_and_matches_fixed_swap() -> None:
    # LinearPerf recomputes >= 10 ms; 16 x 128 KiB blocks over PCIe5 take ~33 us each
    cheaper = _preempting("cheaper")
    swap = _preempting("fixed", "swap")
    assert cheaper.counters["num_swap_outs"] > 0
    assert "num_recompute_preemptions" not in cheaper.counters
    _assert_identical(cheaper, swap)  # every choice was swap: the same run


def test_cheaper_recomputes_when_recompute_is_nearly_free() -> None:
    fast = LinearPerf(a=1e-6, b=1e-9, c=0.0)
    cheaper = _preempting("cheaper", "swap", perf=fast)
    recompute = _preempting("fixed", "recompute", perf=LinearPerf(a=1e-6, b=1e-9, c=0.0))
    assert cheaper.counters["num_preemptions"] > 0
    assert "num_swap_outs" not in cheaper.counters
    _assert_identical(cheaper, recompute)


def test_a_scheduler_that_declares_its_mode_overrides_the_choice() -> None:
    requests = [req(i, 0.0, 50, 100) for i in range(4)]
    v1 = setup(
        VLLMSchedulerConfig(version="v1"),
        num_kv_blocks=24,
        preemption_mode="swap",
        preemption_choice="cheaper",
    )
    recs = run(requests, LinearPerf(), v1)
    assert recs.counters["num_preemptions"] > 0
    assert "num_swap_outs" not in recs.counters
