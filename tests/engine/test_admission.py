"""Engine timing: steps scheduled ahead (admission lag), front-end latency in and out."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.core.errors import ConfigError
from servesim.engine import VLLMSchedulerConfig
from servesim.engine.profiles import EngineTiming, get_engine
from servesim.engine.setup import ReplicaSetup
from tests.engine.fakes import LinearPerf, assert_all_served, poisson_requests, req, rows, run
from tests.engine.fakes import setup as make_setup
from tests.engine.test_invariants import _assert_same

STEP_S = 0.010  # LinearPerf(a=STEP_S, b=0, c=0): every iteration takes 10 ms
V1 = VLLMSchedulerConfig(version="v1")


def _setup(timing: EngineTiming, **cache: object) -> ReplicaSetup:
    return dataclasses.replace(make_setup(V1, **cache), timing=timing)


def _run(requests: list, timing: EngineTiming, **kw: object) -> dict[str, np.ndarray]:
    recs = run(requests, LinearPerf(a=STEP_S, b=0.0, c=0.0), _setup(timing), **kw)
    assert_all_served(recs)
    return rows(recs)


@pytest.mark.parametrize("skip_ahead", [True, False])
def test_request_entering_during_step_n_joins_step_n_plus_2(skip_ahead: bool) -> None:
    # A runs from 0: prefill [0, 10] ms, decodes [10, 20], [20, 30], ...; B enters at 15 ms,
    # during the step [10, 20] ms.
    requests = [req(0, 0.0, 32, 20), req(1, 0.015, 32, 3)]
    sync = _run(requests, EngineTiming(), skip_ahead=skip_ahead)
    ahead = _run(requests, EngineTiming(admission_lag_steps=1), skip_ahead=skip_ahead)
    # synchronous: B joins the next step, [20, 30] ms
    assert sync["first_token_s"][1] == pytest.approx(0.030)
    # one step ahead: the step [20, 30] was formed at 10 ms, so B joins [30, 40] ms
    assert ahead["first_token_s"][1] == pytest.approx(0.040)
    # A's own tokens are unaffected (its decodes are scheduled ahead with it)
    np.testing.assert_allclose(ahead["completion_s"][0], sync["completion_s"][0])


def test_two_steps_ahead() -> None:
    requests = [req(0, 0.0, 32, 20), req(1, 0.015, 32, 3)]
    ahead = _run(requests, EngineTiming(admission_lag_steps=2))
    # steps [20, 30] and [30, 40] were formed by 10 and 20 ms; B (15 ms) joins [40, 50]
    assert ahead["first_token_s"][1] == pytest.approx(0.050)


def test_idle_engine_takes_a_request_at_once() -> None:
    cols = _run([req(0, 0.0, 32, 4)], EngineTiming(admission_lag_steps=1))
    assert cols["first_token_s"][0] == pytest.approx(STEP_S)
    assert cols["completion_s"][0] == pytest.approx(4 * STEP_S)


def test_front_end_latency_in_and_out() -> None:
    timing = EngineTiming(frontend_latency_s=0.002, output_latency_s=0.001)
    cols = _run([req(0, 0.0, 32, 4)], timing)
    assert cols["arrival_s"][0] == 0.0  # latency still counts from the arrival
    assert cols["first_scheduled_s"][0] == pytest.approx(0.002)
    assert cols["first_token_s"][0] == pytest.approx(0.002 + STEP_S + 0.001)
    assert cols["completion_s"][0] == pytest.approx(0.002 + 4 * STEP_S + 0.001)
    assert cols["sum_tbt_s"][0] == pytest.approx(3 * STEP_S)  # gaps unchanged


def test_first_token_waits_for_the_outputs_ahead_of_it() -> None:
    # A (0 ms) decodes from 10 ms; B enters at 15 ms, joins the step [20, 30] ms after A's
    # decode, so its first token is the second output of that step: 2 x 0.5 ms after 30 ms.
    per = 0.5e-3
    timing = EngineTiming(output_per_seq_s=per)
    requests = [req(0, 0.0, 32, 20), req(1, 0.015, 32, 3)]
    plain = _run(requests, EngineTiming())
    cols = _run(requests, timing)
    # A was the only output of its prefill step [0, 10] ms
    assert cols["first_token_s"][0] == pytest.approx(STEP_S + per)
    assert cols["first_token_s"][1] == pytest.approx(0.030 + 2 * per)
    # the stream ends when it did: only the first token waits, so its gaps shrink by it
    np.testing.assert_allclose(cols["completion_s"], plain["completion_s"])
    assert cols["sum_tbt_s"][1] == pytest.approx(plain["sum_tbt_s"][1] - 2 * per)


def test_first_token_wait_never_ends_a_stream_before_it_starts() -> None:
    # One output token and a front end slower than a step: completion = first token.
    timing = EngineTiming(output_per_seq_s=0.02)
    cols = _run([req(0, 0.0, 32, 20), req(1, 0.015, 32, 1), req(2, 0.016, 32, 2)], timing)
    assert np.all(cols["completion_s"] >= cols["first_token_s"])
    assert np.all(cols["sum_tbt_s"] >= 0.0)
    assert cols["completion_s"][1] == cols["first_token_s"][1]


def test_zero_timing_is_the_plain_engine() -> None:
    requests = poisson_requests(200, 30.0, (16, 400), (1, 120), seed=2)
    base = run(requests, LinearPerf(), make_setup(V1), check_invariants=False)
    zero = run(requests, LinearPerf(), _setup(EngineTiming()), check_invariants=False)
    a, b = rows(base), rows(zero)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lag=st.integers(0, 2),
    frontend_ms=st.sampled_from([0.0, 0.5, 3.0, 12.0]),
    output_ms=st.sampled_from([0.0, 1.0]),
    per_output_us=st.sampled_from([0.0, 80.0]),
    rate=st.sampled_from([5.0, 40.0, 120.0]),
    seed=st.integers(0, 50),
    num_blocks=st.sampled_from([120, 900]),
)
def test_skip_ahead_exact_with_engine_timing(
    lag: int,
    frontend_ms: float,
    output_ms: float,
    per_output_us: float,
    rate: float,
    seed: int,
    num_blocks: int,
) -> None:
    timing = EngineTiming(lag, frontend_ms * 1e-3, output_ms * 1e-3, per_output_us * 1e-6)
    requests = poisson_requests(120, rate, (16, 400), (1, 200), seed=seed)
    replica = _setup(timing, num_kv_blocks=num_blocks)
    fast = run(requests, LinearPerf(), replica)
    slow = run(requests, LinearPerf(), replica, skip_ahead=False)
    _assert_same(fast, slow)


def test_bad_timing_is_a_config_error() -> None:
    for timing in (
        EngineTiming(admission_lag_steps=-1),
        EngineTiming(frontend_latency_s=-1e-3),
        EngineTiming(output_per_seq_s=float("nan")),
    ):
        with pytest.raises(ConfigError):
            run([req(0, 0.0, 8, 2)], LinearPerf(), _setup(timing))


def test_profiles_carry_their_timing() -> None:
    assert get_engine("vllm-0.6").timing == EngineTiming()
    v1 = get_engine("vllm-v1").timing
    assert v1.admission_lag_steps == 0 and v1.frontend_latency_s > 0
    for name in ("vllm-v1-async", "sglang", "trtllm"):
        assert get_engine(name).timing.admission_lag_steps == 1
    # a front end in its own process streams each step's outputs in order
    for name in ("vllm-v1", "vllm-v1-async", "sglang", "trtllm"):
        assert get_engine(name).timing.output_per_seq_s == pytest.approx(80e-6)
