"""``servesim capacity``, ``servesim plan`` and ``plan show``; the winner's YAML round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import small_scenario
from servesim.api import plan_config
from servesim.cli import app
from servesim.config import SimConfig
from servesim.planner.deploy import launch_args, sim_config_dict
from servesim.planner.space import PlanSpec, SchedulerVariant

runner = CliRunner()
SMALL = [
    "--model",
    "llama-3.1-8b",
    "--gpus",
    "h100-sxm:2,a100-80gb:1",
    "--tp",
    "1,2",
    "--pp",
    "1",
    "--slo-ttft-p99",
    "1",
    "--slo-tpot-p99",
    "0.05",
    "--requests-per-replica",
    "80",
    "--inline",
    "--quiet",
]


def test_plan_prints_ranking_pareto_config_and_vllm_line(tmp_path: Path) -> None:
    store = tmp_path / "plan.duckdb"
    out = tmp_path / "best.yaml"
    result = runner.invoke(app, ["plan", *SMALL, "--store", str(store), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("Top plans", "Pareto front", "vllm serve", "--tensor-parallel-size", "plans:"):
        assert text in result.output
    cfg = SimConfig.from_yaml(out)  # what `servesim simulate --config` loads
    assert cfg.model == "llama-3.1-8b" and cfg.slo is not None and cfg.slo.ttft_s == 1.0
    again = runner.invoke(app, ["plan", *SMALL, "--store", str(store)])
    assert "0 simulated now" in again.output
    shown = runner.invoke(app, ["plan", "show", str(store)])
    assert shown.exit_code == 0, shown.output
    assert "Ranked" in shown.output and "Pareto front" in shown.output


def test_capacity_command() -> None:
    args = ["capacity", "--model", "llama-3.1-8b", "--num-requests", "100"]
    result = runner.invoke(app, [*args, "--slo-ttft-p99", "1", "--tol", "0.1"])
    assert result.exit_code == 0, result.output
    assert "capacity" in result.output and "per GPU" in result.output
    js = runner.invoke(app, [*args, "--slo-ttft-p99", "1", "--tol", "0.1", "--json"])
    assert '"rate_per_s"' in js.output


def test_user_errors_exit_2_with_one_line() -> None:
    cmd = [sys.executable, "-c", "from servesim.cli import main; main()"]
    bad_gpu = subprocess.run(
        [*cmd, "plan", "--gpus", "h1000:8", "--slo-ttft-p99", "1"], capture_output=True, text=True
    )
    assert bad_gpu.returncode == 2
    assert bad_gpu.stderr.startswith("error:") and "Traceback" not in bad_gpu.stderr
    no_slo = subprocess.run([*cmd, "plan", "--gpus", "h100-sxm:1"], capture_output=True, text=True)
    assert no_slo.returncode == 2 and "SLO target" in no_slo.stderr


def test_plan_config_validates_for_colocated_and_disaggregated() -> None:
    scenario = small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05)
    sched = SchedulerVariant("vllm", 128, 2048, True)
    colocated = PlanSpec("h100-sxm", tp=2, replicas=3, dtype="fp8", scheduler=sched)
    cfg = plan_config(scenario, colocated, 5.0)
    assert (cfg.hardware.tp, cfg.replicas, cfg.hardware.dtype) == (2, 3, "fp8")
    assert cfg.scheduler.max_num_batched_tokens == 2048
    assert cfg.workload.rate_per_s == 5.0
    disagg = PlanSpec("h100-sxm", replicas=3, mode="disaggregated", prefill_replicas=1)
    assert plan_config(scenario, disagg, 2.0).disagg == "1P:3D"
    routed = PlanSpec("h100-sxm", replicas=2, router="least_outstanding_requests")
    assert plan_config(scenario, routed, 2.0).router == "least_outstanding_requests"
    yaml.safe_dump(sim_config_dict(scenario, disagg, 2.0))  # plain data
    flags = launch_args(scenario, colocated)
    assert flags[flags.index("--tensor-parallel-size") + 1] == "2"
    assert flags[flags.index("--enable-chunked-prefill") + 1] == "True" and "fp8" in flags


@pytest.mark.slow
def test_plan_mix_prints_the_allocation() -> None:
    args = [a if a != "h100-sxm:2,a100-80gb:1" else "h100-sxm:1,a100-80gb:1" for a in SMALL]
    result = runner.invoke(app, ["plan", *args, "--mix", "--target-rate", "2"])
    assert result.exit_code == 0, result.output
    assert "Capacity per slice" in result.output and "Mélange ILP" in result.output
    assert "mix $" in result.output


def test_ep_and_pool_hardware_flags_reach_the_search_space() -> None:
    """--ep puts expert-parallel plans of an MoE model in the ranking; per-phase hardware is on by
    default for --disagg (H100 prefill with A100 decode) and --same-hardware-pools turns it off."""
    moe = ["plan", "--model", "mixtral-8x7b", "--gpus", "h100-sxm:4", "--tp", "2", "--pp", "1"]
    moe += ["--slo-ttft-p99", "2", "--requests-per-replica", "100", "--inline", "--quiet"]
    with_ep = runner.invoke(app, [*moe, "--ep", "1,2", "--exhaustive", "--top", "20"])
    assert with_ep.exit_code == 0, with_ep.output
    assert "tp2 ep2" in with_ep.output
    without_ep = runner.invoke(app, [*moe, "--ep", "1", "--exhaustive", "--top", "20"])
    assert without_ep.exit_code == 0, without_ep.output
    assert "ep2" not in without_ep.output

    dense = ["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm:2,a100-80gb:2", "--tp", "1"]
    dense += ["--pp", "1", "--slo-ttft-p99", "2", "--requests-per-replica", "100", "--inline"]
    dense += ["--quiet", "--disagg", "--max-replicas", "2", "--top", "50", "--exhaustive"]
    per_phase = runner.invoke(app, dense)
    same = runner.invoke(app, [*dense, "--same-hardware-pools"])
    assert per_phase.exit_code == 0 and same.exit_code == 0, per_phase.output + same.output
    assert "8 plans:" in per_phase.output and "6 plans:" in same.output
    assert "1P h100-sxm tp1 : 1D a100-80gb" in per_phase.output.replace("\n", " ")
