"""The planner's launch lines follow the chosen engine profile and name its version."""

from __future__ import annotations

import shlex

import pytest
from tests.planner.test_cli_plan import SMALL
from typer.testing import CliRunner

from servesim.cli import app
from servesim.config import SimConfig
from servesim.engine import CacheConfig
from servesim.engine.profiles import get_engine
from servesim.planner.deploy import launch_args, launch_command, launch_settings, sim_config_dict
from servesim.planner.plan import SchedulerVariant
from servesim.planner.scenario import Scenario
from servesim.planner.space import PlanSpec

runner = CliRunner()
SCENARIO = Scenario(model="llama-3.1-8b")
PLAN = PlanSpec(
    "h100-sxm", tp=2, replicas=3, scheduler=SchedulerVariant(max_num_batched_tokens=4096)
)
PROGRAMS = {
    "vllm-0.6": "vllm serve",
    "vllm-v1": "vllm serve",
    "vllm-v1-async": "vllm serve",
    "sglang": "python -m sglang.launch_server",
    "trtllm": "trtllm-serve",
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_each_engine_writes_its_own_program_flags_and_version(name: str) -> None:
    profile = get_engine(name)
    line = launch_command(SCENARIO, PLAN, name)
    assert line.startswith(PROGRAMS[name])
    assert profile.version in line and "x3 instances" in line
    argv = shlex.split(line.split("   #", 1)[0])
    assert argv == launch_args(SCENARIO, PLAN, engine=name)
    parsed = profile.launcher.parse(argv)
    assert (parsed.tp, parsed.max_num_seqs, parsed.max_num_batched_tokens) == (2, 256, 4096)


def test_engine_specific_flags() -> None:
    assert "--async-scheduling" in launch_args(SCENARIO, PLAN, engine="vllm-v1-async")
    assert "--async-scheduling" not in launch_args(SCENARIO, PLAN, engine="vllm-v1")
    assert "--chunked-prefill-size" in launch_args(SCENARIO, PLAN, engine="sglang")
    assert "--max_num_tokens" in launch_args(SCENARIO, PLAN, engine="trtllm")
    # auto: the planner's vLLM scheduler without a version is vLLM 0.6
    assert get_engine("vllm-0.6").version in launch_command(SCENARIO, PLAN)


def test_prefix_caching_left_to_the_engine_takes_its_default() -> None:
    assert not launch_settings(SCENARIO, PLAN, engine="vllm-0.6").enable_prefix_caching
    assert launch_settings(SCENARIO, PLAN, engine="sglang").enable_prefix_caching
    off = Scenario(model="llama-3.1-8b", cache=CacheConfig(enable_prefix_caching=False))
    assert "--disable-radix-cache" in launch_args(off, PLAN, engine="sglang")
    assert "--no-enable-prefix-caching" in launch_args(off, PLAN, engine="vllm-v1")


def test_winner_yaml_names_the_engine() -> None:
    cfg = SimConfig.from_dict(sim_config_dict(SCENARIO, PLAN, 2.0, "vllm-v1-async"))
    assert cfg.hardware.engine == "vllm-v1-async"
    assert cfg.scheduler.version == "v1"  # the engine's rules, not V0's
    assert "engine" not in sim_config_dict(SCENARIO, PLAN, 2.0)["hardware"]


@pytest.mark.slow
def test_plan_cli_takes_engine_and_prints_its_launch_line() -> None:
    args = [a if a != "h100-sxm:2,a100-80gb:1" else "h100-sxm:1" for a in SMALL]
    result = runner.invoke(app, ["plan", *args, "--engine", "sglang"])
    assert result.exit_code == 0, result.output
    assert "python -m sglang.launch_server" in result.output
    assert get_engine("sglang").version in result.output
    assert "engine: sglang" in result.output


MOE_SCENARIO = Scenario(model="qwen3-30b-a3b")
DP4 = PlanSpec(
    "h100-sxm", tp=2, ep=8, dp_attention=4, router="dp_least_loaded", all2all="deepep_low_latency"
)


def test_a_dp_attention_plan_writes_each_engine_s_real_flags() -> None:
    # vLLM >= 0.11: D ranks of tp GPUs, EP over all of them, the backend as a flag
    argv = launch_args(MOE_SCENARIO, DP4, engine="vllm-v1-async")
    flags = " ".join(argv)
    assert "--tensor-parallel-size 2" in flags and "--data-parallel-size 4" in flags
    assert "--enable-expert-parallel" in argv
    assert "--all2all-backend deepep_low_latency" in flags
    parsed = get_engine("vllm-v1-async").launcher.parse(argv)
    assert (parsed.tp, parsed.dp_attention, parsed.ep) == (2, 4, 8)
    assert parsed.all2all_backend == "deepep_low_latency"
    # vLLM 0.8-0.10 read the backend from VLLM_ALL2ALL_BACKEND (vllm/envs.py)
    line = launch_command(MOE_SCENARIO, DP4, "vllm-v1")
    assert line.startswith("VLLM_ALL2ALL_BACKEND=deepep_low_latency vllm serve")
    assert "--all2all-backend" not in line and "--data-parallel-size 4" in line
    # SGLang: --tp is the whole group, attention TP = tp / dp-size
    sgl = launch_args(MOE_SCENARIO, DP4, engine="sglang")
    text = " ".join(sgl)
    assert "--tp 8 " in text and "--dp-size 4 --enable-dp-attention" in text
    assert "--ep-size 8" in text and "--moe-a2a-backend deepep --deepep-mode low_latency" in text
    back = get_engine("sglang").launcher.parse(sgl)
    assert (back.tp, back.dp_attention, back.ep, back.all2all_backend) == (
        2,
        4,
        8,
        "deepep_low_latency",
    )
    # vLLM 0.6 has no DP ranks: the line says which engine runs it
    assert "needs vLLM >= 0.9" in launch_command(MOE_SCENARIO, DP4, "vllm-0.6")
    assert "enable_attention_dp" in launch_command(MOE_SCENARIO, DP4, "trtllm")


def test_a_plain_plan_writes_no_dp_flags() -> None:
    for name in PROGRAMS:
        flags = launch_args(SCENARIO, PLAN, engine=name)
        assert not {"--data-parallel-size", "--dp-size", "--enable-dp-attention"} & set(flags)
