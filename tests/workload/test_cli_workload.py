"""``servesim workload list|describe``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servesim.cli import app, main
from servesim.core.rng import RandomStreams
from servesim.workload import WorkloadConfig, load_trace

runner = CliRunner()


def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def test_list_shows_presets() -> None:
    result = runner.invoke(app, ["workload", "list"])
    assert result.exit_code == 0, result.output
    for name in (
        "sharegpt-vidur",
        "sharegpt-vllm-bench",
        "azure-conv",
        "azure-code",
        "arxiv-summarization",
        "creation",
    ):
        assert name in result.output


def test_list_json() -> None:
    result = runner.invoke(app, ["workload", "list", "--json"])
    rows = json.loads(result.output)
    assert {r["name"] for r in rows} >= {"sharegpt-vidur", "creation"}
    assert all("fit_quality" in r and r["rate_per_s"] > 0 for r in rows)


def test_describe_default_is_sharegpt_1000() -> None:
    result = runner.invoke(app, ["workload", "describe"])
    assert result.exit_code == 0, result.output
    assert "sharegpt-vidur" in result.output and "1,000 requests" in result.output
    assert "prompt tokens" in result.output


def test_describe_json_deterministic() -> None:
    args = ["workload", "describe", "--json", "--num-requests", "300", "--seed", "3"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0
    data = json.loads(first.output)
    assert data["num_requests"] == 300 and data["name"] == "sharegpt-vidur"
    assert runner.invoke(app, args).output == first.output


def test_describe_synthetic_options() -> None:
    result = runner.invoke(
        app,
        [
            "workload",
            "describe",
            "--arrival",
            "gamma",
            "--rate",
            "5",
            "--cv",
            "2",
            "--prompt-lengths",
            "512",
            "--output-lengths",
            "uniform:min_tokens=10,max_tokens=20",
            "--num-requests",
            "2000",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["prompt"]["p50"] == 512 and 10 <= data["output"]["p50"] <= 20
    assert data["rate_per_s"] == pytest.approx(5, rel=0.15)


def test_describe_trace(shared_data: Path) -> None:
    path = shared_data / "traces/mooncake/conversation_trace.jsonl"
    result = runner.invoke(app, ["workload", "describe", "--trace", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["num_requests"] == 12031
    assert data["prefix_reuse_ratio"] == pytest.approx(0.366, abs=0.001)


def test_describe_trace_skip_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,5,5\n1,x,5\n2,5,5\n")
    code, out, err = _run_main(["workload", "describe", "--trace", str(path)], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0
    assert err.startswith(f"error: {path}:3 column 'num_prefill_tokens': not a number")
    assert "Traceback" not in err
    code, out, _ = _run_main(
        ["workload", "describe", "--trace", str(path), "--skip-bad-rows", "--json"], capsys
    )
    assert code == 0
    data = json.loads(out)
    assert data["num_requests"] == 2 and data["num_skipped_rows"] == 1
    assert data["skipped_by_problem"] == {"not a number": 1}
    code, out, err = _run_main(
        ["workload", "describe", "--trace", str(path), "--skip-bad-rows"], capsys
    )
    assert code == 0 and err == ""
    assert "skipped 1 rows: not a number" in out
    assert f"{path}:3 column 'num_prefill_tokens'" in out.replace("\n", "")


def test_bad_inputs_exit_2_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for argv in (
        ["workload", "describe", "--trace", str(empty)],
        ["workload", "describe", "--trace", str(tmp_path / "nope.csv")],
        ["workload", "describe", "--preset", "sharegtp"],
        ["workload", "describe", "--arrival", "poisson"],
        ["workload", "describe", "--arrival", "poisson", "--rate", "-1"],
        ["workload", "describe", "--prompt-lengths", "bogus:x=1", "--output-lengths", "5"],
        ["workload", "describe", "--arrival", "onoff", "--rate", "3"],
        ["workload", "describe", "--arrival", "poisson", "--rate", "3", "--cv", "2"],
        ["workload", "describe", "--arrival", "poisson", "--rate", "3"],  # no lengths
        ["workload", "describe", "--config", str(tmp_path / "missing.yaml")],
    ):
        code, _out, err = _run_main(argv, capsys)
        assert code == 2, argv
        assert err.startswith("error: ") and "Traceback" not in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, (argv, err)


def test_describe_config_file_and_session_options(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "workload:\n"
        "  arrival: {kind: time_varying, times_s: [0, 30, 60], rates_per_s: [1, 10, 1],"
        " period_s: 90}\n"
        "  lengths: {kind: preset, name: azure-conv}\n"
        "  duration_s: 900\n"
    )
    result = runner.invoke(app, ["workload", "describe", "--config", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # (165 + 165 + 30) expected arrivals per 90 s period: 4 req/s.
    assert data["num_requests"] == pytest.approx(3600, rel=0.1)
    result = runner.invoke(
        app, ["workload", "describe", "--preset", "lmsys", "--turns", "3", "--json"]
    )
    data = json.loads(result.output)
    assert data["num_sessions"] > 0 and data["prefix_reuse_ratio"] > 0.3


def test_describe_lengths_from_trace_file_and_rate_on_trace(shared_data: Path) -> None:
    arxiv = shared_data / "traces/vidur/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"
    args = ["workload", "describe", "--arrival", "poisson", "--rate", "2", "--lengths", str(arxiv)]
    data = json.loads(runner.invoke(app, [*args, "--num-requests", "3000", "--json"]).output)
    assert data["prompt"]["p50"] == pytest.approx(2730, rel=0.05)
    conv = shared_data / "traces/vidur/splitwise_conv.csv"
    result = runner.invoke(
        app, ["workload", "describe", "--trace", str(conv), "--rate", "20", "--json"]
    )
    data = json.loads(result.output)
    assert data["num_requests"] == 19366
    assert data["rate_per_s"] == pytest.approx(20.0)
    result = runner.invoke(
        app, ["workload", "describe", "--trace", str(arxiv), "--rate", "5", "--json"]
    )
    data = json.loads(result.output)
    assert data["num_requests"] == 28257 and data["rate_per_s"] == pytest.approx(5, rel=0.05)


def test_generate_writes_a_trace_that_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "w.jsonl"
    args = [
        "workload",
        "generate",
        "--out",
        str(out),
        "--preset",
        "lmsys",
        "--turns",
        "3",
        "--num-requests",
        "300",
        "--seed",
        "5",
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["num_requests"] == 300
    expected = list(
        WorkloadConfig(preset="lmsys", sessions={"mean_turns": 3}, num_requests=300).build(
            RandomStreams(5)
        )
    )
    assert list(load_trace(out, normalize_start=False)) == expected
    described = runner.invoke(app, ["workload", "describe", "--trace", str(out), "--json"])
    assert json.loads(described.output)["num_sessions"] == len({r.session_id for r in expected})


def test_generate_needs_out() -> None:
    result = runner.invoke(app, ["workload", "generate"])
    assert result.exit_code == 2
