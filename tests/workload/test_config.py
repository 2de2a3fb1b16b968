"""WorkloadConfig: the user-facing boundary builds lazy, deterministic workloads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload import Request, WorkloadConfig, describe


def _poisson_fixed(**extra: object) -> WorkloadConfig:
    return WorkloadConfig(
        arrival={"kind": "poisson", "rate_per_s": 10.0},
        lengths={
            "kind": "independent",
            "prompt": {"kind": "fixed", "tokens": 100},
            "output": {"kind": "lognormal", "median_tokens": 50, "sigma": 0.5, "max_tokens": 400},
        },
        **extra,
    )


def test_default_config_is_sharegpt_1000_requests() -> None:
    requests = list(WorkloadConfig().build(RandomStreams(0)))
    assert len(requests) == 1000
    assert [r.request_id for r in requests] == list(range(1000))
    assert all(isinstance(r, Request) for r in requests)
    times = [r.arrival_s for r in requests]
    assert times == sorted(times)


def test_poisson_fixed_lognormal_config() -> None:
    requests = list(_poisson_fixed(num_requests=500).build(RandomStreams(3)))
    assert len(requests) == 500
    assert {r.num_prompt_tokens for r in requests} == {100}
    assert all(1 <= r.num_output_tokens <= 400 for r in requests)


def test_same_seed_same_requests_and_reiterable() -> None:
    config = _poisson_fixed(num_requests=200)
    first = list(config.build(RandomStreams(7)))
    workload = config.build(RandomStreams(7))
    assert list(workload) == first
    assert list(workload) == first  # iterating again restarts the streams
    assert list(config.build(RandomStreams(8))) != first


def test_duration_stops_at_time() -> None:
    workload = _poisson_fixed(duration_s=20.0).build(RandomStreams(1))
    times = [r.arrival_s for r in workload]
    assert times and max(times) <= 20.0
    assert 150 < len(times) < 250  # 10 req/s for 20 s


def test_discriminated_union_rejects_unknown_kind() -> None:
    with pytest.raises(ValidationError):
        WorkloadConfig(arrival={"kind": "bogus", "rate_per_s": 1.0})
    with pytest.raises(ValidationError):
        WorkloadConfig(arrival={"kind": "poisson", "rate_per_s": -1.0})


def test_needs_lengths_without_preset() -> None:
    config = WorkloadConfig(arrival={"kind": "poisson", "rate_per_s": 1.0})
    with pytest.raises(ConfigError, match="lengths"):
        config.build(RandomStreams(0))


def test_preset_rate_override() -> None:
    workload = WorkloadConfig(preset="sharegpt", rate_per_s=20.0, num_requests=4000)
    stats = describe(workload.build(RandomStreams(0)))
    assert stats.rate_per_s == pytest.approx(20.0, rel=0.05)
