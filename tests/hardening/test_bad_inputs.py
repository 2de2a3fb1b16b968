"""Issue 16: every bad input of simulate, workload and perf is refused before any work, in one
line naming the field, the value and the rule, with exit code 2 (never a traceback, never a
silent exit 0). Each case below failed before the fix (a traceback, exit 0, or several lines).
"""

from __future__ import annotations

from pathlib import Path

import pytest

SIM = ["simulate", "--num-requests", "5"]

# (case, argv, parts the one error line must name)
SIMULATE_CASES = [
    ("slo-ttft-inf-json", [*SIM, "--slo-ttft", "inf", "--json"], ["--slo-ttft=inf", "finite"]),
    ("slo-ttft-p99-nan", [*SIM, "--slo-ttft-p99", "nan"], ["--slo-ttft-p99=nan"]),
    ("out-proc", [*SIM, "--out", "/proc/x"], ["--out='/proc/x'", "cannot be created"]),
    ("rate-abc", [*SIM, "--rate", "abc"], ["'--rate'", "servesim simulate --help"]),
    ("rate-1e12", [*SIM, "--rate", "1e12"], ["--rate=", "<= 1,000,000 req/s"]),
    ("rate-1e308", [*SIM, "--rate", "1e308"], ["--rate=1e+308", "<= 1,000,000 req/s"]),
    ("rate-1e-300", [*SIM, "--rate", "1e-300"], ["--rate=1e-300", ">= 1e-06"]),
    ("max-num-seqs-1e10", [*SIM, "--max-num-seqs", "10000000000"], ["--max-num-seqs=", "<= 1,0"]),
    (
        "num-requests-1e20",
        ["simulate", "--num-requests", "99999999999999999999"],
        ["--num-requests=99999999999999999999", "<= 1e+08"],
    ),
    ("duration-inf", [*SIM, "--duration", "inf"], ["--duration-s=inf", "finite"]),
    ("duration-1e-9", [*SIM, "--duration", "1e-9"], ["--duration-s=1e-09", "no request arrived"]),
    ("tp-3-one-line", [*SIM, "--tp", "3"], ["deployment cannot work: pool", "tp=3"]),
    ("tp-0", [*SIM, "--tp", "0"], ["--tp=0", ">= 1"]),
    ("gpu-memory-2", [*SIM, "--gpu-memory-utilization", "2"], ["--gpu-memory-utilization=2.0"]),
    ("replicas-1e6", [*SIM, "--replicas", "1000000"], ["--replicas=1000000", "<= 4,096"]),
    ("seed-negative", [*SIM, "--seed", "-1"], ["--seed=-1"]),
]


@pytest.mark.parametrize(
    ("case", "argv", "parts"), SIMULATE_CASES, ids=[c[0] for c in SIMULATE_CASES]
)
def test_simulate_flags_are_refused_in_one_line(
    cli, case: str, argv: list[str], parts: list[str]
) -> None:  # type: ignore[no-untyped-def]
    cli(argv).assert_one_line_error(*parts)


