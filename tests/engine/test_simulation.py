"""run_simulation's contract: progress, duration limit, views, config unions, real perf model."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from servesim.engine import (
    CacheConfig,
    ReplicaView,
    SarathiSchedulerConfig,
    SchedulerConfig,
    VLLMSchedulerConfig,
    run_simulation,
)
from servesim.engine.records import RejectReason
from tests.engine.fakes import ConstantPerf, LinearPerf, poisson_requests, req, rows, run, setup


def test_progress_callback_counts_done_and_arrived() -> None:
    calls: list[tuple[int, int]] = []
    requests = poisson_requests(2500, 50.0, 20, 3, seed=1)
    run(requests, LinearPerf(), on_progress=lambda d, a: calls.append((d, a)))
    assert calls[0][0] == 1000 and calls[1][0] == 2000
    assert calls[-1] == (2500, 2500)
    assert all(done <= arrived for done, arrived in calls)


def test_duration_limit_marks_unfinished() -> None:
    requests = [req(0, 0.0, 10, 100), req(1, 0.05, 10, 2), req(2, 5.0, 10, 2)]
    recs = run(requests, ConstantPerf(0.1), duration_s=0.5)
    cols = rows(recs)
    assert len(cols["request_id"]) == 2  # the third arrives after the limit: never read
    assert cols["reject_reason"][0] == RejectReason.NOT_FINISHED
    assert 0 < cols["num_emitted_tokens"][0] < 100
    assert cols["reject_reason"][1] == RejectReason.NONE
    assert recs.counters["num_not_finished"] == 1 and recs.end_s == 0.5


def test_views_report_queue_running_and_kv() -> None:
    views: list[ReplicaView] = []

    def spy(request: object, vs: list[ReplicaView]) -> int:
        views.append(vs[0])
        return 0

    requests = [req(i, 0.001 * i, 200, 50) for i in range(6)]
    run_simulation(
        requests, [setup(VLLMSchedulerConfig(max_num_seqs=2))], ConstantPerf(), dispatch=spy
    )
    last = views[-1]
    # at t=5 ms only the first request runs (its prefill ends at 0.1 s); four wait
    assert last.num_running == 1 and last.num_queued == 4
    assert last.kv_usage == pytest.approx(13 / 1000)  # 200 tokens in 16-token blocks
    assert last.outstanding_tokens == 5 * 250


def test_v1_preempts_by_recompute_only() -> None:
    requests = [req(i, 0.0, 40, 80) for i in range(3)] + [req(3, 0.5, 40, 5)]
    cfg = VLLMSchedulerConfig(version="v1", max_num_batched_tokens=256)
    recs = run(requests, LinearPerf(), setup(cfg, num_kv_blocks=14))
    cols = rows(recs)
    assert recs.counters["num_preemptions"] > 0
    assert (cols["num_emitted_tokens"] == cols["num_output_tokens"]).all()
    assert "num_swap_outs" not in recs.counters  # V1 only recomputes


def test_configs_are_discriminated_unions() -> None:
    adapter = TypeAdapter(SchedulerConfig)
    cfg = adapter.validate_python({"kind": "sarathi", "chunk_size": 256})
    assert isinstance(cfg, SarathiSchedulerConfig) and cfg.chunk_size == 256
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "sarathi", "chunk_size": 0})
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "nope"})
    with pytest.raises(ValidationError):
        CacheConfig(block_size=0)


def test_with_the_roofline_perf_model() -> None:
    from servesim.perf.roofline import RooflinePerfModel

    requests = poisson_requests(300, 4.0, (100, 3000), (10, 400), seed=2)
    replica = setup()
    recs = run(requests, RooflinePerfModel(), replica, check_invariants=False)
    cols = rows(recs)
    assert (cols["reject_reason"] == 0).all()
    ttft = cols["first_token_s"] - cols["arrival_s"]
    assert 0.005 < np.median(ttft) < 2.0  # an 8B model on an H100: tens of milliseconds
    tpot = cols["sum_tbt_s"] / np.maximum(cols["num_output_tokens"] - 1, 1)
    assert 0.003 < np.median(tpot) < 0.1
    info = recs.replicas[0]
    assert info.num_kv_blocks > 10_000 and info.peak_flops_per_s > 1e14
