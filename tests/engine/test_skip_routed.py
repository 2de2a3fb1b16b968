"""Per-replica skip-ahead limits (``engine.skip_bounds.RoutedAhead``): with a router that reads no
replica state, each replica skips to its own next arrival, not the next one anywhere, and
every request's results are those of stepping one iteration at a time.

Hand-built case (``LinearPerf``: step = 0.01 + 1e-4 x tokens + 1e-7 x decode context): request
0 (100 prompt, 50 output tokens) reaches replica 0 at t = 0; request 1 (the same) reaches replica
1 at t = 0.05. Replica 0's prefill ends at 0.02 (0.01 + 100 x 1e-4), then one decode step of
~0.0100101 s per token. A global limit stops replica 0's decode run at the first step ending
past 0.05; its own limit (no further arrival for it) lets the run go on past 0.05.
"""

from __future__ import annotations

import math

import numpy as np

from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
from servesim.engine import SimulationRecords, run_simulation
from servesim.engine.skip_bounds import RoutedAhead
from tests.engine.fakes import LinearPerf, req, setup

ARRIVAL_1 = 0.05
REQUESTS = [req(0, 0.0, 100, 50), req(1, ARRIVAL_1, 100, 50)]


def _run(**kw: object) -> SimulationRecords:
    return run_simulation(REQUESTS, [setup(), setup()], LinearPerf(), **kw)  # type: ignore[arg-type]


def _spans_arrival(records: SimulationRecords, replica_id: int) -> bool:
    """Whether one of the replica's rows runs across request 1's arrival."""
    v = records.iterations.view()
    mine = v["replica_id"] == replica_id
    start, end = v["start_s"][mine], v["start_s"][mine] + v["duration_s"][mine]
    return bool(np.any((start < ARRIVAL_1) & (end > ARRIVAL_1) & (v["repeat"][mine] > 1)))


def _same_requests(a: SimulationRecords, b: SimulationRecords) -> None:
    ra, rb = a.requests.view(), b.requests.view()
    assert sorted(ra) == sorted(rb)
    for name in ra:
        assert np.array_equal(ra[name], rb[name], equal_nan=True), name


def _iterations(records: SimulationRecords, replica_id: int) -> int:
    v = records.iterations.view()
    return int(v["repeat"][v["replica_id"] == replica_id].sum())


def test_replica_0_skips_past_replica_1s_arrival_with_results_of_stepping() -> None:
    own, shared, stepped = _run(route_ahead=True), _run(route_ahead=False), _run(skip_ahead=False)
    assert _spans_arrival(own, 0)
    assert not _spans_arrival(shared, 0)  # the global limit cut the run at 0.05
    _same_requests(own, stepped)
    _same_requests(shared, stepped)
    for replica_id in (0, 1):
        # 1 prefill step (first token) + 49 decode steps each, whatever the rows
        assert _iterations(own, replica_id) == _iterations(stepped, replica_id) == 50
    v, s = own.iterations.view(), stepped.iterations.view()
    assert math.isclose(
        float((v["start_s"] + v["duration_s"]).max()), float((s["start_s"] + s["duration_s"]).max())
    )


def test_round_robin_routes_ahead_by_default_a_dispatch_function_does_not() -> None:
    assert _spans_arrival(_run(), 0)
    stateful = _run(dispatch=lambda r, views: r.request_id % 2)
    assert not _spans_arrival(stateful, 0)
    _same_requests(stateful, _run(skip_ahead=False))


def _cluster(router: str) -> SimulationRecords:
    perf = LinearPerf()
    config = {"pools": [{"replicas": 2}], "router": {"kind": router}}
    deployment = build_deployment(DeploymentConfig.model_validate(config), "llama-3.1-8b", perf)
    return run_cluster(REQUESTS, deployment, perf).records


def test_cluster_routes_ahead_only_for_a_router_declaring_it_reads_no_state() -> None:
    rr, lot = _cluster("round_robin"), _cluster("least_outstanding_requests")
    assert _spans_arrival(rr, 0)
    assert not _spans_arrival(lot, 0)
    _same_requests(rr, lot)  # both send request 0 to replica 0 and request 1 to replica 1


def test_a_replica_no_arrival_reaches_is_limited_by_the_last_arrival_read() -> None:
    stream = iter([req(i, float(i), 10, 10) for i in range(20)])
    ahead = RoutedAhead(lambda: next(stream, None), lambda r: 0, num_replicas=2)
    assert ahead.limit(0) == 0.0
    # replica 1 gets nothing: reading stops at depth 4 x 2 = 8 requests (arrivals 0..7)
    assert ahead.limit(1) == 7.0
    assert len(ahead.queue) == 8
    request, index = ahead.pop()  # type: ignore[misc]
    ahead.arrived(index)
    assert (request.request_id, index, ahead.limit(0)) == (0, 0, 1.0)
    while ahead.pop() is not None:
        pass
    assert ahead.limit(1) == math.inf  # the stream is done
