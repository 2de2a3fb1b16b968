"""``servesim validate``: tables and JSON show every plan and stage, subsets, missing replicas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import servesim.cli.validate as validate_cli
from servesim.cli import main
from servesim.validate import (
    MeasuredPlan,
    MeasuredRun,
    MeasuredStage,
    PlanComparison,
    RunComparison,
    ServedMeans,
    StageComparison,
)
from servesim.workload.shared_prefix import SharedPrefixOptions

_MEASURED = ServedMeans(
    num_requests=4, num_decode_gaps=36, mean_ttft_s=0.1, mean_itl_s=0.02, mean_e2e_s=0.28
)
_PREDICTED = ServedMeans(
    num_requests=4, num_decode_gaps=36, mean_ttft_s=0.11, mean_itl_s=0.02, mean_e2e_s=0.28
)


def _run(name: str, rank: int) -> MeasuredRun:
    return MeasuredRun(
        name=name,
        workload="fake",
        rate_req_per_s=0.5,
        tp=2,
        num_requests=4,
        served_trace=Path("absent.jsonl"),
        gpu_memory_utilization=0.9,
        max_model_len=24272,
        use_custom_all_reduce=False,
        measured_mean_ttft_s=0.1,
        measured_mean_itl_s=0.02,
        measured_mean_e2e_s=0.28,
        num_output_tokens=40,
        dp_rank=rank,
    )


def _comparison(plan: str, dp: int, ranks: list[int]) -> PlanComparison:
    name = f"fake_0.5_{plan}"
    runs = tuple(_run(name if dp == 1 else f"{name}_r{r}", r) for r in ranks)
    measured_plan = MeasuredPlan(
        name=name,
        workload="fake",
        rate_req_per_s=0.5,
        plan=plan,
        tp=2,
        dp=dp,
        replicas=runs,
        measured=_MEASURED,
        note="MISSING replica(s)" if len(ranks) < dp else "",
    )
    return PlanComparison(measured_plan, tuple(RunComparison(r, _PREDICTED) for r in runs))


def _run_cli(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code in (0, None)


@pytest.fixture
def fake_apex(monkeypatch: pytest.MonkeyPatch) -> None:
    comparisons = [_comparison("2TP", 1, [0]), _comparison("4DP2TP", 4, [1, 2, 3])]
    monkeypatch.setattr(validate_cli, "validate_apex", lambda data_dir: comparisons)


def test_json_lists_every_plan_with_replicas_and_subset_mape(
    fake_apex: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run_cli(["validate", "--data", str(tmp_path), "--json", "--dataset", "apex"])
    output = json.loads(capsys.readouterr().out)
    assert set(output) == {"apex"}
    apex = output["apex"]
    assert [p["name"] for p in apex["plans"]] == ["fake_0.5_2TP", "fake_0.5_4DP2TP"]
    dp_plan = apex["plans"][1]
    assert dp_plan["num_missing_replicas"] == 1
    assert [r["dp_rank"] for r in dp_plan["replicas"]] == [1, 2, 3]
    assert dp_plan["predicted"]["num_requests"] == 12
    mape = apex["mape"]
    assert mape["consistent_plans"]["ttft"] == pytest.approx(0.1)
    assert mape["consistent_single_server"]["ttft"] == pytest.approx(0.1)
    assert mape["consistent_data_parallel"]["itl"] == pytest.approx(0.0)


def test_table_flags_missing_replicas(
    fake_apex: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run_cli(["validate", "--data", str(tmp_path), "--dataset", "apex"])
    out = capsys.readouterr().out
    assert "fake_0.5_4DP2TP" in out and "3/4 MISSING" in out
    assert "single-server" in out and "data-parallel" in out
    assert "present replicas only" in out


def _stage(name: str, overloaded: bool) -> MeasuredStage:
    return MeasuredStage(
        name=name,
        model="llama-2-7b",
        tp=1,
        dtype="fp16",
        max_num_seqs=128,
        max_num_batched_tokens=2048,
        max_model_len=4096,
        profile="general",
        stage=0,
        rate_req_per_s=5.0,
        duration_s=200.0,
        prompts=SharedPrefixOptions(10, 10, 100, 400, 11),
        num_success=1000,
        num_failed=0,
        measured_mean_ttft_s=0.05,
        measured_tpot_s=0.01,
        measured_mean_e2e_s=0.15,
        is_overloaded=overloaded,
    )


@pytest.fixture
def fake_blis(monkeypatch: pytest.MonkeyPatch) -> None:
    comparisons = [
        StageComparison(_stage("fake_s0", False), 1000, 1000, 0.1, 0.01, 0.2, 0.9),
        StageComparison(_stage("fake_s1", True), 1000, 0, None, None, None, None),
    ]
    monkeypatch.setattr(validate_cli, "validate_blis", lambda data_dir: comparisons)


def test_default_covers_both_datasets(
    fake_apex: None, fake_blis: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run_cli(["validate", "--data", str(tmp_path), "--json"])
    output = json.loads(capsys.readouterr().out)
    assert set(output) == {"apex", "blis"}
    blis = output["blis"]
    assert [s["name"] for s in blis["stages"]] == ["fake_s0", "fake_s1"]
    assert blis["stages"][1]["errors"]["ttft"] is None  # nothing completed: no error figure
    assert blis["stages"][1]["predicted"]["overloaded"] is True
    assert blis["num_overload_agreements"] == 2
    assert blis["mape_not_overloaded"]["ttft"] == pytest.approx(1.0)


def test_blis_table_and_unknown_dataset(
    fake_blis: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run_cli(["validate", "--data", str(tmp_path), "--dataset", "blis"])
    out = capsys.readouterr().out
    assert "fake_s0" in out and "2/2 stages" in out
    with pytest.raises(SystemExit) as info:
        main(["validate", "--data", str(tmp_path), "--dataset", "nope"])
    assert info.value.code == 2
