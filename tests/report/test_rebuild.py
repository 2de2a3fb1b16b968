"""``servesim report DIR`` rebuilds every kind of result folder: a ``simulate --out`` run and
the pages ``capacity``, ``plan`` and ``compare --report`` write (from the result .json each
writes beside its page), byte for byte; anything else is a one-line error."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from servesim.cli.capacity_page import render_capacity_html, write_capacity_page
from servesim.cli.compare_page import render_compare_html, write_compare_page
from servesim.lab.worker import Failure, RunResult
from servesim.planner.capacity import CapacityResult
from servesim.report import pages
from servesim.report.html import REPORT_FILE
from servesim.report.plan_html import render_plan_html, write_plan_page
from tests.report import test_capacity_page as cap
from tests.report import test_compare_page as cmp
from tests.report import test_plan_page as plan
from tests.report.conftest import run_cli

SETTINGS = [("model", "llama-3.1-8b"), ("hardware", "h100-sxm tp 1 pp 1")]


def _rebuilt_same(page: Path, tmp_path: Path) -> None:
    """``page``'s folder copied, the page deleted, ``servesim report`` run: the same bytes."""
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(pages.result_path(page), folder)
    assert run_cli(["report", str(folder)]) == 0
    assert (folder / page.name).read_bytes() == page.read_bytes()


def test_capacity_page_and_its_result_file(tmp_path: Path) -> None:
    page = write_capacity_page(cap.REPORT, cap.CRITERION, SETTINGS, tmp_path / "cap.html")
    # the data round-trips: the page equals the one drawn from the live objects
    assert page.read_text(encoding="utf-8") == render_capacity_html(
        cap.REPORT, cap.CRITERION, SETTINGS
    )
    doc = json.loads((tmp_path / "cap.json").read_text(encoding="utf-8"))
    assert (doc["servesim_result"], doc["page"]) == ("capacity", "cap.html")
    assert [p["rate_per_s"] for p in doc["data"]["search"]["probes"]] == [2.0, 4.0, 3.0, 3.5]
    assert doc["data"]["search"]["best"] == 2  # the probe at 3 req/s
    _rebuilt_same(page, tmp_path)


def test_capacity_without_a_holding_rate_round_trips(tmp_path: Path) -> None:
    fails = (cap._probe(1.0, 2.0, 0.02, 0.1),)
    search = CapacityResult(0.0, 1.0, "ttft_p99", None, fails)
    report = dataclasses.replace(cap.REPORT, rate_per_s=0.0, limiting="ttft_p99", search=search)
    inf_search = CapacityResult(3.0, math.inf, "", cap.PROBES[0], cap.PROBES[:1])
    unbounded = dataclasses.replace(cap.REPORT, search=inf_search)
    for name, rep in (("none.html", report), ("inf.html", unbounded)):
        page = write_capacity_page(rep, cap.CRITERION, SETTINGS, tmp_path / name)
        assert page.read_text(encoding="utf-8") == render_capacity_html(
            rep, cap.CRITERION, SETTINGS
        )
    assert "none failed" in (tmp_path / "inf.html").read_text(encoding="utf-8")


def test_plan_page_and_its_result_file(tmp_path: Path) -> None:
    page = write_plan_page(plan.REPORT, plan.OPTIONS, SETTINGS, tmp_path / "plan.html")
    assert page.read_text(encoding="utf-8") == render_plan_html(plan.REPORT, plan.OPTIONS, SETTINGS)
    data = json.loads((tmp_path / "plan.json").read_text(encoding="utf-8"))["data"]
    assert data["ranked"] == [2, 0, 1] and data["pareto"] == [2, 0]  # C, A, B / C, A
    assert [r["status"] for r in data["results"]][3:] == ["pruned", "infeasible"]
    _rebuilt_same(page, tmp_path)


def test_compare_page_and_its_result_file(tmp_path: Path) -> None:
    page = write_compare_page(cmp.COMPARISON, tmp_path / "cmp.html")
    assert page.read_text(encoding="utf-8") == render_compare_html(cmp.COMPARISON)
    _rebuilt_same(page, tmp_path)


