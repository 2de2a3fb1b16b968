"""Workloads stream lazily and keep their invariants for any configuration."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.core.rng import RandomStreams
from servesim.workload import WorkloadConfig


def test_streaming_holds_no_request_list() -> None:
    # 40,000 Request objects would take ~8 MB; a lazy stream stays far below that.
    workload = WorkloadConfig(preset="sharegpt", num_requests=40_000).build(RandomStreams(0))
    tracemalloc.start()
    count = sum(1 for _ in workload)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 40_000
    assert peak < 2 * 2**20


arrivals = st.one_of(
    st.builds(lambda r: {"kind": "poisson", "rate_per_s": r}, st.floats(0.01, 1000)),
    st.builds(
        lambda r, cv: {"kind": "gamma", "rate_per_s": r, "cv": cv},
        st.floats(0.01, 1000),
        st.floats(0.1, 8),
    ),
    st.builds(lambda r: {"kind": "constant", "rate_per_s": r}, st.floats(0.01, 1000)),
    st.builds(
        lambda r, on, off: {
            "kind": "onoff",
            "rate_on_per_s": r,
            "mean_on_s": on,
            "mean_off_s": off,
        },
        st.floats(0.1, 100),
        st.floats(0.1, 100),
        st.floats(0.1, 100),
    ),
)


@settings(max_examples=40, deadline=None)
@given(
    arrival=arrivals,
    lo=st.integers(1, 500),
    width=st.integers(0, 3000),
    num=st.integers(1, 300),
    turns=st.one_of(st.none(), st.floats(1, 6)),
    group=st.one_of(st.none(), st.integers(1, 5)),
    seed=st.integers(0, 2**32),
)
def test_any_workload_is_ordered_and_in_range(
    arrival: dict, lo: int, width: int, num: int, turns: float | None, group: int | None, seed: int
) -> None:
    lengths = {
        "kind": "independent",
        "prompt": {"kind": "uniform", "min_tokens": lo, "max_tokens": lo + width},
        "output": {"kind": "lognormal", "median_tokens": 100, "sigma": 1.0, "max_tokens": 4000},
    }
    extra: dict = {}
    if turns is not None:
        extra["sessions"] = {"mean_turns": turns, "max_context_tokens": 1 << 20}
    elif group is not None:
        extra["groups"] = {"group_size": group}
    config = WorkloadConfig(arrival=arrival, lengths=lengths, num_requests=num, **extra)
    requests = list(config.build(RandomStreams(seed)))
    assert [r.request_id for r in requests] == list(range(num))
    times = [r.arrival_s for r in requests]
    assert times == sorted(times) and times[0] >= 0
    for r in requests:
        assert r.num_prompt_tokens >= lo and 1 <= r.num_output_tokens <= 4000
        if turns is None:
            assert r.num_prompt_tokens <= lo + width
        if r.prefix_block_size:
            assert len(r.prefix_block_hashes) == -(-r.num_prompt_tokens // r.prefix_block_size)
    assert list(config.build(RandomStreams(seed))) == requests
