"""Speculative decoding: kept tokens per step, verify/draft cost, budget, KV and timing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from servesim.core.errors import ConfigError, InfeasibleError
from servesim.engine import SarathiSchedulerConfig, VLLMSchedulerConfig
from servesim.engine.config import SpeculativeConfig
from servesim.engine.sequence import Seq
from servesim.engine.setup import ReplicaSetup
from servesim.engine.speculative import (
    DEFAULT_ACCEPTANCE,
    Speculator,
    draft_plan,
    expected_tokens_per_step,
    num_kv_blocks_with_draft,
)
from servesim.perf.types import BatchShape, MemoryPlan, ReplicaPlan, StageTimes
from tests.engine.fakes import (
    LinearPerf,
    assert_all_served,
    plan,
    poisson_requests,
    req,
    rows,
    run,
)
from tests.engine.fakes import setup as make_setup
from tests.engine.test_invariants import _assert_same

V1 = VLLMSchedulerConfig(version="v1")
STEP_S = 0.010


class LayerPerf(LinearPerf):
    """LinearPerf scaled by the plan's layers over 32 (a one-layer draft head costs 1/32 of
    the target's step); memory likewise (weights 16 GiB and KV per token x layers / 32)."""

    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        times = super().iteration_time(plan, batch)
        scale = plan.model.num_layers / 32
        return StageTimes(stage_s=tuple(s * scale for s in times.stage_s), flops=times.flops)

    def memory_plan(self, plan: ReplicaPlan, **kw: object) -> MemoryPlan:  # type: ignore[override]
        mem = super().memory_plan(plan, **kw)  # type: ignore[arg-type]
        scale = plan.model.num_layers / 32
        return dataclasses.replace(
            mem,
            weight_bytes=int(mem.weight_bytes * scale),
            kv_bytes_per_token=mem.kv_bytes_per_token * scale,
        )


def _setup(spec: SpeculativeConfig | None, scheduler: object = V1, **cache: object) -> ReplicaSetup:
    return dataclasses.replace(make_setup(scheduler, **cache), speculative=spec)


def _seq(i: int = 0, output: int = 10_000) -> Seq:
    return Seq(req(i, 0.0, 16, output), row=0)


# ---- acceptance ----------------------------------------------------------------------------
def test_expected_tokens_hand_computed() -> None:
    # (1 - alpha^(k+1)) / (1 - alpha): alpha 0.8, k 3 -> (1 - 0.4096) / 0.2 = 2.952
    assert expected_tokens_per_step(0.8, 4) == pytest.approx(2.952)
    assert expected_tokens_per_step(0.5, 2) == pytest.approx(1.5)
    assert expected_tokens_per_step(0.0, 4) == 1.0
    assert expected_tokens_per_step(1.0, 4) == 4.0


def test_sampled_kept_tokens_have_the_geometric_law() -> None:
    spec = Speculator(SpeculativeConfig(acceptance_rate=0.8), plan(), 16)
    seq = _seq()
    kept = np.array([spec.num_kept(seq, 4) for _ in range(40_000)])
    assert kept.min() == 1 and kept.max() == 4
    assert kept.mean() == pytest.approx(2.952, abs=0.02)
    # P(kept = 1) = 1 - alpha; P(kept = 4) = alpha^3 (every draft accepted, plus the bonus)
    assert (kept == 1).mean() == pytest.approx(0.2, abs=0.01)
    assert (kept == 4).mean() == pytest.approx(0.512, abs=0.01)


def test_sampled_draws_are_per_request_and_seeded() -> None:
    def draws(seed: int, sid: int) -> list[int]:
        spec = Speculator(SpeculativeConfig(seed=seed), plan(), 16)
        seq = _seq(sid)
        return [spec.num_kept(seq, 4) for _ in range(200)]

    assert draws(0, 3) == draws(0, 3)
    assert draws(0, 3) != draws(1, 3)
    assert draws(0, 3) != draws(0, 4)


