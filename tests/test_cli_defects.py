"""Issue 15's CLI defects, one test (or a few) each; every one failed before its fix.

1 scheduler flags without --scheduler; 2 --out on the plain install; 4 simulate's workload
controls; 5 the summary says what ran; 7 one name per option, kebab-case values, --help
that never truncates; 9 validate from another directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from servesim.cli import main
from servesim.cli.simulate import build_config
from servesim.cli.simulate_render import settings_rows

REPO = Path(__file__).resolve().parents[1]
TINY = ["--num-requests", "12", "--rate", "6"]
NO_WORKLOAD: dict[str, Any] = {
    "preset": None, "arrival": None, "rate": None, "cv": None, "trace": None,
    "trace_format": None,
}  # fmt: skip


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0)


# ---- 1: scheduler flags without --scheduler ---------------------------------------------
@pytest.mark.parametrize(
    ("flag", "field", "value"),
    [
        (["--max-num-seqs", "128"], "max_num_seqs", 128),
        (["--max-num-batched-tokens", "1024"], "max_num_batched_tokens", 1024),
        (["--no-chunked-prefill"], "enable_chunked_prefill", False),
    ],
)
def test_scheduler_flags_alone_refine_the_default_scheduler(
    flag: list[str], field: str, value: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(["simulate", *flag, *TINY]) == 0
    assert "Unable to extract tag" not in capsys.readouterr().err
    flags = {"scheduler.kind": None, f"scheduler.{field}": value}
    cfg = build_config(None, {k: v for k, v in flags.items() if v is not None}, NO_WORKLOAD)
    assert cfg.scheduler.kind == "vllm" and getattr(cfg.scheduler, field) == value


def test_scheduler_flag_keeps_the_kind_of_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("scheduler: {kind: sarathi, chunk_size: 256}\n")
    cfg = build_config(path, {"scheduler.max_num_seqs": 64}, NO_WORKLOAD)
    assert cfg.scheduler.kind == "sarathi" and cfg.scheduler.max_num_seqs == 64


def test_chunk_size_for_vllm_says_which_schedulers_take_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _exit_code(["simulate", "--chunk-size", "256", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --chunk-size=256: applies to sarathi, priority and fair")


# ---- 2: --out on the plain install -------------------------------------------------------
def _hide_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


def test_out_without_pyarrow_writes_csv_and_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_pyarrow(monkeypatch)
    assert _exit_code(["simulate", *TINY, "--out", str(tmp_path)]) == 0
    for name in ("summary.json", "requests.csv", "iterations.csv", "report.html"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "requests.parquet").exists()


def test_parquet_without_pyarrow_fails_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide_pyarrow(monkeypatch)

    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the simulation ran before the writers were checked")

    monkeypatch.setattr("servesim.cli.simulate.simulate", no_run)
    argv = ["simulate", *TINY, "--out", str(tmp_path), "--format", "parquet"]
    assert _exit_code(argv) == 2
    assert "pip install 'servesim[parquet]'" in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()


def test_out_that_is_a_file_fails_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "taken"
    target.write_text("x")
    assert _exit_code(["simulate", *TINY, "--out", str(target)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_pandas_is_declared() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(dep.startswith("pandas") for dep in extras["pandas"])
    assert any(dep.startswith("plotly") for dep in project["dependencies"])


# ---- 4: simulate has the workload controls of workload describe ------------------------
def test_simulate_takes_length_distributions(tmp_path: Path) -> None:
    out = tmp_path / "o"
    argv = ["simulate", *TINY, "--prompt-lengths", "100", "--output-lengths", "20"]
    assert _exit_code([*argv, "--out", str(out), "--format", "csv"]) == 0
    cfg = build_config(None, {}, {**NO_WORKLOAD, "prompt_lengths": "100", "output_lengths": "20"})
    assert cfg.workload.lengths is not None and cfg.workload.lengths.kind == "independent"
    rows = (out / "requests.csv").read_text().splitlines()
    header = rows[0].split(",")
    col = header.index("num_prompt_tokens"), header.index("num_output_tokens")
    assert {tuple(r.split(",")[i] for i in col) for r in rows[1:]} == {("100", "20")}


def test_simulate_takes_turns_group_size_and_rate_scale(tmp_path: Path) -> None:
    cfg = build_config(None, {}, {**NO_WORKLOAD, "turns": 3.0, "group_size": 2})
    assert cfg.workload.sessions is not None and cfg.workload.sessions.mean_turns == 3.0
    assert cfg.workload.groups is not None and cfg.workload.groups.group_size == 2
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,num_prompt_tokens,num_output_tokens\n0,10,5\n1,10,5\n")
    workload = {**NO_WORKLOAD, "trace": trace, "rate_scale": 4.0}
    cfg = build_config(None, {}, workload)
    assert cfg.workload.trace is not None and cfg.workload.trace.rate_scale == 4.0


def test_rate_scale_without_a_trace_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["simulate", *TINY, "--rate-scale", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: --rate-scale=2.0: applies to --trace")


# ---- 5: the summary says what ran ---------------------------------------------------------
def _settings(argv: list[str]) -> dict[str, str]:
    from servesim.cli.simulate import _run

    flags = {k: v for k, v in (a.split("=", 1) for a in argv)}
    cfg = build_config(None, flags, NO_WORKLOAD)
    return dict(settings_rows(_run(cfg, show_progress=False)))


def test_summary_names_v1_rules_and_automatic_chunked_prefill() -> None:
    v1 = _settings(["scheduler.kind=vllm", "scheduler.version=v1", "num_requests=5"])
    assert "vLLM V1 rules" in v1["scheduler"] and "budget 8,192 tokens" in v1["scheduler"]
    v0 = _settings(["num_requests=5"])  # Llama-3.1-8B: 131k context > 32k
    assert "chunked prefill on (automatic: max_model_len 131,072 > 32,768" in v0["scheduler"]
    assert "budget 512 tokens (default)" in v0["scheduler"]


def test_summary_names_a_user_scheduler_class(tmp_path: Path) -> None:
    plugin = tmp_path / "fifo_plugin.py"
    plugin.write_text(
        "from servesim.engine import ReplicaScheduler\n"
        "class PlainFCFS(ReplicaScheduler):\n"
        "    def schedule(self, now, state):\n"
        "        return self.decodes_first(now, state, allow_swap=False, "
        "admit_after_preempt=False)\n"
    )
    rows = _settings(["scheduler.kind=custom", f"scheduler.path={plugin}:PlainFCFS",
                      "num_requests=5"])  # fmt: skip
    assert rows["scheduler"].startswith("PlainFCFS from ")


def test_deployment_row_names_the_router(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", *TINY, "--replicas", "2", "--router", "least-outstanding-requests"]
    assert _exit_code(argv) == 0
    out = capsys.readouterr().out
    assert "router least-outstanding-requests" in out


def test_replicas_help_does_not_claim_round_robin() -> None:
    text = _help(["simulate"], columns=200)
    line = next(line for line in text.splitlines() if "--replicas" in line)
    assert "round robin" not in line


# ---- 7: names ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("new", "old"),
    [
        (["--workload", "azure-code"], ["--preset", "azure-code"]),
        (["--duration-s", "3"], ["--duration", "3"]),
        (["--router", "least-kv-usage"], ["--router", "least_kv_usage"]),
    ],
)
def test_new_names_and_old_spellings_give_the_same_run(
    new: list[str], old: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["simulate", *TINY, "--replicas", "2", "--json"]
    assert _exit_code([*base, *new]) == 0
    first = capsys.readouterr().out
    assert _exit_code([*base, *old]) == 0
    assert capsys.readouterr().out == first


def test_slo_flags_are_named_as_in_capacity(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["simulate", *TINY, "--slo-ttft-p99", "1", "--json"]) == 0
    import json

    slo = json.loads(capsys.readouterr().out)["config"]["slo"]
    assert slo["ttft_s"] == 1.0 and slo["attainment_target"] == 0.99  # p99: 99% within
    assert _exit_code(["simulate", *TINY, "--slo-ttft-p99", "1", "--min-attainment", "0.8",
                       "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["config"]["slo"]["attainment_target"] == 0.8


def test_workload_describe_takes_the_same_names(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["workload", "describe", "--num-requests", "50", "--json"]
    assert _exit_code([*argv, "--workload", "azure-code", "--duration", "100"]) == 0
    first = capsys.readouterr().out
    assert _exit_code([*argv, "--preset", "azure-code", "--duration-s", "100"]) == 0
    assert capsys.readouterr().out == first


def _help(command: list[str], columns: int) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    code = "from servesim.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, *command, "--help"],
        capture_output=True, text=True, env=env, check=True, cwd=REPO,
    )  # fmt: skip
    return proc.stdout


def _commands() -> list[list[str]]:
    import typer

    from servesim.cli import app

    root = typer.main.get_command(app)
    out = []
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        out += [[name, sub] for sub in subs] if subs else [[name]]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 100])
def test_help_never_truncates(columns: int) -> None:
    for command in _commands():
        text = _help(command, columns)
        assert "…" not in text, (command, columns)
        assert all(len(line) <= columns for line in text.splitlines()), (command, columns)


def test_help_at_80_columns_shows_long_names_whole() -> None:
    text = _help(["simulate"], 80)
    assert "--gpu-memory-utilization" in text and "path/to/file.py:Class" in text


# ---- the quick start: --out says where the report is ------------------------------------
def test_quick_start_out_names_the_html_report_on_the_plain_install(tmp_path: Path) -> None:
    # The plain install: no pyarrow, no matplotlib (plotly is a core dependency).
    code = (
        "import sys\n"
        "for m in ('pyarrow', 'pyarrow.parquet', 'matplotlib', 'matplotlib.pyplot'):\n"
        "    sys.modules[m] = None\n"
        "from servesim.cli import main\n"
        f"main(['simulate', '--num-requests', '20', '--out', {str(tmp_path / 'out')!r}])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    report = tmp_path / "out" / "report.html"
    assert last.startswith(f"HTML report: {report.resolve()}") and report.is_file()
    assert (tmp_path / "out" / "requests.csv").is_file()
    assert "skipped latency.png: matplotlib is not installed" in proc.stderr


# ---- 9: validate from another directory --------------------------------------------------
def test_validate_without_data_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("servesim.cli.validate.shared_data_dir", lambda: None)
    monkeypatch.chdir(tmp_path)
    assert _exit_code(["validate"]) == 2
    err = capsys.readouterr().err
    assert "None" not in err and "give --data DIR" in err


def test_readme_links_stay_inside_the_repository() -> None:
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)]+)\)", text)
    # the project's own docs, not files outside the clone
    for page in ("architecture", "commands", "metrics", "report", "fidelity"):
        assert f"docs/{page}.md" in targets, page
    for target in targets:
        if target.startswith(("http://", "https://", "#")):
            continue
        resolved = (REPO / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(REPO), target
        assert resolved.exists(), target
