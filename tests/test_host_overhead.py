"""``host_overhead``: auto follows the scheduler, the user overrides it, the CLI shows it."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from typer.testing import CliRunner

from servesim.api import replica_plan
from servesim.cli import app, main
from servesim.cli.simulate import build_config
from servesim.cluster import build_deployment
from servesim.cluster.config import DeploymentConfig
from servesim.config import SimConfig
from servesim.perf import RooflinePerfModel

NO_WORKLOAD = {
    "preset": None,
    "arrival": None,
    "rate": None,
    "cv": None,
    "trace": None,
    "trace_format": None,
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, "vllm-v0"),
        ({"scheduler": {"kind": "vllm", "version": "v1"}}, "vllm-v1"),
        ({"scheduler": {"kind": "vllm", "version": "v0"}}, "vllm-v0"),
        ({"scheduler": {"kind": "sarathi"}}, "vllm-v0"),
        ({"scheduler": {"kind": "orca"}}, "vllm-v0"),
        (
            {"scheduler": {"kind": "vllm", "version": "v1"}, "hardware": {"host_overhead": "none"}},
            "none",
        ),
        ({"scheduler": {"kind": "sarathi"}, "hardware": {"host_overhead": "vllm-v1"}}, "vllm-v1"),
        ({"hardware": {"host_overhead": "vllm-v0-multistep"}}, "vllm-v0-multistep"),
    ],
)
def test_replica_plan_picks_profile(raw: dict[str, Any], expected: str) -> None:
    assert replica_plan(SimConfig.model_validate(raw)).host_profile == expected


def test_bad_setting_is_a_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError, match="host_overhead"):
        SimConfig.model_validate({"hardware": {"host_overhead": "vllm-v2"}})


@pytest.mark.parametrize("disagg", [None, "1P:1D"])
def test_cluster_pools_follow_their_scheduler(disagg: str | None) -> None:
    raw: dict[str, Any] = {"scheduler": {"kind": "vllm", "version": "v1"}}
    if disagg:
        raw["disagg"] = disagg
    cfg = SimConfig.model_validate(raw)
    dep = build_deployment(cfg.effective_deployment(), cfg.model, RooflinePerfModel())
    assert [p.plan.host_profile for p in dep.pools] == ["vllm-v1"] * len(dep.pools)


def test_deployment_pools_choose_independently() -> None:
    cfg = DeploymentConfig.model_validate(
        {
            "pools": [
                {"name": "new", "scheduler": {"kind": "vllm", "version": "v1"}},
                {"name": "old", "scheduler": {"kind": "vllm", "version": "v0"}},
                {"name": "bound", "host_overhead": "none"},
            ]
        }
    )
    dep = build_deployment(cfg, "llama-3.1-8b", RooflinePerfModel())
    assert {p.name: p.plan.host_profile for p in dep.pools} == {
        "new": "vllm-v1",
        "old": "vllm-v0",
        "bound": "none",
    }


def test_simulate_flag_sets_hardware_field() -> None:
    cfg = build_config(None, {"hardware.host_overhead": "none"}, NO_WORKLOAD)
    assert cfg.hardware.host_overhead == "none"
    assert replica_plan(cfg).host_profile == "none"


def test_simulate_bad_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--host-overhead", "fast", "--num-requests", "5"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "host_overhead" in err and "Traceback" not in err


def test_perf_command_shows_profile() -> None:
    runner = CliRunner()
    args = ["perf", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--batch", "decode=4x500"]
    totals = {}
    for profile in ("vllm-v0", "vllm-v1", "none"):
        result = runner.invoke(app, [*args, "--host-overhead", profile, "--json"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert doc["host_profile"] == profile
        totals[profile] = doc["overhead_s"]
    assert totals["vllm-v0"] == pytest.approx(4e-3 + 4 * 3e-4)
    assert totals["vllm-v1"] == pytest.approx(6e-4 + 4 * 2.5e-5)
    assert totals["none"] == 0.0
    with pytest.raises(SystemExit) as info:
        main([*args, "--host-overhead", "vllm-v9"])
    assert info.value.code == 2
