"""Bad planner input is refused in one line (exit 2); the store never loses results."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from servesim.cli import app, main
from servesim.cli.plan_render import slo_label, workload_label
from servesim.core.errors import ConfigError, InfeasibleError
from servesim.planner.scenario import Scenario, SLOCriterion
from servesim.planner.store import PlanStore
from servesim.workload.config import WorkloadConfig

runner = CliRunner()
PLAN = ["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm:1", "--tp", "1", "--pp", "1"]
PLAN += ["--slo-ttft-p99", "1", "--requests-per-replica", "40", "--inline", "--quiet"]
CAPACITY = ["capacity", "--model", "llama-3.1-8b", "--num-requests", "60", "--tol", "0.3"]


def _refused(args: list[str], error: type[Exception] = ConfigError) -> str:
    """The one-line message of a refused command (``main`` prints it and exits 2)."""
    res = runner.invoke(app, args)
    assert isinstance(res.exception, error), (res.exception, res.output)
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    return str(res.exception)


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--tp", "0", ">= 1"),  # was ZeroDivisionError
        ("--pp", "0,1", ">= 1"),
        ("--slo-ttft-p99", "nan", "finite"),  # ran 206 s and printed "TTFT nan s"
        ("--slo-ttft-p99", "-1", "finite number > 0"),
        ("--target-rate", "-1", "finite rate"),
        ("--max-gpus", "0", ">= 1"),
        ("--budget", "-5", "> 0"),
        ("--workers", "0", ">= 1"),
        ("--workers", "-1", ">= 1"),
        ("--requests-per-replica", "0", ">= 1"),  # quietly became 200
        ("--top", "0", ">= 1"),
        ("--gpus", "h100-sxm", "NAME:COUNT"),  # assumed 1
        ("--gpus", "h100-sxm:1,h100-sxm:1", "listed twice"),  # ranked the same plan twice
        ("--tol", "0", "(0, 1)"),
        ("--min-attainment", "1.5", "(0, 1]"),
    ],
)
def test_bad_plan_flags_are_refused(flag: str, value: str, needle: str) -> None:
    message = _refused([*PLAN, flag, value])
    assert flag.lstrip("-").split("-")[0] in message or flag in message, message
    assert needle in message, message


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--start-rate", "-1", "> 0"),
        ("--start-rate", "nan", "finite"),
        ("--slo-ttft-p99", "-1", "> 0"),  # reported 2.1e7 req/s
        ("--tol", "0", "(0, 1)"),
        ("--tol", "2", "(0, 1)"),
        ("--min-attainment", "1.5", "(0, 1]"),
        ("--min-attainment", "0", "(0, 1]"),  # gave capacity 0 with ratio "inf"
    ],
)
def test_bad_capacity_flags_are_refused(flag: str, value: str, needle: str) -> None:
    args = [*CAPACITY, "--slo-ttft-p99", "1", flag, value]
    if flag == "--slo-ttft-p99":
        args = [*CAPACITY, flag, value]
    assert needle in _refused(args)


def test_nothing_fits_exits_2_with_the_reason() -> None:
    args = ["plan", "--model", "llama-3.1-405b", "--gpus", "l4:1", "--slo-ttft-p99", "2"]
    message = _refused([*args, "--inline", "--quiet"], InfeasibleError)
    assert "no plan of the" in message and "needs weights" in message


def test_store_refuses_a_file_that_is_not_a_servesim_store(tmp_path: Path) -> None:
    csv = tmp_path / "existing.csv"
    csv.write_text("a,b\n1,2\n", encoding="utf-8")
    for args in ([*PLAN, "--store", str(csv)], ["plan", "show", str(csv)]):
        assert "not a servesim store: a CSV/text file" in _refused(args)
    assert csv.read_text(encoding="utf-8") == "a,b\n1,2\n"  # untouched
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE sales (x INT)")
    con.close()
    with pytest.raises(ConfigError, match="tables sales"):
        PlanStore(other)


def test_damaged_store_is_one_line_and_show_is_read_only(tmp_path: Path) -> None:
    store = tmp_path / "plan.duckdb"
    ok = runner.invoke(app, [*PLAN, "--store", str(store)])
    assert ok.exit_code == 0, ok.output
    before = store.read_bytes()
    shown = runner.invoke(app, ["plan", "show", str(store)])
    assert shown.exit_code == 0 and "Ranked" in shown.output
    assert store.read_bytes() == before  # plan show changed nothing
    damaged = tmp_path / "damaged.duckdb"
    damaged.write_bytes(before[: len(before) // 3])
    with pytest.raises(ConfigError) as exc:
        PlanStore(damaged, read_only=True).searches()
    message = str(exc.value)
    assert "\n" not in message and ("damaged" in message or "cannot open" in message), message


def test_capacity_takes_scheduler_router_and_trace_flags(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    rows = [
        {"arrival_time_s": 0.5 * i, "prompt_tokens": 200 + i, "output_tokens": 20}
        for i in range(40)
    ]
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    base = ["capacity", "--model", "llama-3.1-8b", "--slo-ttft-p99", "1", "--tol", "0.3"]
    plain = runner.invoke(app, [*base, "--num-requests", "60", "--max-num-seqs", "128"])
    assert plain.exit_code == 0, plain.output  # a scheduler flag without --scheduler
    flags = ["--scheduler", "sarathi", "--chunk-size", "256", "--replicas", "2"]
    flags += ["--router", "least-outstanding-requests", "--trace", str(trace), "--json"]
    res = runner.invoke(app, [*base, *flags, "--slo-ttft-p99", "0.05"])
    assert res.exit_code == 0, res.output
    probes = json.loads(res.output)["probes"]
    assert probes and all("ratio" in p for p in probes)  # the ratios the table shows


def test_plan_header_names_a_trace_workload_and_only_the_targets_given(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"arrival_time_s": 0, "prompt_tokens": 5, "output_tokens": 2}\n')
    workload = WorkloadConfig.model_validate({"trace": {"path": str(trace)}})
    scenario = Scenario("llama-3.1-8b", workload, SLOCriterion(ttft_p99_s=2.0))
    assert workload_label(scenario) == "trace t.jsonl"  # was "on None"
    assert slo_label(scenario) == "p99 TTFT 2 s"  # was "p99 TPOT None s"


def test_plan_lists_plans_left_out_with_their_reasons() -> None:
    args = ["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm:2", "--tp", "1", "--pp", "1"]
    args += ["--slo-ttft-p99", "1", "--target-rate", "500", "--inline", "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "Not ranked" in text and "below the target rate" in text
    assert "no plan holds the SLO at 500 req/s" in text


def test_tp_that_divides_nothing_exits_2() -> None:
    args = ["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm:4", "--tp", "3", "--pp", "1"]
    message = _refused([*args, "--slo-ttft-p99", "1", "--inline", "--quiet"], InfeasibleError)
    assert "tp=3 does not divide the 32 attention heads" in message


def test_requests_per_replica_is_what_a_probe_sends(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    res = runner.invoke(app, [*PLAN, "--store", str(store)])  # 40 requests per replica
    assert res.exit_code == 0, res.output
    db = PlanStore(store, read_only=True)
    try:
        inputs = db.searches()[0][1]
    finally:
        db.close()
    assert inputs["requests_per_replica"] == inputs["min_requests"] == 40  # not floored to 200