def test_compare_with_a_failed_run_and_no_pairs_round_trips(tmp_path: Path) -> None:
    failure = Failure("timeout", "hook over 20 ms", "chat", 1, 12.5)
    runs = (RunResult("chat", 1, None, failure),)
    failed = dataclasses.replace(cmp.A, value=None, utility=-math.inf, runs=runs)
    nan = math.nan
    c = dataclasses.replace(
        cmp.COMPARISON, a=failed, effects=(), mean_effect=nan, ci_low=nan, ci_high=nan
    )
    page = write_compare_page(c, tmp_path / "cmp.html")
    text = page.read_text(encoding="utf-8")
    assert text == render_compare_html(c)
    assert "FAILED 1 run(s); first: chat/seed 1: timeout: hook over 20 ms" in text


def test_one_folder_with_every_kind_rebuilds_all(out_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "all"
    shutil.copytree(out_dir, folder)  # a simulate --out run, with its trace.json
    written = [
        write_capacity_page(cap.REPORT, cap.CRITERION, SETTINGS, folder / "capacity.html"),
        write_plan_page(plan.REPORT, plan.OPTIONS, SETTINGS, folder / "plan.html"),
        write_compare_page(cmp.COMPARISON, folder / "compare.html"),
        folder / REPORT_FILE,
    ]
    before = {p.name: p.read_bytes() for p in written}
    for p in written:
        p.unlink()
    assert run_cli(["report", str(folder)]) == 0
    assert {p.name: p.read_bytes() for p in written} == before
    # neither the run's JSON files nor the trace are taken for result files
    assert [p.name for p in pages.find_results(folder)] == [
        "capacity.json",
        "compare.json",
        "plan.json",
    ]


def test_a_result_file_given_directly_and_out(tmp_path: Path) -> None:
    write_compare_page(cmp.COMPARISON, tmp_path / "cmp.html")
    again = tmp_path / "elsewhere" / "again.html"
    assert run_cli(["report", str(tmp_path / "cmp.json"), "--out", str(again)]) == 0
    assert again.read_bytes() == (tmp_path / "cmp.html").read_bytes()
    assert run_cli(["report", str(tmp_path), "--out", str(again)]) == 0  # one page: fine


def test_out_with_several_pages_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_compare_page(cmp.COMPARISON, tmp_path / "a.html")
    write_compare_page(cmp.COMPARISON, tmp_path / "b.html")
    assert run_cli(["report", str(tmp_path), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds several pages" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("what", ["empty", "other-json", "missing", "bad-version"])
def test_unknown_folder_or_file_is_one_line_exit_2(
    what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "x"
    if what == "empty":
        target.mkdir()
        (target / "notes.json").write_text('{"rows": []}\n')
    elif what == "other-json":
        target = tmp_path / "notes.json"
        target.write_text('{"rows": []}\n')
    elif what == "bad-version":
        target.mkdir()
        doc = {"servesim_result": "plan", "format_version": 99, "page": "p.html", "data": {}}
        (target / "p.json").write_text(json.dumps(doc))
    assert run_cli(["report", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    expected = {
        "empty": "no summary.json",
        "other-json": "is not a folder",
        "missing": "is not a folder",
        "bad-version": "result format 99",
    }[what]
    assert expected in err


def test_result_path_beside_the_page() -> None:
    assert pages.result_path("out/cap.html") == Path("out/cap.json")
    assert pages.result_path("page") == Path("page.json")
    assert pages.result_path("odd.json") == Path("odd.json.data.json")  # never the page itself


@pytest.mark.parametrize("kind", ["capacity", "plan", "compare"])
def test_each_command_writes_a_rebuildable_folder(
    kind: str, result_pages: dict[str, Path], tmp_path: Path
) -> None:
    """The real commands (conftest runs each once with --report) leave a result file from
    which ``servesim report`` draws the very page the command wrote."""
    page = result_pages[kind]
    assert pages.result_kind(pages.result_path(page)) == kind
    _rebuilt_same(page, tmp_path)
