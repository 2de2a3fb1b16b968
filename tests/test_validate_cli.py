"""``servesim validate``: the table and JSON show every plan, subsets and missing replicas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import servesim.cli.validate as validate_cli
from servesim.cli import main
from servesim.validate import (
    MeasuredPlan,
    MeasuredRun,
    PlanComparison,
    RunComparison,
    ServedMeans,
)

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
    _run_cli(["validate", "--data", str(tmp_path), "--json"])
    apex = json.loads(capsys.readouterr().out)["apex"]
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
    _run_cli(["validate", "--data", str(tmp_path)])
    out = capsys.readouterr().out
    assert "fake_0.5_4DP2TP" in out and "3/4 MISSING" in out
    assert "single-server" in out and "data-parallel" in out
    assert "present replicas only" in out
