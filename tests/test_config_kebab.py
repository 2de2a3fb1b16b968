"""Kebab-case keys and registry names in config files read as their snake_case spelling, and
nothing else is rewritten (``servesim.config.kebab``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from servesim.cli import main
from servesim.config import SimConfig
from servesim.core.errors import ConfigError

SNAKE: dict[str, Any] = {
    "model": "llama-3.1-8b",
    "hardware": {"gpu": "h100-sxm", "gpu_memory_utilization": 0.8, "cuda_graphs": False},
    "scheduler": {"kind": "sarathi", "chunk_size": 256, "max_num_seqs": 64},
    "cache": {"enable_prefix_caching": True},
    "workload": {"preset": "sharegpt-vidur", "rate_per_s": 3.0},
    "router": "least_outstanding_requests",
    "num_requests": 20,
    "max_time_s": 100.0,
    "slo": {"ttft_s": 1.0, "classes": {"low-latency": {"ttft_s": 0.2}}},
}
KEBAB: dict[str, Any] = {
    "model": "llama-3.1-8b",
    "hardware": {"gpu": "h100-sxm", "gpu-memory-utilization": 0.8, "cuda-graphs": False},
    "scheduler": {"kind": "sarathi", "chunk-size": 256, "max-num-seqs": 64},
    "cache": {"enable-prefix-caching": True},
    "workload": {"preset": "sharegpt-vidur", "rate-per-s": 3.0},
    "router": "least-outstanding-requests",
    "num-requests": 20,
    "max-time-s": 100.0,
    "slo": {"ttft-s": 1.0, "classes": {"low-latency": {"ttft-s": 0.2}}},
}


def test_kebab_case_config_equals_the_snake_case_one() -> None:
    kebab = SimConfig.from_dict(KEBAB)
    assert kebab == SimConfig.from_dict(SNAKE)
    assert kebab.scheduler.max_num_seqs == 64 and kebab.hardware.cuda_graphs is False
    assert kebab.router == "least_outstanding_requests"


def test_free_form_keys_and_hyphenated_names_are_kept() -> None:
    cfg = SimConfig.from_dict({**KEBAB, "hardware": {"gpu": "h100-sxm", "engine": "vllm-v1"}})
    assert list(cfg.slo.classes) == ["low-latency"]  # a user's class name, not a field
    assert cfg.model == "llama-3.1-8b" and cfg.hardware.engine == "vllm-v1"


def test_nested_deployment_pools_and_router_kinds() -> None:
    cfg = SimConfig.from_dict(
        {
            "deployment": {
                "router": {"kind": "least-kv-usage"},
                "pools": [
                    {
                        "name": "a",
                        "replicas": 2,
                        "cuda-graphs": False,
                        "scheduler": {"kind": "vllm", "max-num-batched-tokens": 1024},
                    }
                ],
            }
        }
    )
    assert cfg.deployment is not None
    pool = cfg.deployment.pools[0]
    assert cfg.deployment.router.kind == "least_kv_usage"
    assert pool.cuda_graphs is False and pool.scheduler.max_num_batched_tokens == 1024


def test_plugin_paths_are_not_rewritten() -> None:
    cfg = SimConfig.from_dict({"router": "my-routers.py:Best"})
    assert cfg.router == "my-routers.py:Best"


def test_unknown_kebab_key_is_refused_under_its_own_name() -> None:
    with pytest.raises(ValidationError) as info:
        SimConfig.from_dict({"scheduler": {"kind": "vllm", "max-num-seq": 4}})
    (problem,) = info.value.errors()
    assert problem["loc"][-1] == "max-num-seq" and problem["type"] == "extra_forbidden"


def test_a_key_given_both_ways_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"given twice .*'max-num-seqs' and 'max_num_seqs'"):
        SimConfig.from_dict({"scheduler": {"kind": "vllm", "max-num-seqs": 4, "max_num_seqs": 5}})


def test_cli_flags_override_kebab_keys_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("scheduler:\n  kind: vllm\n  max-num-seqs: 4\nnum-requests: 5\n")
    cfg = SimConfig.from_yaml(path, {"scheduler.max_num_seqs": 8})
    assert cfg.scheduler.max_num_seqs == 8 and cfg.num_requests == 5


def test_cli_runs_a_kebab_case_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(
        "hardware: {gpu: h100-sxm, cuda-graphs: true}\n"
        "scheduler: {kind: sarathi, chunk-size: 512, max-num-seqs: 32}\n"
        "workload: {preset: sharegpt-vidur, rate-per-s: 2.0}\n"
        "num-requests: 20\n"
    )
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--config", str(path)])
    assert not info.value.code
    assert "TTFT" in capsys.readouterr().out
