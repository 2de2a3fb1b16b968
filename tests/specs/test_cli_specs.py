"""``servesim models`` and ``servesim gpus``: tables, detail, --json, exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servesim.cli import app, main

runner = CliRunner()


def run_json(*args: str) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_models_table_lists_catalog() -> None:
    result = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "llama-3.1-70b" in result.stdout and "deepseek-v3" in result.stdout
    assert "327,680" in result.stdout  # KV bytes/token of the 70B models


def test_models_json_is_deterministic() -> None:
    first = runner.invoke(app, ["models", "--json"]).stdout
    assert first == runner.invoke(app, ["models", "--json"]).stdout
    rows = json.loads(first)
    by_name = {r["name"]: r for r in rows}
    assert by_name["deepseek-v3"]["kv_bytes_per_token_bf16"] == 70_272
    assert by_name["mixtral-8x7b"]["moe"]["num_experts"] == 8


def test_model_detail_by_repo_id_and_path(tmp_path: Path) -> None:
    data = run_json("models", "meta-llama/Llama-3.1-8B")
    assert isinstance(data, dict) and data["name"] == "llama-3.1-8b"
    cfg = {
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 1000,
        "max_position_embeddings": 2048,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    data = run_json("models", str(tmp_path))
    assert isinstance(data, dict) and data["num_layers"] == 2
    text = runner.invoke(app, ["models", "mixtral-8x7b"], env={"COLUMNS": "200"})
    assert text.exit_code == 0 and "num_experts=8" in text.stdout


def test_gpus_table_and_detail() -> None:
    result = runner.invoke(app, ["gpus"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "mi300x" in result.stdout
    detail = runner.invoke(app, ["gpus", "h100"], env={"COLUMNS": "200"})
    assert detail.exit_code == 0
    assert "989.5 TFLOP/s" in detail.stdout and "source:" in detail.stdout
    data = run_json("gpus", "a100")
    assert isinstance(data, dict) and data["name"] == "a100-80gb"
    assert data["peak_flops_per_s"]["bf16"] == 312e12
    assert len(run_json("gpus")) >= 15  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["models", "llama-3.1-7b"], "did you mean"),
        (["gpus", "h100-smx"], "h100-sxm"),
        (["models", "/no/such/config.json"], "no config.json"),
    ],
)
def test_unknown_names_exit_2_with_one_line(
    args: list[str], hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    flat = " ".join(err.split())  # a narrow terminal may wrap the line
    assert flat.startswith("error: ") and hint in flat, err
    assert flat.count("error:") == 1
    assert "Traceback" not in err


def test_models_finds_catalog_entries_by_hf_id() -> None:
    """Issue 15 item 8: an HF id (help: "Catalog name, HF id, or config.json path")."""
    assert run_json("models", "meta-llama/Llama-3.2-1B")["name"] == "llama-3.2-1b"  # type: ignore[index]
    shown = run_json("models", "https://huggingface.co/openai/gpt-oss-20b")
    assert shown["name"] == "gpt-oss-20b"  # type: ignore[index]
    assert shown["quantization"]["format"] == "mxfp4"  # type: ignore[index]
    assert shown["checkpoint_weight_bytes"] < shown["weight_bytes_bf16"] / 3  # type: ignore[index]


def test_hf_id_and_named_formats_in_a_config() -> None:
    from servesim.config import HardwareConfig, SimConfig
    from servesim.specs.dtypes import DType

    cfg = SimConfig(model="openai/gpt-oss-120b")
    assert cfg.model == "openai/gpt-oss-120b"
    for name, dtype, act in (("awq", DType.INT4, DType.BF16), ("w4a8", DType.W4A8, DType.FP8)):
        hw = HardwareConfig(gpu="h100-sxm", dtype=name)
        assert (hw.weight_dtype(), hw.activation_dtype()) == (dtype, act)
    assert HardwareConfig(gpu="h100-sxm", dtype="mxfp4").weight_dtype() is DType.MXFP4


def test_simulate_by_hf_id_equals_by_catalog_name() -> None:
    from servesim.api import simulate

    def run(model: str) -> dict:  # type: ignore[type-arg]
        cfg = {"model": model, "num_requests": 8, "seed": 3, "hardware": {"gpu": "l4"}}
        return simulate(cfg).summary.ttft.to_dict()

    assert run("meta-llama/Llama-3.2-1B") == run("llama-3.2-1b")
