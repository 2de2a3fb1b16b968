"""Properties that hold on every run: everything completes or is rejected with a reason,
emitted == requested, KV within capacity, accounting invariants (checked each step),
skip-ahead equivalence and determinism."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.engine import (
    FairSchedulerConfig,
    OrcaSchedulerConfig,
    PrioritySchedulerConfig,
    SarathiSchedulerConfig,
    StaticSchedulerConfig,
    VLLMSchedulerConfig,
)
from servesim.engine.records import RejectReason, SimulationRecords
from tests.engine.fakes import LinearPerf, poisson_requests, req, rows, run, setup

SCHEDULERS = [
    VLLMSchedulerConfig(),
    VLLMSchedulerConfig(enable_chunked_prefill=True, max_num_batched_tokens=64),
    VLLMSchedulerConfig(version="v1", max_num_batched_tokens=96, max_num_seqs=6),
    SarathiSchedulerConfig(chunk_size=48, max_num_seqs=5),
    OrcaSchedulerConfig(max_num_seqs=4),
    StaticSchedulerConfig(max_num_seqs=3),
    PrioritySchedulerConfig(chunk_size=64, max_num_seqs=4),
    FairSchedulerConfig(chunk_size=64, max_num_seqs=4),
]

workloads = st.lists(
    st.tuples(
        st.floats(0, 0.05),  # inter-arrival
        st.integers(1, 120),  # prompt
        st.integers(1, 60),  # output
        st.integers(0, 2),  # priority
        st.integers(0, 2),  # user / shared-prefix family
    ),
    min_size=1,
    max_size=25,
)


def _requests(spec: list[tuple[float, int, int, int, int]]) -> list:
    out, t = [], 0.0
    for i, (gap, p, o, prio, user) in enumerate(spec):
        t += gap
        hashes = tuple(range(user * 100, user * 100 + p // 8))
        out.append(
            req(
                i,
                t,
                p,
                o,
                priority=prio,
                user_id=user,
                prefix_block_hashes=hashes,
                prefix_block_size=8,
            )
        )
    return out


def _check_records(recs: SimulationRecords, n: int, pp: int = 1) -> None:
    cols = rows(recs)
    assert len(cols["request_id"]) == n
    done = cols["reject_reason"] == RejectReason.NONE
    assert (cols["num_emitted_tokens"][done] == cols["num_output_tokens"][done]).all()
    assert (cols["num_emitted_tokens"][~done] == 0).all()
    assert (cols["reject_reason"] != RejectReason.NOT_FINISHED).all()
    assert np.isfinite(cols["completion_s"][done]).all()
    assert (cols["first_token_s"][done] >= cols["arrival_s"][done]).all()
    assert (cols["completion_s"][done] >= cols["first_token_s"][done]).all()
    it = recs.iterations.view()
    assert (it["num_kv_blocks_used"] <= recs.replicas[0].num_kv_blocks).all()
    if pp == 1:
        assert (np.diff(it["start_s"]) >= 0).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=workloads,
    which=st.integers(0, len(SCHEDULERS) - 1),
    num_blocks=st.integers(12, 80),
    block_size=st.sampled_from([4, 8, 16]),
    prefix=st.booleans(),
    mode=st.sampled_from(["recompute", "swap"]),
    pp=st.sampled_from([1, 1, 2]),
)
def test_every_request_completes_or_is_rejected(
    spec: list, which: int, num_blocks: int, block_size: int, prefix: bool, mode: str, pp: int
) -> None:
    requests = _requests(spec)
    replica = setup(
        SCHEDULERS[which],
        max_context_tokens=150,
        block_size=block_size,
        enable_prefix_caching=prefix,
        preemption_mode=mode,
        num_kv_blocks=num_blocks,
        swap_space_bytes=block_size * 131072 * 10,
        pp=pp,
    )
    recs = run(requests, LinearPerf(), replica)
    _check_records(recs, len(requests), pp)
    plain = run(requests, LinearPerf(), replica, skip_ahead=False)
    _assert_same(recs, plain)


def _assert_same(a: SimulationRecords, b: SimulationRecords) -> None:
    ca, cb = rows(a), rows(b)
    for key in ca:
        if ca[key].dtype.kind == "f":
            np.testing.assert_allclose(ca[key], cb[key], rtol=1e-9, atol=1e-12, err_msg=key)
        else:
            np.testing.assert_array_equal(ca[key], cb[key], err_msg=key)
    va, wa = a.token_gaps.arrays()
    vb, wb = b.token_gaps.arrays()
    assert wa.sum() == wb.sum()
    np.testing.assert_allclose(np.dot(va, wa), np.dot(vb, wb), rtol=1e-9)
    np.testing.assert_allclose(np.sort(np.repeat(va, wa)), np.sort(np.repeat(vb, wb)), rtol=1e-9)
    ia, ib = a.iterations.view(), b.iterations.view()
    assert ia["repeat"].sum() == ib["repeat"].sum() == len(ib["repeat"])


def test_skip_ahead_equivalence_under_load() -> None:
    requests = poisson_requests(400, 40.0, (20, 400), (20, 300), seed=3)
    replica = setup(num_kv_blocks=900)
    fast = run(requests, LinearPerf(), replica, check_invariants=False)
    slow = run(requests, LinearPerf(), replica, check_invariants=False, skip_ahead=False)
    _assert_same(fast, slow)
    assert fast.counters["num_skipped_iterations"] > 0
    assert len(fast.iterations.view()["repeat"]) < len(slow.iterations.view()["repeat"])


def test_deterministic() -> None:
    requests = poisson_requests(200, 30.0, (10, 300), (5, 200), seed=5)
    a = run(requests, LinearPerf(num_kv_blocks=300), check_invariants=False)
    b = run(requests, LinearPerf(num_kv_blocks=300), check_invariants=False)
    for key, col in a.requests.view().items():
        assert col.tobytes() == b.requests.view()[key].tobytes(), key
    assert a.token_gaps == b.token_gaps and a.counters == b.counters


def test_requests_are_consumed_lazily() -> None:
    pulled = []

    def gen():
        for r in poisson_requests(50, 10.0, 20, 5):
            pulled.append(r.request_id)
            yield r

    recs = run(gen(), duration_s=1.0)
    assert len(pulled) < 50  # arrivals after the limit were never read (but one look-ahead)
    cols = rows(recs)
    unfinished = cols["reject_reason"] == RejectReason.NOT_FINISHED
    assert recs.end_s == 1.0
    assert (np.isnan(cols["completion_s"]) == unfinished).all()


def test_skip_ahead_runs_through_finishes_when_nothing_waits() -> None:
    # everyone admitted at once, different output lengths, no later arrivals
    requests = [req(i, 0.0, 30, 10 + 7 * i) for i in range(12)]
    fast = run(requests, LinearPerf(), setup(num_kv_blocks=400))
    slow = run(requests, LinearPerf(), setup(num_kv_blocks=400), skip_ahead=False)
    _assert_same(fast, slow)
    it = fast.iterations.view()
    # one prefill row, one decode row with the joiners, then one row per finish segment
    assert len(it["repeat"]) <= 2 + 12 + 1
    assert list(it["num_decode_seqs"][2:5]) == [12, 11, 10]
