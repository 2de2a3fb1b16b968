"""Shipped suites: valid, versioned, runnable in fast mode, with baselines that recompute."""

from __future__ import annotations

import json

import pytest

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.lab import evaluate, load_suite, suite_names
from servesim.lab.evaluate import load_baselines
from servesim.lab.suites import _with_data, apply_policy, suite_runs

EXPECTED = {"bursty", "chat", "code", "long-context", "moe-ep", "prefix-multiturn", "routing"}


def test_the_standard_suites_ship_with_baselines_of_their_version() -> None:
    assert set(suite_names()) == EXPECTED
    recorded = load_baselines()
    for name in EXPECTED:
        suite = load_suite(name)
        assert suite.name == name and suite.version >= 1
        entry = recorded[name]
        assert entry["version"] == suite.version
        assert sorted(entry["policies"]) == sorted(suite.baselines)
        runs = entry["policies"][suite.baselines[0]]["runs"]
        assert len(runs) + len(entry["policies"][suite.baselines[0]]["skipped"]) > 0


def test_unknown_suites_and_files_are_reported() -> None:
    with pytest.raises(UnknownNameError, match="unknown suite 'chatt'; did you mean chat"):
        load_suite("chatt")
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite("nowhere.yaml")


def test_fast_mode_scales_requests_and_stop_time_and_keeps_one_seed() -> None:
    suite = load_suite("chat")
    full = suite_runs(suite)
    fast = suite_runs(suite, fast=True)
    # every scenario runs every seed, but a trace replay (no randomness) runs one
    assert len(full) == (len(suite.scenarios) - 1) * len(suite.seeds) + 1
    assert [r.seed for r in fast] == [suite.seeds[0]] * len(suite.scenarios)
    first_full, first_fast = json.loads(full[0].config_json), json.loads(fast[0].config_json)
    assert first_full["num_requests"] == 400 and first_fast["num_requests"] == 100
    assert first_fast["max_time_s"] == pytest.approx(first_full["max_time_s"] / 4)


def test_scenarios_replaying_shared_data_skip_with_a_reason_when_it_is_absent() -> None:
    config = {"workload": {"trace": {"path": "{data}/traces/x.csv"}}}
    _, reason = _with_data(config, None)
    assert reason == "../shared/data is absent (this scenario replays a real trace)"
    assert _with_data({"workload": {"preset": "azure-conv"}}, None)[1] == ""


def test_a_policy_reaches_every_pool_of_a_deployment() -> None:
    config = {"deployment": {"pools": [{"name": "a"}, {"name": "b", "cache": {"block_size": 32}}]}}
    out = apply_policy(
        config, {"scheduler": {"kind": "sarathi"}, "cache": {"watermark": 0.05}, "router": "x"}
    )
    assert [p["scheduler"] for p in out["deployment"]["pools"]] == [{"kind": "sarathi"}] * 2
    assert out["deployment"]["pools"][1]["cache"] == {"block_size": 32, "watermark": 0.05}
    assert out["router"] == "x" and "scheduler" not in config["deployment"]["pools"][0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_suite_runs_its_reference_in_fast_mode(name: str) -> None:
    score = evaluate(load_suite(name).baselines[0], name, fast=True, isolate=False)
    assert score.is_valid and score.value is not None and score.value > 0


def test_a_recorded_baseline_run_recomputes_to_the_same_figures() -> None:
    suite = load_suite("chat")
    recorded = load_baselines()["chat"]["policies"]["sarathi"]["runs"]
    run = next(r for r in recorded if r["scenario"] == "sharegpt-tenants" and r["seed"] == 1)
    score = evaluate("sarathi", "chat", seeds=[1], isolate=False)
    fresh = next(r for r in score.runs if r.scenario == "sharegpt-tenants")
    assert fresh.metrics == run["metrics"]
    assert suite.baselines[0] == "vllm"


def test_a_full_score_is_reported_against_the_reference_baseline() -> None:
    score = evaluate("vllm", "code", isolate=False)
    assert score.baseline_value == pytest.approx(score.value)
    assert "(+0.0% vs baseline)" in score.line()
