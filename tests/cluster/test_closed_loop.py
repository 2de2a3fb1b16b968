"""Closed-loop clients end to end: the cap holds in the engine, sends are exact, warm-ups are
cut from the metrics, and the same seed gives the same summary byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.api import simulate


def _config(**client: object) -> dict[str, object]:
    return {
        "num_requests": 30,
        "seed": 3,
        "workload": {
            "arrival": {"kind": "immediate"},
            "lengths": {"kind": "random", "input_len": 300, "output_len": 40, "range_ratio": 0.5},
            "client": {"max_concurrency": 4, **client},
        },
    }


def _max_in_flight(arrival: np.ndarray, completion: np.ndarray) -> int:
    events = sorted([(t, 1) for t in arrival] + [(t, -1) for t in completion])
    cur = peak = 0
    for _t, delta in events:  # at equal times a completion (-1) sorts first
        cur += delta
        peak = max(peak, cur)
    return peak


@pytest.mark.parametrize("cap", [1, 4, 7])
def test_requests_in_flight_never_exceed_the_cap_and_all_complete(cap: int) -> None:
    cfg = _config()
    cfg["workload"]["client"]["max_concurrency"] = cap  # type: ignore[index]
    result = simulate(cfg)
    cols = result.records.requests.view()
    assert sorted(cols["request_id"].tolist()) == list(range(30))  # each sent once
    assert result.summary.num_completed == 30
    assert _max_in_flight(cols["arrival_s"], cols["completion_s"]) == cap
    # Closed loop: after the first cap sends, each send is at some request's completion.
    sends = np.sort(cols["arrival_s"])[cap:]
    assert np.isin(sends, cols["completion_s"]).all()


def test_warmups_are_excluded_from_the_metrics() -> None:
    base = simulate(_config())
    warm = simulate(_config(num_warmups=3))
    assert warm.summary.num_requests == 30
    assert warm.summary.counters["num_warmup_requests"] == 3
    cols = warm.records.requests.view()
    # The measured window starts after the warm-ups; durations agree within the warm-up time.
    assert cols["arrival_s"].min() > 0
    assert warm.summary.duration_s == pytest.approx(base.summary.duration_s, rel=0.05)
    assert warm.summary.ttft.count == 30


def test_same_seed_same_summary_bytes() -> None:
    assert simulate(_config(num_warmups=1)).to_json() == simulate(_config(num_warmups=1)).to_json()


def test_closed_loop_sessions_wait_for_the_response() -> None:
    cfg = {
        "num_requests": 12,
        "workload": {
            "arrival": {"kind": "immediate"},
            "lengths": {"kind": "random", "input_len": 200, "output_len": 30},
            "sessions": {"mean_turns": 3, "fixed_turns": True, "mean_think_time_s": 0.5},
            "client": {"max_concurrency": 2},
        },
    }
    cols = simulate(cfg).records.requests.view()
    order = np.argsort(cols["arrival_s"], kind="stable")
    assert cols["arrival_s"].size == 12
    # Every later turn is sent after some earlier response completed (not at t=0).
    assert (cols["arrival_s"][order][2:] > 0).all()
    assert _max_in_flight(cols["arrival_s"], cols["completion_s"]) <= 2
