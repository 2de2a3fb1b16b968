"""Objectives and the penalty rule: unserved requests always count against the policy."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from servesim.config import SLOConfig
from servesim.core.errors import ConfigError
from servesim.lab import evaluate, parse_objective
from servesim.lab.objectives import jain_fairness, penalised_latencies, slo_met


def test_objectives_parse_from_names_weights_and_mappings() -> None:
    assert parse_objective("goodput").weights == (("goodput_per_s", 1.0),)
    weighted = parse_objective("goodput:1,p99_ttft:0.5")
    assert weighted.weights == (("goodput_per_s", 1.0), ("p99_ttft_s", 0.5))
    assert weighted.name == "goodput_per_s:1,p99_ttft_s:0.5"
    assert parse_objective({"cost": 2}).weights == (("cost_per_mtok_usd", 2.0),)
    for bad in ("latency", "goodput:-1", "goodput:x"):
        with pytest.raises(ConfigError):
            parse_objective(bad)


def test_utility_is_a_weighted_sum_of_signed_logs() -> None:
    objective = parse_objective("goodput:1,p99_ttft:0.5")
    a = {"goodput_per_s": 2.0, "p99_ttft_s": 1.0}
    b = {"goodput_per_s": 4.0, "p99_ttft_s": 4.0}  # twice the goodput, four times the TTFT
    assert objective.delta(a, b) == pytest.approx(math.log(2) - 0.5 * math.log(4))


def _cols(done: list[bool]) -> dict[str, np.ndarray]:
    n = len(done)
    is_done = np.array(done)
    return {
        "arrival_s": np.arange(n, dtype=float),
        "ttft_s": np.where(is_done, 0.2 * (np.arange(n) + 1), np.nan),
        "tpot_s": np.where(is_done, 0.01 * (np.arange(n) + 1), np.nan),
        "slo_class": np.array(["default"] * n, dtype=object),
        "user_id": np.array([0, 1, 0, 1][:n]),
    }


def test_unfinished_requests_get_the_stop_time_latency_and_the_worst_tpot() -> None:
    cols = _cols([True, True, False, False])
    done = np.array([True, True, False, False])
    cfg = SimpleNamespace(slo=SLOConfig(ttft_s=0.5, tpot_s=0.015))
    ttft, tpot = penalised_latencies(cols, done, horizon_s=10.0, cfg=cfg)
    # completed: 0.2, 0.4; unfinished arrived at 2 and 3, the clock stopped at 10
    np.testing.assert_allclose(ttft, [0.2, 0.4, 8.0, 7.0])
    # worst completed TPOT is 0.02, but at least 10x the 15 ms target
    np.testing.assert_allclose(tpot, [0.01, 0.02, 0.15, 0.15])
    met = slo_met(cols, done, cfg)
    assert met.tolist() == [True, False, False, False]  # the second misses the TPOT target
    assert jain_fairness(cols, met) == pytest.approx(0.5)  # user 0: 1/2, user 1: 0/2


def test_jain_index_is_hand_computed_and_zero_when_nobody_is_served() -> None:
    cols = {"user_id": np.array([0, 0, 1, 1]), "slo_class": np.array(["d"] * 4, dtype=object)}
    met = np.array([True, True, True, False])  # shares 1.0 and 0.5
    assert jain_fairness(cols, met) == pytest.approx(1.5**2 / (2 * 1.25))
    assert jain_fairness(cols, np.zeros(4, dtype=bool)) == 0.0


def test_a_policy_that_drops_half_its_requests_scores_worse_than_fcfs(tiny: str, pol: str) -> None:
    fcfs = evaluate(pol + "Fcfs", tiny, seeds=[0])
    drop = evaluate(pol + "DropHalf", tiny, seeds=[0])
    assert drop.is_valid  # starving is legal; it just scores badly
    for scenario, m in drop.per_scenario().items():
        ref = fcfs.per_scenario()[scenario]
        assert m["completed_fraction"] == pytest.approx(0.5, abs=0.05)
        assert m["goodput_per_s"] < ref["goodput_per_s"]
        assert m["p99_ttft_s"] > ref["p99_ttft_s"]  # starved requests at the stop time
        assert m["throughput_tokens_per_s"] < ref["throughput_tokens_per_s"]
        assert m["cost_per_mtok_usd"] > ref["cost_per_mtok_usd"]
    for objective in ("goodput", "p99_ttft", "throughput", "cost", "energy", "attainment"):
        a = evaluate(pol + "Fcfs", tiny, objective, seeds=[0], isolate=False)
        b = evaluate(pol + "DropHalf", tiny, objective, seeds=[0], isolate=False)
        assert b.utility < a.utility, objective
