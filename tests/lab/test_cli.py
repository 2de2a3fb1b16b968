"""``servesim evaluate`` and ``servesim compare`` (typer's CliRunner and the entry point)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from servesim.cli import app, main

runner = CliRunner()


def test_evaluate_prints_a_json_score(tiny: str, pol: str) -> None:
    out = runner.invoke(app, ["evaluate", pol + "Fcfs", "--suite", tiny, "--seeds", "0", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["policy"] == "Fcfs" and data["suite"] == "tiny" and data["value"] > 0
    assert [r["scenario"] for r in data["runs"]] == ["chat-small", "routed"]


def test_evaluate_of_a_failing_policy_exits_1_and_names_the_failure(tiny: str, pol: str) -> None:
    out = runner.invoke(app, ["evaluate", pol + "Raiser", "--suite", tiny, "--seeds", "0"])
    assert out.exit_code == 1
    assert "failed: chat-small/seed 0: error: schedule raised ValueError" in out.output


def test_compare_prints_the_verdict(tiny: str) -> None:
    out = runner.invoke(app, ["compare", "vllm", "vllm", "--suite", tiny, "--seeds", "0"])
    assert out.exit_code == 0, out.output
    assert "no difference: identical figures on all 2 runs" in out.output


def test_list_suites() -> None:
    out = runner.invoke(app, ["evaluate", "--list-suites"])
    assert out.exit_code == 0 and "chat v1: 3 scenarios x 3 seeds" in out.output


def test_a_bad_objective_is_one_line_and_exit_2(
    tiny: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "vllm", "--suite", tiny, "--objective", "latency"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: objective='latency': unknown metric") and "\n" not in err


def test_evaluate_and_compare_are_exported_from_the_package_root() -> None:
    import servesim
    from servesim import lab

    assert servesim.evaluate is lab.evaluate and servesim.compare is lab.compare


def test_evaluate_renders_diagnostics(tiny: str) -> None:
    args = ["evaluate", "priority", "--suite", tiny, "--seeds", "0", "--diagnostics"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "diagnostics per run" in out.output and "chat-small/0" in out.output


def test_a_json_mapping_policy_and_counterfactual_regret(tiny: str, pol: str) -> None:
    policy = json.dumps({"admission": {"kind": "token_bucket", "options": {"rate_per_s": 0.5}}})
    out = runner.invoke(app, ["evaluate", policy, "--suite", tiny, "--seeds", "0", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["policy"] == "token_bucket"
    assert all(m["completed_fraction"] < 0.5 for m in data["per_scenario"].values())
    args = ["evaluate", pol + "FirstReplicaRouter", "--suite", tiny, "--seeds", "0"]
    out = runner.invoke(app, [*args, "--counterfactual", "2"])
    assert out.exit_code == 0, out.output
    assert "route regret s" in out.output and "(2 decisions)" in out.output


def test_a_bad_json_policy_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "{admission: 1}", "--suite", "chat", "--fast"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: policy=") and "is not valid JSON" in err and "\n" not in err
