"""SimConfig: defaults, YAML round trip, overrides, and one-line errors with field paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from servesim.cli.common import format_validation_error
from servesim.config import DEFAULT_RATE_PER_S, SimConfig, load_yaml, set_dotted
from servesim.core.errors import ConfigError
from servesim.metrics import SLOTargets
from servesim.specs.dtypes import DType


def _lines(data: dict) -> list[str]:
    with pytest.raises(ValidationError) as info:
        SimConfig.from_dict(data)
    return list(format_validation_error(info.value))


def test_defaults_are_the_builtin_scenario() -> None:
    c = SimConfig()
    assert c.model == "llama-3.1-8b"
    assert (c.hardware.gpu, c.hardware.tp, c.hardware.pp) == ("h100-sxm", 1, 1)
    assert c.scheduler.kind == "vllm"
    assert c.workload.preset == "sharegpt-vidur"
    assert c.seed == 0 and c.replicas == 1 and c.slo is None


def test_yaml_round_trip(tmp_path: Path) -> None:
    c = SimConfig.from_dict(
        {
            "hardware": {"tp": 2, "dtype": "fp8"},
            "scheduler": {"kind": "sarathi", "chunk_size": 256},
            "slo": {"ttft_s": 1.0, "tpot_s": 0.05, "classes": {"gold": {"ttft_s": 0.3}}},
            "workload": {"preset": "lmsys", "rate_per_s": 3.0},
            "num_requests": 50,
            "seed": 7,
        }
    )
    path = tmp_path / "sim.yaml"
    path.write_text(c.to_yaml())
    again = SimConfig.from_yaml(path)
    assert again == c
    assert again.to_yaml() == c.to_yaml()


def test_unknown_key_is_one_line_with_path() -> None:
    lines = _lines({"hardware": {"tpp": 2}})
    assert len(lines) == 1
    assert lines[0].startswith("hardware.tpp=2:")
    assert "Extra inputs are not permitted" in lines[0]


def test_top_level_typo() -> None:
    (line,) = _lines({"num_request": 5})
    assert line.startswith("num_request=5")


@pytest.mark.parametrize(
    ("data", "prefix", "words"),
    [
        ({"hardware": {"tp": 0}}, "hardware.tp=0", ">= 1"),
        ({"workload": {"rate_per_s": -1.0}}, "workload.rate_per_s=-1.0", ">= 1e-06"),
        ({"seed": -3}, "seed=-3", ">= 0"),
        (
            {"hardware": {"gpu_memory_utilization": 1.5}},
            "hardware.gpu_memory_utilization=1.5",
            "<= 1",
        ),
        (
            {"scheduler": {"kind": "vllm", "max_num_seqs": 0}},
            "scheduler.vllm.max_num_seqs=0",
            "greater than or equal to 1",
        ),
    ],
)
def test_bad_values_name_field_value_and_limit(data: dict, prefix: str, words: str) -> None:
    (line,) = _lines(data)
    assert line.startswith(prefix), line
    assert words in line


def test_unknown_gpu_suggests_names() -> None:
    (line,) = _lines({"hardware": {"gpu": "h100-smx"}})
    assert line.startswith("hardware.gpu='h100-smx'")
    assert "did you mean" in line


def test_unknown_scheduler_kind() -> None:
    (line,) = _lines({"scheduler": {"kind": "fifo"}})
    assert line.startswith("scheduler=") and "fifo" in line


def test_dtypes() -> None:
    hw = SimConfig.from_dict({"hardware": {"dtype": "bfloat16"}}).hardware
    assert hw.weight_dtype() == DType.BF16 and hw.kv_cache_dtype() == DType.BF16
    fp8 = SimConfig.from_dict({"hardware": {"dtype": "fp8"}}).hardware
    assert fp8.activation_dtype() == DType.FP8 and fp8.kv_cache_dtype() == DType.BF16
    int4 = SimConfig.from_dict({"hardware": {"dtype": "int4", "kv_dtype": "fp8"}}).hardware
    assert int4.activation_dtype() == DType.BF16 and int4.kv_cache_dtype() == DType.FP8
    (line,) = _lines({"hardware": {"kv_dtype": "fp7"}})
    assert line.startswith("hardware.kv_dtype='fp7'")


def test_overrides_replace_yaml(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("hardware:\n  tp: 2\nscheduler:\n  kind: vllm\n  max_num_seqs: 64\n")
    c = SimConfig.from_yaml(path, {"hardware.tp": 4, "scheduler.max_num_batched_tokens": 4096})
    assert c.hardware.tp == 4
    assert c.scheduler.max_num_seqs == 64 and c.scheduler.max_num_batched_tokens == 4096
    assert c.with_overrides({"seed": 3}).seed == 3
    assert c.with_overrides({"seed": 3}).hardware.tp == 4


LLAMA_LIKE = (
    '{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 512, '
    '"intermediate_size": 1024, "num_hidden_layers": 2, "num_attention_heads": 8, '
    '"num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 2048}'
)


def test_unknown_model_is_a_field_error() -> None:
    (line,) = _lines({"model": "llama-3.1-8"})
    assert line.startswith("model='llama-3.1-8'") and "unknown model" in line


def test_relative_model_path_is_relative_to_yaml(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(LLAMA_LIKE)
    (tmp_path / "sim.yaml").write_text("model: m\n")
    assert SimConfig.from_yaml(tmp_path / "sim.yaml").model == str(tmp_path / "m")


def test_slo_spec_per_class() -> None:
    c = SimConfig.from_dict(
        {"slo": {"ttft_s": 2.0, "classes": {"b": {"tpot_s": 0.1}, "a": {"ttft_s": 0.5}}}}
    )
    assert c.slo is not None
    spec = c.slo.to_spec()
    assert [name for name, _ in spec.classes] == ["a", "b"]
    assert spec.targets_for("a") == SLOTargets(ttft_s=0.5, tpot_s=None)
    assert spec.targets_for("b") == SLOTargets(ttft_s=2.0, tpot_s=0.1)
    assert spec.targets_for("other") == SLOTargets(ttft_s=2.0, tpot_s=None)
    (line,) = _lines({"slo": {"tpot_s": 0}})
    assert line.startswith("slo.tpot_s=0")


def test_top_level_run_length_applies_to_workload() -> None:
    c = SimConfig.from_dict({"num_requests": 20, "duration_s": 5.0})
    w = c.effective_workload()
    assert (w.num_requests, w.duration_s, w.rate_per_s) == (20, 5.0, DEFAULT_RATE_PER_S)


def test_gpu_memory_utilization_in_one_place() -> None:
    c = SimConfig.from_dict({"hardware": {"gpu_memory_utilization": 0.8}})
    assert c.effective_cache().gpu_memory_utilization == 0.8
    lines = _lines(
        {"hardware": {"gpu_memory_utilization": 0.8}, "cache": {"gpu_memory_utilization": 0.7}}
    )
    assert len(lines) == 1 and "set it in one place" in lines[0]


def test_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(listing)


def test_set_dotted_creates_levels() -> None:
    data: dict = {"a": 1}
    set_dotted(data, "b.c.d", 2)
    assert data == {"a": 1, "b": {"c": {"d": 2}}}