def test_expected_mode_carries_the_fraction() -> None:
    spec = Speculator(SpeculativeConfig(acceptance_rate=0.8, acceptance="expected"), plan(), 16)
    seq = _seq()
    kept = [spec.num_kept(seq, 4) for _ in range(1000)]
    assert sum(kept) == int(1000 * 2.952 + 1e-6)
    assert set(kept) == {2, 3}


def test_published_defaults() -> None:
    assert Speculator(SpeculativeConfig(method="mtp"), plan(), 16).alpha == 0.85
    assert Speculator(SpeculativeConfig(), plan(), 16).alpha == DEFAULT_ACCEPTANCE["eagle"]


# ---- shapes and memory ---------------------------------------------------------------------
def test_verify_shape_hand_computed() -> None:
    base = BatchShape(
        num_prefill_seqs=1,
        num_prefill_tokens=100,
        prefill_chunk_sq=10_000,
        max_prefill_chunk_tokens=100,
    )
    shape = Speculator.verify_shape(base, [(50, 4), (21, 2)])
    # chunks of 4 over 49 cached tokens and 2 over 20: 4*49 + 2*20 = 236 token pairs
    assert shape.num_prefill_seqs == 3
    assert shape.num_prefill_tokens == 106
    assert shape.prefill_chunk_x_context == 236
    assert shape.prefill_chunk_sq == 10_000 + 16 + 4
    assert shape.num_extra_logits == 4  # 3 + 1 logits beyond one per sequence
    assert shape.num_verify_seqs == 2
    assert shape.num_decode_seqs == 0
    # one verified position is exactly a plain decode's attention: c*0 + 1*(1+1)/2 + (c-1)
    one = Speculator.verify_shape(BatchShape(), [(50, 1)])
    assert one.prefill_chunk_x_context + (one.prefill_chunk_sq + 1) // 2 == 50


def test_head_is_one_layer_and_draft_model_checks_vocab() -> None:
    head = draft_plan(plan(), SpeculativeConfig())
    assert head.model.num_layers == 1 and head.model.hidden_size == plan().model.hidden_size
    small = draft_plan(plan(), SpeculativeConfig(method="draft", draft_model="llama-3.2-1b"))
    assert small.model.name != plan().model.name
    with pytest.raises(ConfigError):
        draft_plan(plan(), SpeculativeConfig(method="draft", draft_model="mistral-7b"))
    with pytest.raises(ValidationError):
        SpeculativeConfig(method="draft")
    with pytest.raises(ValidationError):
        SpeculativeConfig(method="eagle", draft_model="llama-3.2-1b")


def test_kv_blocks_with_draft_hand_computed() -> None:
    perf = LayerPerf(num_kv_blocks=1000, kv_bytes_per_token=131072.0)
    config = SpeculativeConfig(method="draft", draft_model="llama-3.2-1b")
    spec = Speculator(config, plan(), 16)
    target = perf.memory_plan(plan())
    draft = perf.memory_plan(spec.draft)  # 16 layers: half the weights and KV per token
    # (1000 * 16 * 128 KiB - 8 GiB) / (16 * (128 + 64) KiB) = (2000 MiB - 8192 MiB) < 0: no
    # block, refused with both models' weights named
    with pytest.raises(InfeasibleError, match=r"target weights .* \+ draft weights 8\.00 GiB"):
        num_kv_blocks_with_draft(spec, plan(), target, draft, config)
    big = LayerPerf(num_kv_blocks=10_000)
    target, draft = big.memory_plan(plan()), big.memory_plan(spec.draft)
    # (20000 MiB - 8192 MiB) / 3 MiB = 3936 blocks
    assert num_kv_blocks_with_draft(spec, plan(), target, draft, config) == 3936


def test_bad_configs_are_config_errors() -> None:
    with pytest.raises(ConfigError):  # k + 1 = 9 positions do not fit an 8-token block
        Speculator(SpeculativeConfig(num_speculative_tokens=8), plan(), 8)
    with pytest.raises(ConfigError):
        Speculator(SpeculativeConfig(), plan(pp=2), 16)


