"""``servesim simulate``: flags, config files, errors (exit 2, one line, no traceback), outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servesim.cli import main
from servesim.cli.simulate import build_config

NO_WORKLOAD = {
    "preset": None,
    "arrival": None,
    "rate": None,
    "cv": None,
    "trace": None,
    "trace_format": None,
}


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["simulate", "--tp", "0"], "error: --tp=0: must be >= 1 and <= 64"),
        (["simulate", "--rate", "-2"], "error: --rate=-2.0: must be >= 1e-06"),
        (["simulate", "--gpu", "h100-smx"], "error: hardware.gpu='h100-smx'"),
        (["simulate", "--scheduler", "fifo"], "error: scheduler="),
        (["simulate", "--config", "missing.yaml"], "error: config='missing.yaml': file not found"),
        (["simulate", "--format", "xlsx"], "error: --format='xlsx': must be auto, parquet or csv"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected), err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_key_in_yaml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("hardware:\n  gpus: h100-sxm\n")
    assert _exit_code(["simulate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: hardware.gpus='h100-sxm': Extra inputs are not permitted")


def test_flags_override_yaml(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(
        "hardware: {tp: 2, gpu: a100-80gb}\nscheduler: {kind: vllm, max_num_seqs: 64}\n"
        "workload: {preset: lmsys, rate_per_s: 2.0}\nseed: 5\n"
    )
    flags = {"hardware.tp": 4, "seed": None, "scheduler.max_num_seqs": 32}
    cfg = build_config(path, flags, {**NO_WORKLOAD, "rate": 3.0})
    assert cfg.hardware.tp == 4 and cfg.hardware.gpu == "a100-80gb"
    assert cfg.seed == 5
    assert cfg.scheduler.max_num_seqs == 32
    assert cfg.workload.preset == "lmsys" and cfg.workload.rate_per_s == 3.0


def test_arrival_flags_build_an_arrival_process() -> None:
    cfg = build_config(None, {}, {**NO_WORKLOAD, "arrival": "gamma", "rate": 4.0, "cv": 2.0})
    assert cfg.workload.arrival is not None
    assert cfg.workload.arrival.kind == "gamma"
    assert (cfg.workload.arrival.rate_per_s, cfg.workload.arrival.cv) == (4.0, 2.0)
    assert cfg.workload.rate_per_s is None
    # --cv alone implies gamma
    cfg = build_config(None, {}, {**NO_WORKLOAD, "rate": 4.0, "cv": 3.0})
    assert cfg.workload.arrival is not None and cfg.workload.arrival.kind == "gamma"


def test_arrival_without_rate_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["simulate", "--arrival", "poisson"]) == 2
    assert "--rate" in capsys.readouterr().err


def test_trace_flag_replaces_preset(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("x\n")
    cfg = build_config(None, {}, {**NO_WORKLOAD, "trace": trace, "trace_format": "generic-csv"})
    assert cfg.workload.trace is not None and cfg.workload.preset is None
    assert cfg.workload.trace.path == trace


def test_custom_scheduler_path() -> None:
    from servesim.cli.simulate import _scheduler_overrides

    assert _scheduler_overrides("my.py:Sched") == {
        "scheduler.kind": "custom",
        "scheduler.path": "my.py:Sched",
    }
    assert _scheduler_overrides("Sarathi") == {"scheduler.kind": "sarathi"}


def test_small_run_prints_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code_or_zero(["simulate", "--num-requests", "20", "--slo-ttft", "1"]) == 0
    out = capsys.readouterr().out
    for word in ("TTFT", "TPOT", "ITL", "E2E", "throughput", "SLO", "energy"):
        assert word in out


def test_json_and_out_dir_are_deterministic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--num-requests", "20", "--rate", "5", "--seed", "3", "--json"]
    assert _exit_code_or_zero([*argv, "--out", str(tmp_path / "a"), "--format", "csv"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["summary"]["num_requests"] == 20
    assert _exit_code_or_zero([*argv, "--out", str(tmp_path / "b"), "--format", "csv"]) == 0
    first = (tmp_path / "a" / "summary.json").read_bytes()
    assert first == (tmp_path / "b" / "summary.json").read_bytes()
    assert (tmp_path / "a" / "requests.csv").read_bytes() == (
        tmp_path / "b" / "requests.csv"
    ).read_bytes()


def test_out_writes_parquet(tmp_path: Path) -> None:
    assert _exit_code_or_zero(["simulate", "--num-requests", "10", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.json").is_file()
    assert (tmp_path / "requests.parquet").is_file()


def test_model_path_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_api import LLAMA_LIKE

    (tmp_path / "config.json").write_text(json.dumps(LLAMA_LIKE))
    argv = ["simulate", "--model", str(tmp_path / "config.json"), "--num-requests", "10"]
    assert _exit_code_or_zero([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["num_completed"] == 10


def test_no_arguments_runs_the_default_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code_or_zero(["simulate"]) == 0
    out = capsys.readouterr().out
    assert "llama-3.1-8b" in out and "h100-sxm" in out
    assert "1,000 completed of 1,000" in out


def _exit_code_or_zero(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_progress_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code_or_zero(["simulate", "--num-requests", "10", "--progress"]) == 0
    assert "TTFT" in capsys.readouterr().out


def test_real_trace_replay(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = shared_data / "traces" / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    argv = ["simulate", "--trace", str(trace), "--num-requests", "100", "--json"]
    assert _exit_code_or_zero(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["workload"]["name"] == trace.name
    assert data["summary"]["num_requests"] == 100


def test_prefix_caching_on_a_shared_prefix_trace(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = shared_data / "traces" / "mooncake" / "conversation_trace.jsonl"
    argv = ["simulate", "--trace", str(trace), "--num-requests", "200", "--json"]
    assert _exit_code_or_zero([*argv, "--enable-prefix-caching"]) == 0
    hit_rate = json.loads(capsys.readouterr().out)["summary"]["prefix_cache_hit_rate"]
    assert _exit_code_or_zero(argv) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["prefix_cache_hit_rate"] == 0.0
    assert hit_rate > 0.0


def test_summary_json_identical_across_processes(tmp_path: Path) -> None:
    """Separate interpreters with different hash seeds write byte-identical summary.json."""
    import os
    import subprocess
    import sys

    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        argv = ["simulate", "--num-requests", "50", "--rate", "6", "--out", str(out)]
        code = f"from servesim.cli import main; main({argv!r})"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append((out / "summary.json").read_bytes())
    assert outputs[0] == outputs[1]


def test_skip_bad_rows_counts_what_it_skipped(tmp_path: Path) -> None:
    """A malformed row stops the run with file:line:column, or is skipped and counted."""
    trace = tmp_path / "azure.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.98,10,5\n"
        "2023-11-16 18:17:04.00,abc,5\n"
        "2023-11-16 18:17:05.00,20,6\n"
    )
    failed = subprocess.run(
        [sys.executable, "-m", "servesim.cli", "simulate", "--trace", str(trace)],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 2
    assert f"{trace}:3 column 'ContextTokens'" in failed.stderr
    assert "Traceback" not in failed.stderr
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "servesim.cli",
            "simulate",
            "--trace",
            str(trace),
            "--skip-bad-rows",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "2 completed of 2" in ok.stdout
    assert "trace rows skipped: 1" in ok.stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["simulate", "--max-concurrency", "0"], "error: --max-concurrency=0: must be >= 1"),
        (["simulate", "--request-rate", "2", "--burstiness", "0"], "error: --burstiness=0.0"),
        (["simulate", "--request-rate", "2", "--burstiness", "-1"], "must be > 0"),
        (["simulate", "--request-rate", "0"], "error: --request-rate='0': must be > 0 or inf"),
        (["simulate", "--request-rate", "fast"], "error: --request-rate='fast'"),
        (["simulate", "--request-rate", "inf", "--burstiness", "2"], "needs a finite"),
        (["simulate", "--burstiness", "2"], "needs --request-rate"),
        (["simulate", "--num-warmups", "-1"], "error: --num-warmups=-1: must be >= 0"),
        (["simulate", "--json-format", "csv"], "error: --json-format='csv'"),
        (["simulate", "--dataset", "random", "--range-ratio", "1.5"], "range_ratio"),
    ],
)
def test_bad_client_values_exit_2_with_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_vllm_bench_json_format_and_out_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--request-rate", "inf", "--max-concurrency", "4", "--num-warmups", "1"]
    argv += ["--dataset", "random", "--input-len", "200", "--output-len", "20"]
    argv += ["--num-requests", "12", "--json", "--json-format", "vllm-bench"]
    argv += ["--out", str(tmp_path), "--format", "csv"]
    assert _exit_code(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "vllm_bench.json").read_text(encoding="utf-8"))
    assert printed == written
    assert printed["max_concurrency"] == 4 and printed["request_rate"] == "inf"
    assert printed["completed"] == 12 and len(printed["input_lens"]) == 12
