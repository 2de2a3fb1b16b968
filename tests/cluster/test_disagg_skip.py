"""Skip-ahead on disaggregated decode replicas is exact: every request's results, the token
gaps, the counters, the transfer figures and the summary are identical bit for bit with
skip-ahead on and off (``engine.skip_bounds.KVArrivalBound``), over prefill and decode pools
of several replicas, routers that read every field of the decode replicas' state, transfers with and
without layer-wise overlap, decode memory tight enough to hold KV back (the sender frees its
copy only on admission), pipeline-parallel decode replicas, engine profiles that schedule a
step ahead and add front-end latency, at low load and near saturation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
from servesim.cluster.runner import ClusterRun
from servesim.engine.simulation import ReplicaView
from servesim.metrics import summarize
from servesim.workload.request import Request
from tests.engine.fakes import LinearPerf, poisson_requests, req


class ViewHashRouter:
    """Picks a replica from a hash of every field of every view (a decode router any state
    difference at hand-off time would send elsewhere)."""

    def __init__(self, context: object = None) -> None:
        self.context = context

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """The position the views' fields hash to."""
        key = tuple(
            (v.num_queued, v.num_running, v.kv_usage, v.outstanding_tokens, v.replica_id)
            for v in (views[i] for i in range(len(views)))
        )
        digest = sum((i + 1) * hash(field) for i, row in enumerate(key) for field in row)
        return (digest + request.request_id) % len(views)


HASH_ROUTER = f"{Path(__file__)}:ViewHashRouter"


def _pools(prefill: int, decode: int, **decode_fields: Any) -> list[dict[str, Any]]:
    return [
        {"name": "p", "role": "prefill", "replicas": prefill},
        {"name": "d", "role": "decode", "replicas": decode, **decode_fields},
    ]


# name -> (deployment config, number of requests, arrivals per second)
SCENARIOS: dict[str, tuple[dict[str, Any], int, float]] = {
    "1p1d-low": ({"pools": _pools(1, 1)}, 60, 2.0),
    "1p1d-saturated": ({"pools": _pools(1, 1)}, 200, 40.0),
    "2p3d-random": (
        {"pools": _pools(2, 3), "decode_router": {"kind": "random"}},
        200,
        25.0,
    ),
    "2p3d-hash-router-saturated": (
        {"pools": _pools(2, 3), "decode_router": {"kind": HASH_ROUTER}},
        240,
        60.0,
    ),
    "3p2d-least-tokens-overlap": (
        {
            "pools": _pools(3, 2),
            "decode_router": {"kind": "least_outstanding_tokens"},
            "transfer": {"layerwise_overlap": True, "first_token_at": "decode"},
        },
        200,
        30.0,
    ),
    "1p2d-tight-kv-hash": (
        {
            # 150 blocks of 16 tokens: the decode replicas hold KV back (the sender's copy
            # is freed on admission, not on arrival)
            "pools": _pools(1, 2, cache={"num_kv_blocks": 150}),
            "decode_router": {"kind": HASH_ROUTER},
        },
        160,
        20.0,
    ),
    "2p2d-pp2-least-kv": (
        {"pools": _pools(2, 2, pp=2), "decode_router": {"kind": "least_kv_usage"}},
        200,
        25.0,
    ),
    "2p2d-v1-async": (
        {
            "pools": [
                {"name": "p", "role": "prefill", "replicas": 2, "engine": "vllm-v1-async"},
                {"name": "d", "role": "decode", "replicas": 2, "engine": "vllm-v1-async"},
            ],
            "decode_router": {"kind": HASH_ROUTER},
        },
        200,
        25.0,
    ),
    "2p2d-sarathi-cut-short": (
        {
            "pools": [
                {"name": "p", "role": "prefill", "replicas": 2, "scheduler": {"kind": "sarathi"}},
                {"name": "d", "role": "decode", "replicas": 2},
            ],
            "decode_router": {"kind": HASH_ROUTER},
        },
        240,
        50.0,
    ),
}
# runs stopped by the clock (requests still decoding or in transfer are NOT_FINISHED)
DURATION_S = {"2p2d-sarathi-cut-short": 3.0}


def _run(name: str, skip_ahead: bool) -> ClusterRun:
    config, num, rate = SCENARIOS[name]
    perf = LinearPerf(num_kv_blocks=2000)
    deployment = build_deployment(DeploymentConfig.model_validate(config), "llama-3.1-8b", perf)
    requests = poisson_requests(num, rate, (50, 1500), (10, 300), 7)
    duration = DURATION_S.get(name)
    return run_cluster(
        requests, deployment, perf, seed=3, skip_ahead=skip_ahead, duration_s=duration
    )