# ---- whole runs ----------------------------------------------------------------------------
def test_expected_mode_timing_hand_computed() -> None:
    # alpha 0.8, k 3: kept per step floor of the running sum of 2.952 -> 2, 3, 3, 3, 3, 3, 3,
    # 3, 3, 3 (29 tokens in 10 steps), then one position is left: 11 decode steps for the 30
    # tokens after the first. A step costs the target's 10 ms plus 3 head passes of 10/32 ms;
    # the prefill step adds one head pass over the prompt.
    spec = SpeculativeConfig(acceptance_rate=0.8, acceptance="expected")
    recs = run([req(0, 0.0, 32, 31)], LayerPerf(a=STEP_S, b=0.0, c=0.0), _setup(spec))
    assert_all_served(recs)
    cols = rows(recs)
    first = STEP_S * (1 + 1 / 32)
    assert cols["first_token_s"][0] == pytest.approx(first)
    assert cols["completion_s"][0] == pytest.approx(first + 11 * STEP_S * (1 + 3 / 32))
    assert len(recs.iterations.view()["start_s"]) == 12


def test_zero_acceptance_keeps_one_token_per_step() -> None:
    requests = poisson_requests(30, 20.0, (16, 200), (1, 60), seed=3)
    plain = rows(run(requests, LayerPerf(), _setup(None, num_kv_blocks=4000), skip_ahead=False))
    spec = SpeculativeConfig(acceptance_rate=0.0)
    zero = rows(run(requests, LayerPerf(), _setup(spec, num_kv_blocks=4000)))
    np.testing.assert_array_equal(plain["num_emitted_tokens"], zero["num_emitted_tokens"])
    # same steps, each dearer (k + 1 tokens through the GEMMs and 3 head passes)
    assert (zero["completion_s"] >= plain["completion_s"]).all()


def test_speculation_cuts_tpot_when_steps_are_latency_bound() -> None:
    requests = poisson_requests(40, 5.0, (16, 200), (50, 150), seed=4)
    perf = LayerPerf(a=STEP_S, b=1e-5, c=0.0)
    plain = rows(run(requests, perf, _setup(None, num_kv_blocks=4000)))
    spec = SpeculativeConfig(acceptance_rate=0.75)
    fast = rows(run(requests, perf, _setup(spec, num_kv_blocks=4000)))
    tpot = (plain["sum_tbt_s"] / (plain["num_emitted_tokens"] - 1)).mean()
    spec_tpot = (fast["sum_tbt_s"] / (fast["num_emitted_tokens"] - 1)).mean()
    # alpha 0.75, k 3: 2.73 tokens per step at ~1.1x the step time
    assert 2.0 < tpot / spec_tpot < 2.7


def test_verify_tokens_count_against_the_budget() -> None:
    requests = poisson_requests(60, 2000.0, (16, 100), (100, 200), seed=5)
    sched = SarathiSchedulerConfig(chunk_size=64)
    recs = run(requests, LayerPerf(), _setup(SpeculativeConfig(), sched, num_kv_blocks=4000))
    assert_all_served(recs)
    it = recs.iterations.view()
    tokens = it["num_prefill_tokens"] + 4 * it["num_decode_seqs"]
    assert 60 <= tokens.max() <= 64  # the budget binds, counting k + 1 per decode
    assert 12 <= it["num_decode_seqs"].max() <= 16  # at most 64 // (k + 1)


