"""Length configs (pydantic boundary) and the CLI length-spec parser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload import WorkloadConfig
from servesim.workload.arrivals import TimeVaryingArrivals
from servesim.workload.length_config import (
    EmpiricalDist,
    FixedDist,
    LogNormalDist,
    UniformDist,
    ZipfDist,
    parse_dist_spec,
)


def test_parse_dist_spec() -> None:
    assert parse_dist_spec("512") == FixedDist(tokens=512)
    assert parse_dist_spec("uniform:min_tokens=10,max_tokens=20") == UniformDist(
        min_tokens=10, max_tokens=20
    )
    spec = parse_dist_spec(" lognormal : median_tokens=800, sigma=1.5, max_tokens=4096 ")
    assert spec == LogNormalDist(median_tokens=800, sigma=1.5, max_tokens=4096)
    assert parse_dist_spec("zipf:a=1.1") == ZipfDist(a=1.1)
    with pytest.raises(ConfigError, match="key=value"):
        parse_dist_spec("uniform:10")
    with pytest.raises(ValidationError):
        parse_dist_spec("uniform:min_tokens=0,max_tokens=5")


def test_empirical_from_values_or_trace(tmp_path: Path) -> None:
    rng = RandomStreams(0).generator("t")
    assert set(EmpiricalDist(values=[3, 4]).build().sample(rng, 100).tolist()) == {3, 4}
    path = tmp_path / "t.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,11,5\n1,13,6\n")
    out = EmpiricalDist(trace=path, column="output").build().sample(rng, 100)
    assert set(out.tolist()) == {5, 6}
    with pytest.raises(ValidationError, match="exactly one"):
        EmpiricalDist()
    with pytest.raises(ValidationError, match="exactly one"):
        EmpiricalDist(values=[1], trace=path)


def test_joint_lognormal_config() -> None:
    config = WorkloadConfig(
        arrival={"kind": "poisson", "rate_per_s": 1.0},
        lengths={
            "kind": "joint_lognormal",
            "prompt_median": 1000,
            "prompt_sigma": 1.0,
            "output_median": 100,
            "output_sigma": 0.5,
            "rho": -0.5,
            "prompt_range": [10, 8000],
            "output_range": [1, 1000],
        },
        num_requests=5000,
    )
    requests = list(config.build(RandomStreams(0)))
    p = np.array([r.num_prompt_tokens for r in requests])
    o = np.array([r.num_output_tokens for r in requests])
    assert p.min() >= 10 and p.max() <= 8000 and o.max() <= 1000
    assert np.corrcoef(np.log(p), np.log(o))[0, 1] == pytest.approx(-0.5, abs=0.05)


@settings(max_examples=50, deadline=None)
@given(
    gaps=st.lists(st.floats(0.1, 50), min_size=1, max_size=6),
    rates=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 20)), min_size=7, max_size=7),
    step=st.booleans(),
    periodic=st.booleans(),
)
def test_time_varying_inversion_property(
    gaps: list[float], rates: list[float], step: bool, periodic: bool
) -> None:
    knots = np.concatenate(([0.0], np.cumsum(gaps)))
    schedule = rates[: knots.size]
    if sum(schedule) == 0:
        schedule[0] = 1.0
    period = float(knots[-1] + 1.0) if periodic else None
    try:
        process = TimeVaryingArrivals(knots, schedule, "step" if step else "linear", period)
    except ConfigError:
        return  # e.g. a non-periodic schedule whose integral is 0
    t = np.linspace(0, 3 * (knots[-1] + 1), 200)
    lam = process.cumulative_intensity(t)
    assert np.all(np.diff(lam) >= -1e-9)
    inverted = process._invert(lam)
    finite = np.isfinite(inverted)
    # Only a schedule ending at rate 0 has an unreachable plateau (a finite stream).
    assert finite.all() or (not periodic and schedule[-1] == 0)
    back = process.cumulative_intensity(inverted[finite])
    np.testing.assert_allclose(back, lam[finite], rtol=1e-7, atol=1e-7)
