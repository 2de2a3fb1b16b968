"""``servesim simulate`` with --disagg, --router and --deployment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servesim.cli import app, main

RUNNER = CliRunner()


def test_disagg_and_router_flags(tmp_path: Path) -> None:
    args = [
        "simulate",
        "--disagg",
        "1P:2D",
        "--router",
        "least_kv_usage",
        "--num-requests",
        "40",
        "--json",
    ]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["summary"]["num_replicas"] == 3
    assert data["cluster"]["kv_transfer"]["num_transfers"] == 40
    assert data["cluster"]["num_gpus"] == 3


def test_deployment_file(tmp_path: Path) -> None:
    file = tmp_path / "deploy.yaml"
    file.write_text(
        "deployment:\n"
        "  router: {kind: power_of_two}\n"
        "  pools:\n"
        "    - {name: a, replicas: 2, gpu: h100-sxm}\n"
        "    - {name: b, replicas: 1, gpu: a100-80gb}\n"
    )
    result = RUNNER.invoke(app, ["simulate", "--deployment", str(file), "--num-requests", "30"])
    assert result.exit_code == 0, result.output
    assert "a (unified): 2 x 1 h100-sxm" in result.output
    assert "router power-of-two" in result.output  # kebab-case, as the CLI spells it


def _exit(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0)


def test_bad_deployments_exit_2_listing_each_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit(["simulate", "--disagg", "2P:xD"]) == 2
    assert "disagg" in capsys.readouterr().err
    assert _exit(["simulate", "--tp", "3", "--router", "round_robin"]) == 2
    assert "tp=3 does not divide the 32 attention heads" in capsys.readouterr().err
    assert _exit(["simulate", "--router", "round_robbin", "--num-requests", "5"]) == 2
    assert "did you mean round_robin" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["deploy_disagg", "deploy_hetero", "deploy_autoscale"])
def test_example_deployments_run(name: str) -> None:
    file = Path(__file__).resolve().parents[2] / "examples" / f"{name}.yaml"
    args = ["simulate", "--deployment", str(file), "--num-requests", "60", "--json"]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["summary"]["num_completed"] == 60