def _gap_histogram(run: ClusterRun) -> dict[float, int]:
    """Token gap samples as value -> total weight (a skipped run adds one weighted sample
    per tick for the whole group, so their order differs)."""
    values, weights = run.records.token_gaps.arrays()
    out: dict[float, int] = {}
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        out[value] = out.get(value, 0) + int(weight)
    return out


def _decode_skipped(run: ClusterRun) -> int:
    """Iterations of decode replicas recorded inside a skipped run (rows repeated)."""
    it = run.records.iterations.view()
    decode = np.isin(
        it["replica_id"], [i for i, r in enumerate(run.records.replicas) if r.role == "decode"]
    )
    return int((it["repeat"][decode] - 1).clip(min=0).sum())


def _same_summary(fast: ClusterRun, slow: ClusterRun, pipelined: bool) -> None:
    """The summaries agree exactly on every figure the requests' results give. The figures
    from iteration rows agree as on a unified replica: energy to float rounding (sums in
    another order); the batch size too without pipeline stages (a pipelined replica's run
    row is its engines' mean, as for unified pp replicas); the ``kv_utilization`` series
    not (a run's one row holds the KV usage at its end)."""
    a, b = summarize(fast.records), summarize(slow.records)
    skip = "num_skipped_iterations"
    assert {k: v for k, v in a.counters.items() if k != skip} == b.counters
    if not pipelined:
        assert a.batch_size.mean == pytest.approx(b.batch_size.mean, rel=1e-9)
    for field in dataclasses.fields(a.efficiency):
        x, y = getattr(a.efficiency, field.name), getattr(b.efficiency, field.name)
        assert x == pytest.approx(y, rel=1e-9), field.name
    iteration = {"counters", "batch_size", "kv_utilization", "efficiency"}
    for field in dataclasses.fields(a):
        if field.name not in iteration:
            assert getattr(a, field.name) == getattr(b, field.name), field.name


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_decode_skip_ahead_on_and_off_give_identical_runs(name: str) -> None:
    fast, slow = _run(name, True), _run(name, False)
    a, b = fast.records.requests.view(), slow.records.requests.view()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    if name in DURATION_S:
        assert (a["reject_reason"] != 0).any()  # the clock stopped the run
    else:
        assert (a["reject_reason"] == 0).all()
    assert _gap_histogram(fast) == _gap_histogram(slow)
    skip = "num_skipped_iterations"
    assert {k: v for k, v in fast.records.counters.items() if k != skip} == {
        k: v for k, v in slow.records.counters.items() if k != skip
    }
    assert fast.stats.transfer_rows == slow.stats.transfer_rows
    assert fast.stats.transfer_s == slow.stats.transfer_s
    assert fast.records.end_s == slow.records.end_s
    _same_summary(fast, slow, pipelined="pp2" in name)
    # guards the comparison against a skip-ahead that never engages on the decode side
    assert _decode_skipped(fast) > 0
    assert _decode_skipped(slow) == 0


def test_a_decode_run_stops_at_the_next_arrival_and_at_each_prefill_step_end() -> None:
    # LinearPerf: step = 0.01 + 1e-4 x tokens (+ 1e-7 x decode context). The prefill replica
    # runs request 0's 100-token prompt 0 -> 0.02 and hands it off; request 1 (1,000 tokens)
    # arrives at 0.2 and runs as chunks of 512 and 488 tokens (vLLM V0's chunked default):
    # 0.2 -> 0.2612 -> 0.32, then hands off. Request 0 decodes on the decode replica meanwhile.
    perf = LinearPerf()
    config = {"pools": [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode"}]}
    deployment = build_deployment(DeploymentConfig.model_validate(config), "llama-3.1-8b", perf)
    requests = [req(0, 0.0, 100, 60), req(1, 0.2, 1000, 10)]
    fast = run_cluster(requests, deployment, perf)
    slow = run_cluster(requests, deployment, perf, skip_ahead=False)
    it = fast.records.iterations.view()
    prefill = it["replica_id"] == 0
    assert np.allclose(it["start_s"][prefill] + it["duration_s"][prefill], [0.02, 0.2612, 0.32])
    runs = (it["replica_id"] == 1) & (it["repeat"] > 1)
    start, end = it["start_s"][runs], it["start_s"][runs] + it["duration_s"][runs]
    for cut in (0.2, 0.2612, 0.32):
        assert not np.any((start < cut) & (end > cut)), cut
    # ... and it skips while the prefill is in flight, up to the prefill's step end
    assert np.any((start > 0.2) & (end < 0.2612))
    assert np.any((start > 0.2612) & (end < 0.32))
    a, b = fast.records.requests.view(), slow.records.requests.view()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
