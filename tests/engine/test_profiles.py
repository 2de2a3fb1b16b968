"""Engine profiles: selection, scheduler defaults, host model, kernel stack, launch lines."""

from __future__ import annotations

import shlex

import pytest

from servesim.cluster.deployment import pool_engine, pool_plan
from servesim.config import SimConfig
from servesim.core.errors import UnknownNameError
from servesim.engine.profiles import (
    LaunchSettings,
    engine_names,
    get_engine,
    resolve_engine,
)
from servesim.perf.calibration import load_calibration

EXPECTED = {
    # engine: (host profile, kernel stack, scheduler version, prefix caching default)
    "vllm-0.6": ("vllm-v0", "vllm-0.6", "v0", False),
    "vllm-v1": ("vllm-v1", "vllm-0.24", "v1", True),
    "vllm-v1-async": ("vllm-v1-async", "vllm-0.24", "v1", True),
    "sglang": ("sglang", "sglang-0.5", "v1", True),
    "trtllm": ("trtllm", "vllm-0.24", "v1", True),
}


def test_every_engine_is_registered() -> None:
    assert set(engine_names()) == set(EXPECTED)
    with pytest.raises(UnknownNameError):
        get_engine("vllm-v2")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_engine_selects_scheduler_defaults_host_model_and_kernels(name: str) -> None:
    host, stack, version, prefix = EXPECTED[name]
    config = SimConfig.from_dict({"hardware": {"engine": name}})
    pool = config.effective_deployment().pools[0]
    plan = pool_plan(pool, config.model)
    assert (plan.host_profile, plan.kernel_stack) == (host, stack)
    assert pool.scheduler.version == version  # type: ignore[union-attr]
    assert pool.cache.enable_prefix_caching is prefix
    assert pool_engine(pool).name == name
    load_calibration().host_profile(host)  # the packaged calibration holds its host model


def test_large_gpu_defaults_and_user_settings_win() -> None:
    config = SimConfig.from_dict({"hardware": {"engine": "vllm-v1"}})
    assert config.scheduler.max_num_seqs == 1024  # H100: >= 70 GiB
    assert config.scheduler.max_num_batched_tokens == 8192
    small = SimConfig.from_dict({"hardware": {"engine": "vllm-v1", "gpu": "a10g"}})
    assert small.scheduler.max_num_batched_tokens == 2048
    mine = SimConfig.from_dict(
        {
            "hardware": {"engine": "vllm-v1"},
            "scheduler": {"kind": "vllm", "max_num_seqs": 64},
            "cache": {"enable_prefix_caching": False},
        }
    )
    assert mine.scheduler.max_num_seqs == 64 and mine.scheduler.version == "v1"  # type: ignore[union-attr]
    assert mine.cache.enable_prefix_caching is False


def test_overrides_beat_the_engine() -> None:
    config = SimConfig.from_dict(
        {"hardware": {"engine": "sglang", "host_overhead": "none", "kernel_stack": "vllm-0.6"}}
    )
    plan = pool_plan(config.effective_deployment().pools[0], config.model)
    assert (plan.host_profile, plan.kernel_stack) == ("none", "vllm-0.6")


def test_auto_follows_the_scheduler() -> None:
    assert resolve_engine("auto", "vllm", "v0").name == "vllm-0.6"
    assert resolve_engine("auto", "vllm", "v1").name == "vllm-v1"
    assert resolve_engine("auto", "sarathi").name == "vllm-0.6"
    plan = pool_plan(SimConfig().effective_deployment().pools[0], SimConfig().model)
    assert (plan.host_profile, plan.kernel_stack) == ("vllm-v0", "vllm-0.6")


def test_unknown_engine_in_yaml_is_a_config_error() -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="unknown engine"):
        SimConfig.from_dict({"hardware": {"engine": "vllm-0.7"}})
    with pytest.raises(pydantic.ValidationError, match="unknown engine"):
        SimConfig.from_dict({"deployment": {"pools": [{"engine": "tgi"}]}})


def test_pool_engine_in_a_deployment() -> None:
    config = SimConfig.from_dict({"deployment": {"pools": [{"engine": "trtllm"}]}})
    pool = config.effective_deployment().pools[0]
    assert pool.scheduler.max_num_seqs == 2048 and pool.cache.block_size == 32
    assert pool_plan(pool, config.model).host_profile == "trtllm"


SETTINGS = LaunchSettings(
    model="meta-llama/Llama-3.1-8B-Instruct", tp=2, pp=1, dtype="bf16", max_num_seqs=128,
    max_num_batched_tokens=4096, enable_chunked_prefill=True, enable_prefix_caching=True,
    gpu_memory_utilization=0.9, block_size=16,
)  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launch_line_parses_back_to_its_settings(name: str) -> None:
    profile = get_engine(name)
    line = profile.launch_command(SETTINGS)
    assert profile.version in line  # names the version it was written for
    argv = shlex.split(line.split("   #", 1)[0])
    assert argv[0] in {"vllm", "python", "trtllm-serve"}
    parsed = profile.launcher.parse(argv)
    expected = SETTINGS
    if name == "vllm-0.6":
        assert parsed == expected
    elif name == "trtllm":  # no dtype, block-size or chunking flags on trtllm-serve
        got = (parsed.model, parsed.tp, parsed.max_num_seqs, parsed.max_num_batched_tokens)
        assert got == (SETTINGS.model, 2, 128, 4096)
    else:
        assert parsed == expected


def test_each_engine_names_its_program() -> None:
    assert get_engine("vllm-v1-async").launch_command(SETTINGS).startswith("vllm serve")
    assert "--async-scheduling" in get_engine("vllm-v1-async").launch_command(SETTINGS)
    assert (
        get_engine("sglang").launch_command(SETTINGS).startswith("python -m sglang.launch_server")
    )
    assert get_engine("trtllm").launch_command(SETTINGS).startswith("trtllm-serve")


def test_settings_line_shows_effective_scheduler_settings() -> None:
    config = SimConfig.from_dict({"hardware": {"engine": "vllm-v1"}})
    line = get_engine("vllm-v1").settings_line(config.scheduler, config.cache)
    assert "chunked prefill on" in line and "budget 8192" in line
    assert "prefix caching on" in line and "max_num_seqs 1024" in line
