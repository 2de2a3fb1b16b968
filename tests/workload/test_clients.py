"""BenchmarkClient: the cap on requests in flight, exactly-once sends, warm-ups, sessions."""

from __future__ import annotations

import heapq

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.core.errors import ConfigError
from servesim.workload.clients import BenchmarkClient, ClientOptions
from servesim.workload.request import Request


def _drive(client: BenchmarkClient, service_s: list[float]) -> list[tuple[float, int, int]]:
    """Serve the client with given per-send service times; returns (t, +1/-1, id) events."""
    events: list[tuple[float, int, int]] = []
    done: list[tuple[float, int]] = []  # (completion, id)
    wake = 0.0
    k = 0
    while True:
        for request in client.poll(wake):
            assert request.arrival_s == wake
            events.append((wake, 1, request.request_id))
            heapq.heappush(done, (wake + service_s[k % len(service_s)], request.request_id))
            k += 1
        nxt = client.next_wakeup()
        if done and (nxt is None or done[0][0] <= nxt):
            t, rid = heapq.heappop(done)
            events.append((t, -1, rid))
            client.on_done(rid, t)
            wake = t
        elif nxt is not None:
            wake = max(nxt, wake)
        else:
            return events


def _max_in_flight(events: list[tuple[float, int, int]]) -> int:
    cur = peak = 0
    for _t, delta, _rid in sorted(events, key=lambda e: (e[0], e[1])):
        cur += delta
        peak = max(peak, cur)
    return peak


@settings(max_examples=60, deadline=None)
@given(
    cap=st.integers(1, 8),
    arrivals=st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=40),
    service=st.lists(st.floats(0.001, 3, allow_nan=False), min_size=1, max_size=10),
    num_warmups=st.integers(0, 3),
)
def test_in_flight_never_exceeds_cap_and_each_request_is_sent_once(
    cap: int, arrivals: list[float], service: list[float], num_warmups: int
) -> None:
    times = sorted(arrivals)
    requests = [Request(i, t, 10, 5) for i, t in enumerate(times)]
    client = BenchmarkClient(requests, ClientOptions(cap, num_warmups))
    events = _drive(client, service)
    sent = [rid for _t, d, rid in events if d == 1]
    main = [rid for rid in sent if rid not in client.warmup_ids]
    assert sorted(main) == list(range(len(requests)))  # every request exactly once
    assert len(sent) == len(requests) + num_warmups
    assert _max_in_flight(events) <= cap
    assert not client.has_unsent and client.num_in_flight == 0
    # No measured request is sent before its pacing time after the warm-ups.
    start = client.main_start_s
    assert start is not None
    send_t = {rid: t for t, d, rid in events if d == 1}
    assert all(send_t[r.request_id] >= start + r.arrival_s - 1e-12 for r in requests)


def test_warmups_run_alone_before_the_measured_requests() -> None:
    requests = [Request(i, 0.0, 100, 10) for i in range(6)]
    client = BenchmarkClient(requests, ClientOptions(max_concurrency=2, num_warmups=3))
    events = _drive(client, [1.0])
    warm_done = max(t for t, d, rid in events if d == -1 and rid in client.warmup_ids)
    first_main = min(t for t, d, rid in events if d == 1 and rid not in client.warmup_ids)
    assert client.main_start_s == warm_done == first_main == 2.0  # 3 warm-ups, 2 at a time


def test_closed_sessions_send_the_next_turn_after_the_response_plus_think_time() -> None:
    # Session 0: turns open-loop 5 s apart; session 1 independent.
    requests = [
        Request(0, 0.0, 10, 5, session_id=0),
        Request(1, 0.0, 10, 5, session_id=1),
        Request(2, 5.0, 30, 5, session_id=0),
    ]
    client = BenchmarkClient(requests, ClientOptions(max_concurrency=1))
    events = _drive(client, [2.0])
    send_t = {rid: t for t, d, rid in events if d == 1}
    # One user: session 0 holds the slot through its think time (2 s + 5 s), then session 1.
    assert send_t == {0: 0.0, 2: 7.0, 1: 9.0}


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        ClientOptions(max_concurrency=0)
    with pytest.raises(ConfigError, match="num_warmups"):
        ClientOptions(num_warmups=-1)