def _config(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


CONFIG_CASES = [
    ("yaml-tp-true", b"hardware: {tp: true}\n", ["hardware.tp=True", "not a boolean"]),
    (
        "yaml-max-num-seqs-true",
        b"scheduler: {kind: vllm, max_num_seqs: true}\n",
        ["scheduler.max_num_seqs=True", "not a boolean"],
    ),
    ("binary-file", b"\x00\x01\xff\xfe\x89PNG binary", ["not a YAML text file"]),
    ("bad-date", b"seed: 2024-13-45\n", ["not valid YAML"]),
    ("rate-1e12", b"workload: {preset: sharegpt-vidur, rate_per_s: 1.0e12}\n", ["rate_per_s"]),
]


@pytest.mark.parametrize(("case", "data", "parts"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_files_are_refused_in_one_line(
    cli, tmp_path: Path, case: str, data: bytes, parts: list[str]
) -> None:  # type: ignore[no-untyped-def]
    cli([*SIM, "--config", _config(tmp_path, "c.yaml", data)]).assert_one_line_error(*parts)


def test_several_config_problems_share_one_error_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = _config(tmp_path, "c.yaml", b"hardware: {tp: 0, pp: 0}\nnum_request: 5\n")
    cli(["simulate", "--config", path]).assert_one_line_error("hardware.tp=0", "hardware.pp=0")


def test_out_pointing_at_an_existing_file_is_refused_before_the_run(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "existing"
    target.write_text("x")
    outcome = cli([*SIM, "--out", str(target)])
    outcome.assert_one_line_error("exists and is not a folder")
    assert outcome.out == ""  # refused before the run: no summary printed


def _servesim_trace(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "t.jsonl"
    rows = [
        f'{{"arrival_s":{i},"num_prompt_tokens":5,"num_output_tokens":3{extra}}}' for i in range(3)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_trace_with_a_preset_is_refused_not_dropped(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trace = _servesim_trace(tmp_path)
    outcome = cli([*SIM, "--trace", str(trace), "--preset", "lmsys"])
    outcome.assert_one_line_error("--workload='lmsys'", "--trace")


WORKLOAD_CASES = [
    ("describe-rate-1e12", ["workload", "describe", "--rate", "1e12"], ["--rate="]),
    (
        "describe-prompt-1e12",
        [
            "workload",
            "describe",
            "--prompt-lengths",
            "1000000000000",
            "--output-lengths",
            "10",
            "--rate",
            "1",
        ],
        ["1000000000000", "<= 1e+07"],
    ),
    ("generate-out-proc", ["workload", "generate", "--out", "/proc/x.jsonl"], ["/proc/x.jsonl"]),
    ("generate-out-folder", ["workload", "generate", "--out", "/tmp"], ["is a folder"]),
]


@pytest.mark.parametrize(
    ("case", "argv", "parts"), WORKLOAD_CASES, ids=[c[0] for c in WORKLOAD_CASES]
)
def test_workload_flags_are_refused_in_one_line(
    cli, case: str, argv: list[str], parts: list[str]
) -> None:  # type: ignore[no-untyped-def]
    cli(argv).assert_one_line_error(*parts)


def test_rate_scale_beyond_its_limit_is_refused(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trace = _servesim_trace(tmp_path)
    outcome = cli(["workload", "describe", "--trace", str(trace), "--rate-scale", "1e300"])
    outcome.assert_one_line_error("--rate-scale=1e+300")


PERF = ["perf", "--model", "llama-3.1-8b"]
PERF_CASES = [
    ("prefill-0-chunks", [*PERF, "--batch", "prefill=0x2048"], ["prefill=0x2048", ">= 1"]),
    ("prefill-beyond-context", [*PERF, "--batch", "prefill=1x200000"], ["131,072-token context"]),
    ("decode-beyond-kv", [*PERF, "--batch", "decode=100000x1500"], ["KV tokens", "452,496"]),
    ("block-size-7", [*PERF, "--block-size", "7"], ["--block-size=7", "one of 1, 8, 16"]),
    ("ep-0", [*PERF, "--ep", "0"], ["--ep=0"]),
]


@pytest.mark.parametrize(("case", "argv", "parts"), PERF_CASES, ids=[c[0] for c in PERF_CASES])
def test_perf_batches_no_replica_could_hold_are_refused(
    cli, case: str, argv: list[str], parts: list[str]
) -> None:  # type: ignore[no-untyped-def]
    cli(argv).assert_one_line_error(*parts)


def test_help_shows_the_declared_ranges(cli) -> None:  # type: ignore[no-untyped-def]
    outcome = cli(["simulate", "--help"])
    assert outcome.code == 0
    text = " ".join(outcome.out.split())
    for shown in ("[1..64]", "[1..1e+08] requests", "[1e-06..1,000,000] req/s"):
        assert shown in text, shown
