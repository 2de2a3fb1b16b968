"""Skip-ahead is exact: per-request results with skip-ahead on and off are identical bit for
bit on a fixed set of scenarios (every scheduler kind, swap and recompute preemption, prefix
caching, pipeline parallelism (whose engines skip together), engine timing, multi-LoRA, two
replicas behind a router)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from servesim.engine import SimulationRecords, run_simulation
from servesim.engine.config import (
    FairSchedulerConfig,
    LoRAConfig,
    OrcaSchedulerConfig,
    PrioritySchedulerConfig,
    SarathiSchedulerConfig,
    StaticSchedulerConfig,
    VLLMSchedulerConfig,
)
from servesim.engine.profiles.base import EngineTiming
from servesim.engine.setup import ReplicaSetup
from servesim.workload.request import Request
from tests.engine.fakes import LinearPerf, poisson_requests, setup


def _requests(
    seed: int = 1, **fields: Callable[[np.random.Generator, Request], object]
) -> list[Request]:
    requests = poisson_requests(160, 10.0, (50, 1200), (10, 300), seed)
    rng = np.random.default_rng(seed)
    return [dataclasses.replace(r, **{k: f(rng, r) for k, f in fields.items()}) for r in requests]


_USERS = {
    "priority": lambda g, r: int(g.integers(0, 3)),
    "user_id": lambda g, r: int(g.integers(0, 4)),
}
_PREFIX = {
    "prefix_block_hashes": lambda g, r: tuple(range(8)) if r.request_id % 2 else (),
    "prefix_block_size": lambda g, r: 16,
}
_V0 = VLLMSchedulerConfig(enable_chunked_prefill=False)
_V1 = VLLMSchedulerConfig(version="v1")
_TIMING = EngineTiming(
    admission_lag_steps=1, frontend_latency_s=0.002, output_latency_s=0.001, output_per_seq_s=1e-5
)

SCENARIOS: dict[str, tuple[Callable[[], list[Request]], list[ReplicaSetup]]] = {
    "vllm-v0": (_requests, [setup(_V0)]),
    "vllm-v0-swap": (_requests, [setup(_V0, preemption_mode="swap", num_kv_blocks=200)]),
    "vllm-v1-prefix": (
        lambda: _requests(**_PREFIX),
        [setup(_V1, enable_prefix_caching=True, num_kv_blocks=300)],
    ),
    "sarathi-cheaper-preemption": (
        _requests,
        [
            setup(
                SarathiSchedulerConfig(chunk_size=256),
                preemption_choice="cheaper",
                num_kv_blocks=200,
            )
        ],
    ),
    "orca": (_requests, [setup(OrcaSchedulerConfig())]),
    "static": (_requests, [setup(StaticSchedulerConfig())]),
    "priority-swap": (
        lambda: _requests(**_USERS),
        [setup(PrioritySchedulerConfig(), preemption_mode="swap", num_kv_blocks=250)],
    ),
    "fair": (lambda: _requests(**_USERS), [setup(FairSchedulerConfig())]),
    "pp2": (_requests, [setup(pp=2)]),
    "pp3-sarathi-swap": (
        _requests,
        [setup(SarathiSchedulerConfig(chunk_size=256), pp=3, preemption_mode="swap")],
    ),
    "pp4-v1-timing": (_requests, [dataclasses.replace(setup(_V1, pp=4), timing=_TIMING)]),
    "pp2-orca-two-replicas": (_requests, [setup(OrcaSchedulerConfig(), pp=2)] * 2),
    "engine-timing": (_requests, [dataclasses.replace(setup(_V1), timing=_TIMING)]),
    "lora": (
        lambda: _requests(adapter_id=lambda g, r: f"a{int(g.integers(0, 5))}"),
        [dataclasses.replace(setup(_V1), lora=LoRAConfig(max_loras=2))],
    ),
    "two-replicas": (_requests, [setup(), setup()]),
}


def _run(name: str, skip_ahead: bool) -> SimulationRecords:
    make, replicas = SCENARIOS[name]

    def least_outstanding(request: Request, views) -> int:  # type: ignore[no-untyped-def]
        return min(range(len(views)), key=lambda i: (views[i].outstanding_tokens, i))

    return run_simulation(
        make(),
        replicas,
        LinearPerf(num_kv_blocks=600),
        dispatch=least_outstanding,
        skip_ahead=skip_ahead,
    )


def _gap_histogram(records: SimulationRecords) -> dict[float, int]:
    """Inter-token gap samples as value -> total weight (their order may differ: a skipped
    run adds one weighted sample per tick for the whole group)."""
    values, weights = records.token_gaps.arrays()
    out: dict[float, int] = {}
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        out[value] = out.get(value, 0) + int(weight)
    return out


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_skip_ahead_on_and_off_give_identical_requests(name: str) -> None:
    fast, slow = _run(name, True), _run(name, False)
    a, b = fast.requests.view(), slow.requests.view()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    assert _gap_histogram(fast) == _gap_histogram(slow)
    count = dict(fast.counters)
    count.pop("num_skipped_iterations", None)
    assert count == {k: v for k, v in slow.counters.items() if k != "num_skipped_iterations"}


@pytest.mark.parametrize("name", ["vllm-v0", "pp2", "pp4-v1-timing"])
def test_skip_ahead_skips(name: str) -> None:
    # guards the test above against a skip-ahead that never engages (pipeline-parallel
    # replicas included: their engines skip together, engine/skip.py)
    assert _run(name, True).counters["num_skipped_iterations"] > 0


@pytest.mark.parametrize("pp", [2, 4])
def test_pipeline_skip_stops_where_stop_when_stops(pp: int) -> None:
    # a run cut short by stop_when finishes the same requests with skip-ahead on and off
    requests = poisson_requests(300, 3.0, (50, 1500), (10, 400), 1)

    def after(num: int):  # type: ignore[no-untyped-def]
        calls = [0]

        def stop(now: float, records: SimulationRecords) -> bool:
            calls[0] += 1
            return calls[0] >= num

        return stop

    runs = [
        run_simulation(
            requests,
            [setup(_V1, pp=pp, num_kv_blocks=3000)],
            LinearPerf(num_kv_blocks=3000),
            stop_when=after(60),
            skip_ahead=skip,
        )
        for skip in (True, False)
    ]
    a, b = (r.requests.view() for r in runs)
    assert int((a["reject_reason"] == 0).sum()) == 60
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    assert runs[0].counters["num_skipped_iterations"] > 0
