"""vllm bench serve in and out: a small result file written here is replayed (closed loop,
max concurrency 4) and servesim's own result reads back through the same reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servesim.api import simulate
from servesim.cli import app
from servesim.core.errors import ConfigError
from servesim.validate.vllm_bench import load_vllm_bench, replay_vllm_bench

DEPLOYMENT = {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm", "tp": 1}}
SCHEMA_KEYS = {
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
    "request_throughput", "output_throughput", "total_token_throughput", "request_rate",
    "burstiness", "max_concurrency", "input_lens", "output_lens", "ttfts", "start_times",
    "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms",
    "p99_tpot_ms", "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "mean_e2el_ms",
}  # fmt: skip


def _bench_file(tmp_path: Path) -> Path:
    """A small vllm bench serve --save-result --save-detailed file (12 requests, one failed)."""
    inputs = [120, 340, 80, 512, 260, 90, 400, 150, 220, 310, 64, 128]
    outputs = [32, 64, 16, 48, 40, 24, 56, 30, 20, 44, 0, 36]
    ok = [o > 0 for o in outputs]
    raw = {
        "date": "20250101-000000",
        "backend": "vllm",
        "model_id": "meta-llama/Llama-3.1-8B-Instruct",
        "num_prompts": 12,
        "request_rate": "inf",
        "burstiness": 1.0,
        "max_concurrency": 4,
        "duration": 2.5,
        "completed": 11,
        "failed": 1,
        "request_throughput": 4.4,
        "output_throughput": 164.0,
        "mean_ttft_ms": 40.0,
        "median_ttft_ms": 35.0,
        "p99_ttft_ms": 90.0,
        "mean_tpot_ms": 7.5,
        "mean_itl_ms": 7.4,
        "input_lens": inputs,
        "output_lens": outputs,
        "ttfts": [0.04 if good else 0.0 for good in ok],
        "itls": [[0.0074] * (o - 1) if o else [] for o in outputs],
        "errors": ["" if good else "timeout" for good in ok],
    }
    path = tmp_path / "vllm-infqps-concurrency4.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_replay_closed_loop_and_schema_round_trip(tmp_path: Path) -> None:
    run = load_vllm_bench(_bench_file(tmp_path))
    assert run.max_concurrency == 4 and math.isinf(run.request_rate)
    assert len(run.input_lens) == 11 and run.num_failed == 1
    assert run.measured["mean_ttft_ms"] == 40.0 and "median_itl_ms" in run.measured  # derived
    comparison = replay_vllm_bench(run, DEPLOYMENT)
    predicted = comparison.predicted
    assert set(predicted) >= SCHEMA_KEYS
    assert predicted["max_concurrency"] == 4 and predicted["request_rate"] == "inf"
    assert predicted["completed"] == 11 and predicted["input_lens"] == list(run.input_lens)
    assert predicted["output_lens"] == list(run.output_lens)
    metrics = {row[0] for row in comparison.rows()}
    assert {"mean_ttft_ms", "mean_tpot_ms", "request_throughput", "duration"} <= metrics
    # servesim's output, written as a file, reads back and replays to the same figures.
    out = tmp_path / "servesim.json"
    out.write_text(json.dumps(predicted), encoding="utf-8")
    again = load_vllm_bench(out)
    assert again.input_lens == run.input_lens and again.output_lens == run.output_lens
    assert again.max_concurrency == 4 and again.measured["completed"] == 11
    replayed = replay_vllm_bench(again, DEPLOYMENT).predicted
    assert replayed["mean_ttft_ms"] == pytest.approx(predicted["mean_ttft_ms"])
    assert replayed["duration"] == pytest.approx(predicted["duration"])


def test_simulate_out_writes_vllm_bench_json(tmp_path: Path) -> None:
    result = simulate(
        {
            "num_requests": 10,
            "workload": {
                "arrival": {"kind": "gamma", "rate_per_s": 5.0, "cv": 0.5},
                "lengths": {"kind": "random", "input_len": 128, "output_len": 16},
                "client": {"max_concurrency": 3},
            },
        }
    )
    data = result.to_vllm_bench()
    assert data["request_rate"] == 5.0 and data["burstiness"] == pytest.approx(4.0)
    assert data["max_concurrency"] == 3 and data["completed"] == 10
    assert data["mean_ttft_ms"] == pytest.approx(result.summary.ttft.mean_s * 1e3)


def test_file_without_per_request_lists_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "agg.json"
    path.write_text(json.dumps({"mean_ttft_ms": 1.0, "request_rate": "inf"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="save-detailed"):
        load_vllm_bench(path)


def test_cli_validate_vllm_bench(tmp_path: Path) -> None:
    path = _bench_file(tmp_path)
    args = ["validate", "--vllm-bench", str(path), "--model", "llama-3.1-8b"]
    args += ["--gpu", "h100-sxm", "--tp", "1", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["max_concurrency"] == 4 and data["num_replayed"] == 11
    ttft = next(m for m in data["metrics"] if m["metric"] == "mean_ttft_ms")
    assert ttft["measured"] == 40.0 and ttft["predicted"] > 0
