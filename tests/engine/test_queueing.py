"""Analytic checks: an M/D/1 queue, and pipeline-parallel throughput."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.engine import VLLMSchedulerConfig
from tests.engine.fakes import ConstantPerf, assert_all_served, poisson_requests, req, rows, run
from tests.engine.fakes import setup as make_setup


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_wait(rho: float) -> None:
    service_s = 0.1
    # one token per request: each request is one prefill iteration of constant length
    requests = poisson_requests(40_000, rho / service_s, 10, 1, seed=11)
    replica = make_setup(VLLMSchedulerConfig(max_num_seqs=1))
    recs = run(requests, ConstantPerf(service_s), replica, check_invariants=False)
    assert_all_served(recs)
    cols = rows(recs)
    wait = cols["first_scheduled_s"] - cols["arrival_s"]
    expected = rho * service_s / (2 * (1 - rho))  # Pollaczek-Khinchine for M/D/1
    assert wait.mean() == pytest.approx(expected, rel=0.05)
    np.testing.assert_allclose(cols["completion_s"] - cols["first_scheduled_s"], service_s)


@pytest.mark.parametrize("pp", [2, 4])
def test_pipeline_keeps_micro_batches_in_flight(pp: int) -> None:
    latency_s = 0.2  # a micro-batch's trip through all stages; each stage takes latency/pp
    requests = [req(i, 0.0, 10, 1) for i in range(200)]

    def makespan(stages: int) -> float:
        replica = make_setup(VLLMSchedulerConfig(max_num_seqs=1), pp=stages)
        recs = run(requests, ConstantPerf(latency_s), replica, check_invariants=False)
        assert_all_served(recs)
        return float(np.nanmax(rows(recs)["completion_s"]))

    single = makespan(1)
    assert single == pytest.approx(200 * latency_s)
    # pp virtual engines keep pp micro-batches in flight: one completes every stage time
    assert makespan(pp) == pytest.approx(200 * latency_s / pp + latency_s * (pp - 1) / pp)


def test_pipeline_virtual_engines_split_kv_and_requests() -> None:
    requests = [req(i, 0.0, 100, 20) for i in range(8)]
    replica = make_setup(pp=2, num_kv_blocks=400)
    recs = run(requests, ConstantPerf(0.1), replica)
    assert_all_served(recs)
    assert recs.replicas[0].num_kv_blocks == 400
    it = recs.iterations.view()
    # two micro-batches overlap in time
    ends = it["start_s"] + it["duration_s"]
    assert (it["start_s"][1:] < ends[:-1]).any()