def test_lookahead_kv_under_pressure_keeps_every_invariant() -> None:
    # few blocks: decodes need lookahead slots, preemptions happen; invariants recounted
    requests = poisson_requests(60, 50.0, (16, 200), (20, 200), seed=6)
    for mode in ("recompute", "swap"):
        recs = run(
            requests,
            LayerPerf(),
            _setup(SpeculativeConfig(), num_kv_blocks=60, preemption_mode=mode),
        )
        assert_all_served(recs)
        assert recs.counters.get("num_preemptions", 0) > 0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    k=st.integers(1, 5),
    alpha=st.sampled_from([0.0, 0.6, 0.9, 1.0]),
    rate=st.sampled_from([5.0, 60.0]),
    seed=st.integers(0, 30),
    num_blocks=st.sampled_from([80, 900]),
)
def test_skip_ahead_flag_is_exact_under_speculation(
    k: int, alpha: float, rate: float, seed: int, num_blocks: int
) -> None:
    # speculation disables skip-ahead (kept tokens vary per sequence): both paths agree
    spec = SpeculativeConfig(num_speculative_tokens=k, acceptance_rate=alpha, seed=seed)
    requests = poisson_requests(50, rate, (16, 300), (1, 150), seed=seed)
    replica = _setup(spec, num_kv_blocks=num_blocks)
    fast = run(requests, LayerPerf(), replica)
    slow = run(requests, LayerPerf(), replica, skip_ahead=False)
    _assert_same(fast, slow)
    assert not fast.counters.get("num_skipped_iterations", 0)


def test_roofline_prices_every_verified_logit_and_replays_graphs() -> None:
    from servesim.perf.roofline import RooflinePerfModel

    perf = RooflinePerfModel()
    target = plan()
    decodes = [(1000, 4)] * 32
    shape = Speculator.verify_shape(BatchShape(), decodes)
    full = perf.iteration_time(target, shape)
    # the LM head over 32 x 4 positions costs more than over 32
    one_logit = perf.iteration_time(target, dataclasses.replace(shape, num_extra_logits=0))
    assert sum(full.stage_s) > sum(one_logit.stage_s)
    # as prompt chunks the step would run eagerly (kernel launches bound it) and its host
    # work would be per prompt; as verify passes it replays graphs with per-decode host work
    eager = perf.iteration_time(target, dataclasses.replace(shape, num_verify_seqs=0))
    assert full.stage_s[0] < eager.stage_s[0]
    assert full.overhead_s != eager.overhead_s
    # features off: a plain decode shape is priced as before
    plain = BatchShape(
        num_decode_seqs=32, decode_context_tokens=32_000, max_decode_context_tokens=1000
    )
    assert perf.iteration_time(target, plain) == RooflinePerfModel().iteration_time(target, plain)


def test_sampled_run_keeps_the_expected_tokens_per_step() -> None:
    # one request, 3,001 tokens: 3,000 after the first at 2.952 per step -> ~1,016 steps
    spec = SpeculativeConfig(acceptance_rate=0.8, seed=7)
    recs = run([req(0, 0.0, 32, 3001)], LayerPerf(), _setup(spec, num_kv_blocks=4000))
    assert_all_served(recs)
    num_decode_steps = len(recs.iterations.view()["start_s"]) - 1
    assert num_decode_steps == pytest.approx(3000 / 2.952, rel=0.03)
    # ITL is one gap per step, TPOT the time per token: TPOT x tokens per step = ITL
    cols = rows(recs)
    tpot = cols["sum_tbt_s"][0] / 3000
    gaps, weights = recs.token_gaps.arrays()
    assert int(weights.sum()) == num_decode_steps
    assert tpot * 3000 / num_decode_steps == pytest.approx(np.average(gaps, weights=weights))


@pytest.mark.parametrize(
    ("method", "num_drafts", "published_length"),
    [
        # vLLM PR #16035: EAGLE-1 head on Llama-3-8B-Instruct, MT-bench, k=2: 1.89 tokens per step.
        ("eagle", 2, 1.89),
        # vLLM PR #17504: EAGLE-3 head on Llama-3.1-8B-Instruct, MT-bench, k=7: 3.53.
        ("eagle3", 7, 3.53),
    ],
)
def test_default_acceptance_reproduces_the_published_mean_length(
    method: str, num_drafts: int, published_length: float
) -> None:
    alpha = DEFAULT_ACCEPTANCE[method]
    assert expected_tokens_per_step(alpha, num_drafts + 1) == pytest.approx(
        published_length, rel=0.02
    )
