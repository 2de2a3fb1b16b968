"""Admission control at the cluster entry: token bucket by hand, SLO-aware shedding, a user
policy by path, the result contract, rejected rows counted as unserved, and a gate that admits
everything giving the default run's results exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.api import simulate
from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
from servesim.cluster.admission import REJECT_REASON, TokenBucket
from servesim.core.errors import ConfigError, UnknownNameError
from servesim.engine.contracts import ContractError
from servesim.perf import RooflinePerfModel
from servesim.workload.clients import ClientOptions
from servesim.workload.request import Request

PERF = RooflinePerfModel()


def _run(admission: dict[str, Any] | None, reqs: list[Request], **kw: Any) -> Any:
    cfg: dict[str, Any] = {"pools": [{"replicas": 2}], "router": {"kind": "round_robin"}}
    if admission is not None:
        cfg["admission"] = admission
    dep = build_deployment(DeploymentConfig.model_validate(cfg), "llama-3.1-8b", PERF)
    return run_cluster(reqs, dep, PERF, **kw)


def _steady(n: int, gap_s: float = 0.125) -> list[Request]:
    return [Request(i, gap_s * i, 200 + 37 * (i % 11), 40 + 5 * (i % 7)) for i in range(n)]


def test_token_bucket_by_hand() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=1.0)
    # arrivals every 0.125 s add 0.25 token each: one in four gets through
    admitted = [bucket.admit(Request(i, 0.125 * i, 10, 1), (), 0.125 * i) for i in range(12)]
    assert admitted == [i % 4 == 0 for i in range(12)]
    burst = TokenBucket(rate_per_s=1.0, burst=3.0)
    assert [burst.admit(Request(i, 5.0, 10, 1), (), 5.0) for i in range(4)] == [1, 1, 1, 0]
    with pytest.raises(ConfigError, match="rate_per_s"):
        TokenBucket(rate_per_s=0.0)


def test_rejected_requests_have_rows_and_count_as_unserved() -> None:
    run = _run({"kind": "token_bucket", "options": {"rate_per_s": 2.0}}, _steady(40))
    cols = run.records.requests.view()
    rejected = np.arange(40) % 4 != 0
    assert (cols["reject_reason"][rejected] == REJECT_REASON).all()
    assert np.isnan(cols["completion_s"][rejected]).all()
    assert (cols["num_emitted_tokens"][rejected] == 0).all()
    assert (cols["reject_reason"][~rejected] == 0).all()  # the admitted all completed
    assert run.records.counters["num_rejected_by_admission"] == 30
    assert run.stats.num_admission_rejected == 30
    assert run.stats.admission_rows == [i for i in range(40) if i % 4]
    assert run.stats.to_dict(run.records)["admission"] == {
        "policy": "token_bucket",
        "num_rejected": 30,
    }
    assert "admission" not in _run(None, _steady(4)).stats.to_dict(_run(None, _steady(4)).records)


def test_a_gate_that_admits_everything_gives_the_default_results() -> None:
    reqs = _steady(120, gap_s=0.05)
    default = _run(None, reqs).records.requests.view()
    gated = _run({"kind": "token_bucket", "options": {"rate_per_s": 1e9, "burst": 1e9}}, reqs)
    cols = gated.records.requests.view()
    assert set(cols) == set(default)
    for name in default:
        np.testing.assert_array_equal(cols[name], default[name], err_msg=name)


def test_slo_shedding_protects_the_admitted_requests_ttft() -> None:
    reqs = [Request(i, 0.02 * i, 2000, 100) for i in range(300)]  # 50 req/s of 2k prompts
    plain = _run(None, reqs).records.requests.view()
    shed = _run({"kind": "slo_ttft", "options": {"ttft_s": 0.5}}, reqs)
    cols = shed.records.requests.view()
    done = cols["reject_reason"] == 0
    assert 0 < shed.stats.num_admission_rejected < 300
    ttft = lambda c, m: np.percentile(c["first_token_s"][m] - c["arrival_s"][m], 99)  # noqa: E731
    assert ttft(cols, done) < 0.5 * ttft(plain, plain["reject_reason"] == 0)


_POLICIES = """
class ShortOnly:
    def __init__(self, max_prompt_tokens=300):
        self.max_prompt_tokens = max_prompt_tokens
    def admit(self, request, views, now_s):
        assert len(views) == 2 and now_s == request.arrival_s
        return request.num_prompt_tokens <= self.max_prompt_tokens

class Yes:
    def admit(self, request, views, now_s):
        return "yes"
"""


def test_user_policy_by_path_and_the_result_contract(tmp_path: Path) -> None:
    path = tmp_path / "gate.py"
    path.write_text(_POLICIES)
    reqs = _steady(33)
    run = _run({"kind": f"{path}:ShortOnly", "options": {"max_prompt_tokens": 300}}, reqs)
    cols = run.records.requests.view()
    long = np.array([r.num_prompt_tokens > 300 for r in reqs])
    np.testing.assert_array_equal(cols["reject_reason"] != 0, long)
    with pytest.raises(ContractError, match="admit returned 'yes'") as err:
        _run({"kind": f"{path}:Yes"}, reqs)
    assert err.value.rule == "admission-result"
    with pytest.raises(UnknownNameError, match="token_bucket"):
        _run({"kind": "fifo"}, reqs)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        _run({"kind": "token_bucket", "options": {"rate": 1}}, reqs)


def test_admission_with_a_closed_loop_client() -> None:
    reqs = _steady(24)
    opts = ClientOptions(max_concurrency=4, num_warmups=3)
    run = _run(
        {"kind": "token_bucket", "options": {"rate_per_s": 4.0, "burst": 2}}, reqs, client=opts
    )
    cols = run.records.requests.view()
    assert len(cols["arrival_s"]) == 24  # every measured request got a row (warm-ups cut)
    assert 0 < run.stats.num_admission_rejected < 24
    refused = np.flatnonzero(cols["reject_reason"] != 0).tolist()
    assert run.stats.admission_rows == refused  # rows counted after the warm-up cut


def test_admission_through_the_api_scores_rejections_as_unserved() -> None:
    from servesim.lab.objectives import run_metrics

    config = {
        "model": "llama-3.1-8b",
        "deployment": {
            "pools": [{"replicas": 1}],
            "admission": {"kind": "token_bucket", "options": {"rate_per_s": 1.0}},
        },
        "workload": {"preset": "sharegpt-vidur", "rate_per_s": 4.0},
        "num_requests": 60,
        "seed": 3,
    }
    result = simulate(config)
    metrics = run_metrics(result)
    cols = result.requests_columns()
    done = float((cols["reject_reason"] == "none").mean())
    assert metrics["completed_fraction"] == pytest.approx(done) and done < 0.6


@given(
    st.lists(st.floats(0.0, 0.5), min_size=1, max_size=80),
    st.floats(0.5, 20.0),
    st.integers(1, 10),
)
def test_a_token_bucket_never_admits_beyond_rate_times_time_plus_burst(
    gaps: list[float], rate: float, burst: int
) -> None:
    bucket = TokenBucket(rate_per_s=rate, burst=burst)
    now, admitted = 0.0, 0
    for i, gap in enumerate(gaps):
        now += gap
        admitted += bucket.admit(Request(i, now, 10, 1), (), now)
        assert admitted <= burst + rate * now + 1e-9
    # and it is work-conserving: a full bucket admits the next request
    assert TokenBucket(rate_per_s=rate, burst=burst).admit(Request(0, now, 10, 1), (), now)
