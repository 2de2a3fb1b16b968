"""CLI: ``servesim perf`` and ``servesim calibration``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from servesim.cli import app
from servesim.cli.perf import parse_batch
from servesim.core.errors import ConfigError
from servesim.perf.types import BatchShape

runner = CliRunner()


def test_parse_batch() -> None:
    shape = parse_batch("prefill=1x2048, decode=64x1500,prefill=2x512+1024")
    assert shape == BatchShape.from_lists([(2048, 0), (512, 1024), (512, 1024)], [1500] * 64)
    with pytest.raises(ConfigError, match="batch"):
        parse_batch("prefill=2048")


def test_perf_table() -> None:
    result = runner.invoke(
        app,
        [
            "perf",
            "--model",
            "llama-3.1-70b",
            "--gpu",
            "h100-sxm",
            "--tp",
            "4",
            "--batch",
            "prefill=1x2048,decode=64x1500",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    for text in (
        "mlp_up_gate",
        "attn_decode",
        "all_reduce_attn",
        "iteration total",
        "num_kv_blocks",
    ):
        assert text in result.output


def test_perf_json_fields() -> None:
    result = runner.invoke(
        app,
        [
            "perf",
            "--model",
            "llama-3.1-8b",
            "--gpu",
            "h100-sxm",
            "--batch",
            "decode=8x1000",
            "--dtype",
            "int4",
            "--kv-dtype",
            "fp8",
            "--gpu-memory-utilization",
            "0.8",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["calibrated"] is True
    assert data["weight_dtype"] == "int4" and data["kv_dtype"] == "fp8"
    assert data["total_s"] == pytest.approx(sum(op["time_s"] for op in data["ops"]))
    assert data["memory"]["usable_bytes"] == int(data["memory"]["gpu_memory_bytes"] * 0.8)


def test_perf_uncalibrated_gpu_flagged() -> None:
    result = runner.invoke(app, ["perf", "--model", "llama-3.1-8b", "--gpu", "l40s", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["calibrated"] is False


def test_perf_errors_exit_2() -> None:
    base = [sys.executable, "-c", "from servesim.cli import main; main()", "perf"]
    cases = [
        (["--model", "llama-3.1-70b", "--gpu", "a100-80gb"], "usable"),
        (["--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "3"], "tp=3"),
        (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--batch", "decode=x"], "batch"),
    ]
    for args, text in cases:
        proc = subprocess.run([*base, *args], capture_output=True, text=True, check=False)
        assert proc.returncode == 2
        assert text in proc.stderr and "Traceback" not in proc.stderr


def test_calibration_report() -> None:
    result = runner.invoke(app, ["calibration", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["legacy_heldout_mape_by_gpu"]["h100"]["gemm"] < 10
    assert "heldout" in data["kernel_report"] or data["kernel_report"] == {}
