"""Counterfactual router regret: decisions sampled as stated, the arithmetic by hand, and a
router that ignores the queues found regretful by re-simulation."""

from __future__ import annotations

from typing import Any

import pytest

from servesim.lab import counterfactual, evaluate
from servesim.lab.counterfactual import counterfactual_regret, sample_decisions


def test_decisions_are_sampled_evenly_among_those_with_a_choice() -> None:
    log = [(i, 0, 1 if i % 3 == 0 else 2) for i in range(12)]  # every third had one candidate
    choices = [k for k in range(12) if k % 3]
    assert sample_decisions(log, 100) == choices
    picked = sample_decisions(log, 3)
    assert len(picked) == 3 and set(picked) <= set(choices)
    assert picked == sorted(picked) and picked[0] > choices[0] and picked[-1] < choices[-1]
    assert sample_decisions(log, 0) == [] and sample_decisions([(0, 0, 1)], 3) == []


def test_regret_and_externality_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    # results are stand-ins: penalised_ttft reads them as {request id: TTFT}
    monkeypatch.setattr(counterfactual, "penalised_ttft", lambda result: result)
    base = {1: 2.0, 2: 1.0, 3: 1.0}
    log = [(1, 0, 3)]  # request 1 went to position 0 of 3

    def rerun(forced: dict[int, int]) -> Any:
        alt = forced[0]
        return {1: 0.5, 2: 1.5, 3: 1.6} if alt == 1 else {1: 1.0, 2: 1.0, 3: 1.0}

    out = counterfactual_regret(base, log, rerun, 1)  # type: ignore[arg-type]
    assert out is not None
    assert out["num_decisions"] == 1 and out["num_resimulations"] == 2
    assert out["max_ttft_regret_s"] == pytest.approx(1.5)  # 2.0 -> 0.5 on position 1
    # ... which moves the run's mean TTFT from 4/3 to 3.6/3
    assert out["mean_externality_s"] == pytest.approx(3.6 / 3 - 4 / 3)
    assert out["regretful_fraction"] == 1.0


def test_a_router_ignoring_the_queues_is_regretful(tiny: str, pol: str) -> None:
    score = evaluate(
        pol + "FirstReplicaRouter", tiny, seeds=[0], diagnostics=True, counterfactual=3
    )
    assert score.is_valid, score.line()
    by_scenario = {r.scenario: r.diagnostics for r in score.runs}
    one = by_scenario["chat-small"]  # one replica: no decision had a choice
    assert one is not None and one["router_counterfactual"] is None
    routed = by_scenario["routed"]
    assert routed is not None
    cf = routed["router_counterfactual"]
    assert cf["num_decisions"] == 3 and cf["num_resimulations"] == 3
    assert cf["regretful_fraction"] > 0 and cf["mean_ttft_regret_s"] > 0  # replica 1 sat idle
    # without the option nothing is re-simulated
    plain = evaluate(pol + "FirstReplicaRouter", tiny, seeds=[0], diagnostics=True)
    assert all("router_counterfactual" not in (r.diagnostics or {}) for r in plain.runs)
