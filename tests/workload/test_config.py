"""WorkloadConfig: the user-facing boundary builds lazy, deterministic workloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload import Request, WorkloadConfig, describe
from servesim.workload.arrival_config import PoissonConfig
from servesim.workload.length_config import FixedDist, IndependentLengthsConfig


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


@pytest.mark.parametrize(
    "arrival",
    [
        None,
        {"kind": "poisson", "rate_per_s": 1.0},
        {"kind": "gamma", "rate_per_s": 1.0, "cv": 2.0},
        {"kind": "onoff", "rate_on_per_s": 4.0, "mean_on_s": 1.0, "mean_off_s": 3.0},
        {"kind": "time_varying", "times_s": [0, 10], "rates_per_s": [1, 3], "period_s": 20},
    ],
)
def test_with_rate_sets_mean_rate(arrival: dict | None) -> None:
    base = WorkloadConfig(preset="lmsys", arrival=arrival, num_requests=20_000)
    config = base.with_rate(7.0)
    stats = describe(config.build(RandomStreams(0)))
    assert stats.rate_per_s == pytest.approx(7.0, rel=0.05)
    with pytest.raises(ConfigError):
        base.with_rate(0.0)


def _vidur(tmp_path: Path) -> Path:
    path = tmp_path / "t.csv"
    rows = "".join(f"{i * 0.5},{10 + i},{1 + i}\n" for i in range(21))  # 2 req/s over 10 s
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + rows)
    return path


def test_trace_config_rate_and_duration(tmp_path: Path) -> None:
    path = _vidur(tmp_path)
    plain = list(WorkloadConfig(trace={"path": path}).build(RandomStreams(0)))
    assert len(plain) == 21 and plain[-1].arrival_s == 10.0
    fast = list(WorkloadConfig(trace={"path": path}, rate_per_s=4.0).build(RandomStreams(0)))
    assert fast[-1].arrival_s == pytest.approx(5.0)
    assert [r.num_prompt_tokens for r in fast] == [r.num_prompt_tokens for r in plain]
    # duration_s is simulation time, after rescaling: 4 req/s for 2 s -> t = 0, 0.25, ..., 2.0
    cut = WorkloadConfig(trace={"path": path}, rate_per_s=4.0, duration_s=2.0)
    assert len(list(cut.build(RandomStreams(0)))) == 9
    first = WorkloadConfig(trace={"path": path}, num_requests=5).build(RandomStreams(0))
    assert [r.request_id for r in first] == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError):
        WorkloadConfig(trace={"path": path, "rate_scale": 2.0}, rate_per_s=3.0).build(
            RandomStreams(0)
        )


def test_length_only_trace_replayed_with_arrivals(tmp_path: Path) -> None:
    path = tmp_path / "lengths.csv"
    rows = "".join(f"{10 + i},{5 + i},{15 + 2 * i},1.0\n" for i in range(50))
    path.write_text("num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n" + rows)
    with pytest.raises(ConfigError, match="lengths only"):
        WorkloadConfig(trace={"path": path}).build(RandomStreams(0))
    poisson = list(WorkloadConfig(trace={"path": path}, rate_per_s=5.0).build(RandomStreams(0)))
    assert [r.num_prompt_tokens for r in poisson] == list(range(10, 60))
    config = WorkloadConfig(
        trace={"path": path}, arrival={"kind": "constant", "rate_per_s": 2.0}, num_requests=10
    )
    requests = list(config.build(RandomStreams(0)))
    assert [r.arrival_s for r in requests] == [0.5 * (i + 1) for i in range(10)]


def test_trace_lengths_sampled_jointly(tmp_path: Path) -> None:
    path = _vidur(tmp_path)
    config = WorkloadConfig(
        arrival={"kind": "poisson", "rate_per_s": 3.0},
        lengths={"kind": "trace", "path": str(path)},
        num_requests=300,
    )
    for r in config.build(RandomStreams(0)):
        assert r.num_output_tokens == r.num_prompt_tokens - 9  # rows keep their pairing


def test_trace_arrivals_with_other_lengths(tmp_path: Path) -> None:
    path = _vidur(tmp_path)  # 21 arrivals, 0.5 s apart
    config = WorkloadConfig(
        arrival={"kind": "trace", "path": str(path)},
        lengths={"kind": "preset", "name": "creation"},
        num_requests=100,
    )
    requests = list(config.build(RandomStreams(0)))
    assert [r.arrival_s for r in requests] == [0.5 * i for i in range(21)]  # ends with the trace
    faster = config.with_rate(4.0)
    assert faster.arrival.rate_scale == pytest.approx(2.0)  # type: ignore[union-attr]
    assert list(faster.build(RandomStreams(0)))[-1].arrival_s == pytest.approx(5.0)


def test_with_rate_on_trace_resets_rate_scale(tmp_path: Path) -> None:
    config = WorkloadConfig(trace={"path": _vidur(tmp_path), "rate_scale": 3.0}).with_rate(1.0)
    assert config.trace.rate_scale == 1.0  # type: ignore[union-attr]
    assert list(config.build(RandomStreams(0)))[-1].arrival_s == pytest.approx(20.0)


def test_dump_exclude_unset_round_trips_with_model_objects() -> None:
    # SimConfig merges configs through model_dump(exclude_unset=True): the discriminator
    # must survive even when sub-models were built without an explicit kind.
    config = WorkloadConfig(
        arrival=PoissonConfig(rate_per_s=3.0),
        lengths=IndependentLengthsConfig(prompt=FixedDist(tokens=5), output=FixedDist(tokens=6)),
        num_requests=10,
    )
    again = WorkloadConfig.model_validate(config.model_dump(exclude_unset=True))
    assert again == config
    assert list(again.build(RandomStreams(0))) == list(config.build(RandomStreams(0)))
