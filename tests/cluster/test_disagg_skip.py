"""Skip-ahead on disaggregated decode replicas is exact: every request's results, the token
gaps, the counters, the transfer figures and the summary are identical bit for bit with
skip-ahead on and off (``engine.skip.KVArrivalBound``), over prefill and decode pools of several
replicas, routers that read every field of the decode replicas' state, transfers with and
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
from tests.engine.fakes import LinearPerf, poisson_requests


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
}


def _run(name: str, skip_ahead: bool) -> ClusterRun:
    config, num, rate = SCENARIOS[name]
    perf = LinearPerf(num_kv_blocks=2000)
    deployment = build_deployment(DeploymentConfig.model_validate(config), "llama-3.1-8b", perf)
    requests = poisson_requests(num, rate, (50, 1500), (10, 300), 7)
    return run_cluster(requests, deployment, perf, seed=3, skip_ahead=skip_ahead)


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
