"""Diagnostics: hand-computed inversion and head-of-line counts, and a real run's report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from servesim.lab import evaluate
from servesim.lab.diagnostics import count_overtakes, head_of_line, router_regret


def test_overtakes_and_priority_inversions_are_counted_pairwise() -> None:
    arrival = np.array([0.0, 1.0, 2.0, 3.0])
    scheduled = np.array([5.0, 1.5, 2.5, np.nan])  # 0 waits; 1, 2 overtake it; 3 never runs
    assert count_overtakes(arrival, scheduled) == 2
    priority = np.array([1, 0, 1, 0])  # only request 1 (lower priority) inverts
    assert count_overtakes(arrival, scheduled, priority) == 1


def test_head_of_line_blocking_of_a_short_request_behind_a_long_prompt() -> None:
    n = 10
    prompts = np.array([100] * 9 + [4000])
    arrival = np.arange(n, dtype=float)
    scheduled = arrival + 0.1
    scheduled[9] = 9.05  # the long prompt starts at 9.05 ...
    arrival[8], scheduled[8] = 8.9, 10.0  # ... while short request 8 waits from 8.9 to 10
    cols = {"num_prompt_tokens": prompts, "arrival_s": arrival, "first_scheduled_s": scheduled}
    found = head_of_line(cols)
    assert found["num_blocked"] == 1
    assert found["blocked_fraction"] == 1 / 9
    assert abs(found["mean_excess_wait_s"] - (1.1 - 0.1)) < 1e-9


def test_a_run_reports_breakdowns_inversions_and_rejections(tiny: str) -> None:
    score = evaluate("vllm", tiny, seeds=[0], diagnostics=True)
    diag = score.runs[0].diagnostics
    assert diag is not None
    assert {"slo_class=interactive", "slo_class=batch", "priority=0", "priority=1"} <= set(
        diag["breakdown"]
    )
    assert diag["breakdown"]["prompt=short"]["num_requests"] > 0
    # vLLM ignores priorities and admits FCFS: no request ever overtakes another
    assert diag["fcfs_overtakes"] == 0 and diag["priority_inversions"] == 0


def test_a_priority_scheduler_overtakes_without_inverting(tmp_path: Path, tiny: str) -> None:
    suite = yaml.safe_load(Path(tiny).read_text())
    busy = suite["scenarios"][0]
    busy["config"]["workload"]["rate_per_s"] = 8.0  # queues form
    suite["scenarios"] = [busy]
    path = tmp_path / "busy.yaml"
    path.write_text(yaml.safe_dump(suite))
    fcfs = evaluate("vllm", str(path), seeds=[0], diagnostics=True).runs[0].diagnostics
    prio = evaluate("priority", str(path), seeds=[0], diagnostics=True).runs[0].diagnostics
    assert fcfs is not None and prio is not None
    assert fcfs["fcfs_overtakes"] == 0
    assert prio["fcfs_overtakes"] > 0  # interactive requests jump the queue ...
    assert prio["priority_inversions"] < prio["fcfs_overtakes"] / 10  # ... rarely the reverse
    assert (
        prio["breakdown"]["priority=1"]["ttft_p99_s"]
        < fcfs["breakdown"]["priority=1"]["ttft_p99_s"]
    )


def test_router_regret_is_summarised_per_decision() -> None:
    assert router_regret([0, 0, 30, 10]) == {
        "num_decisions": 4,
        "regretful_fraction": 0.5,
        "mean_tokens": 10.0,
        "max_tokens": 30.0,
    }
    assert router_regret([]) is None


def test_a_router_that_ignores_queues_has_regret_and_a_scheduler_none(tiny: str, pol: str) -> None:
    score = evaluate(pol + "FirstReplicaRouter", tiny, seeds=[0], diagnostics=True)
    routed = next(r for r in score.runs if r.scenario == "routed").diagnostics
    assert routed is not None and routed["router_regret"]["num_decisions"] == 60
    assert routed["router_regret"]["mean_tokens"] > 0  # replica 1 sat idle while 0 queued
    balanced = evaluate("least_outstanding_tokens", tiny, seeds=[0], diagnostics=True)
    other = next(r for r in balanced.runs if r.scenario == "routed").diagnostics
    assert other is not None
    assert other["router_regret"]["mean_tokens"] < routed["router_regret"]["mean_tokens"]
    scheduler_only = evaluate("vllm", tiny, seeds=[0], diagnostics=True).runs[1].diagnostics
    assert scheduler_only is not None and scheduler_only["router_regret"] is None


def test_requests_refused_at_the_entry_are_labelled_and_never_overtaken(tiny: str) -> None:
    policy = {"admission": {"kind": "token_bucket", "options": {"rate_per_s": 1.0}}}
    score = evaluate(policy, tiny, seeds=[0], diagnostics=True)
    assert score.is_valid, score.line()
    plain = evaluate("vllm", tiny, seeds=[0], diagnostics=True)
    for run, base in zip(score.runs, plain.runs, strict=True):
        d, b = run.diagnostics, base.diagnostics
        assert d is not None and b is not None
        assert d["rejected"].get("admission", 0) > 0 and "not_finished" not in d["rejected"]
        # refused requests never waited: no overtakes counted against them
        assert d["fcfs_overtakes"] <= b["fcfs_overtakes"]
