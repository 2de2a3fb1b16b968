"""``capacity --report``: latency against offered rate with the SLO lines and the capacity
marked; checked on a hand-made search and on a real one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from servesim.api import CapacityReport
from servesim.cli.capacity_page import capacity_figure, probe_rows, render_capacity_html
from servesim.planner.capacity import CapacityResult, Probe
from servesim.planner.scenario import SLOCriterion
from servesim.report import pages
from tests.report.conftest import CAPACITY_RUN, run_cli

CRITERION = SLOCriterion(ttft_p99_s=0.5, tpot_p99_s=0.05)


def _probe(rate: float, ttft: float, tpot: float, goodput: float) -> Probe:
    holds = ttft <= 0.5 and tpot <= 0.05
    ratio = max(ttft / 0.5, tpot / 0.05)
    limiting = "ttft_p99" if ttft / 0.5 >= tpot / 0.05 else "tpot_p99"
    metrics = {"ttft_p99_s": ttft, "tpot_p99_s": tpot, "goodput_per_s": goodput}
    return Probe(rate, holds, limiting, ratio, metrics)


# Search order: 2 holds, 4 fails, 3 holds (the capacity), 3.5 fails on TPOT.
PROBES = (
    _probe(2.0, 0.2, 0.02, 2.0),
    _probe(4.0, 1.5, 0.04, 1.0),
    _probe(3.0, 0.4, 0.03, 2.9),
    _probe(3.5, 0.45, 0.06, 2.5),
)
REPORT = CapacityReport(
    rate_per_s=3.0,
    rate_per_gpu=1.5,
    rate_per_dollar_hour=0.5,
    limiting="tpot_p99",
    search=CapacityResult(3.0, 3.5, "tpot_p99", PROBES[2], PROBES),
    result=None,
)


def test_figure_draws_each_probe_by_rate_with_slo_lines_and_the_capacity() -> None:
    fig = capacity_figure(REPORT, CRITERION)
    ttft, tpot, goodput, offered = fig.data
    assert list(ttft.x) == [2.0, 3.0, 3.5, 4.0]  # sorted by rate, not search order
    assert list(ttft.y) == [0.2, 0.4, 0.45, 1.5]
    assert list(tpot.y) == [0.02, 0.03, 0.06, 0.04]
    assert list(goodput.y) == [2.0, 2.9, 2.5, 1.0]
    assert list(offered.y) == [2.0, 3.0, 3.5, 4.0]  # goodput's ceiling
    blue, red = pages.BLUE, pages.RED
    assert list(ttft.marker.color) == [blue, blue, red, red]
    shapes = fig.layout.shapes
    hlines = sorted(s.y0 for s in shapes if s.y0 == s.y1)
    vlines = [s.x0 for s in shapes if s.x0 == s.x1]
    assert hlines == [0.05, 0.5]  # the two SLO targets
    assert vlines == [3.0, 3.0, 3.0]  # the capacity on every panel
    assert "capacity 3 req/s" in fig.layout.title.text


def test_page_tables_and_bytes() -> None:
    rows = probe_rows(REPORT)
    assert [r[1] for r in rows] == ["2", "4", "3", "3.5"]  # search order
    assert [r[2] for r in rows] == ["holds", "fails", "holds", "fails"]
    assert rows[3][3:5] == ["tpot_p99", "1.2"]  # 0.06 / 0.05
    settings = [("model", "llama-3.1-8b")]
    text = render_capacity_html(REPORT, CRITERION, settings)
    assert text == render_capacity_html(REPORT, CRITERION, settings)  # deterministic
    assert 'id="fig-capacity-latency"' in text and "Plotly.newPlot" in text
    assert "<th>lowest failing rate</th><td>3.5 req/s</td>" in text
    assert "<th>SLO</th><td>p99 TTFT 0.5 s, p99 TPOT 0.05 s</td>" in text
    assert not re.search(r"<script[^>]+src=", text)


def test_no_rate_held_draws_no_capacity_line() -> None:
    fails = (_probe(1.0, 2.0, 0.02, 0.1),)
    search = CapacityResult(0.0, 1.0, "ttft_p99", None, fails)
    report = CapacityReport(0.0, 0.0, 0.0, "ttft_p99", search, None)
    fig = capacity_figure(report, CRITERION)
    assert not [s for s in fig.layout.shapes if s.x0 == s.x1]
    text = render_capacity_html(report, CRITERION, [])
    assert "<th>capacity</th><td>0 req/s</td>" in text
    assert "<th>lowest failing rate</th><td>1 req/s</td>" in text


def test_capacity_command_writes_the_page(
    result_pages: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = result_pages["capacity"]
    text = page.read_text(encoding="utf-8")
    assert 'id="fig-capacity-latency"' in text
    # the same search as JSON: one table row per probe, the capacity on the page
    assert run_cli([*CAPACITY_RUN, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    table = text.split('id="probes"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + len(found["probes"])
    assert f"<th>capacity</th><td>{found['rate_per_s']:.4g} req/s</td>" in text
    # the SLO targets reach each probe as per-request ones: goodput <= offered rate
    for row in table.split("<tr>")[2:]:
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
        assert 0 < float(cells[7]) <= float(cells[1]) * 1.0001, cells
    again = tmp_path / "again.html"
    assert run_cli([*CAPACITY_RUN, "--report", str(again)]) == 0
    assert again.read_bytes() == page.read_bytes()


def test_report_into_a_folder_is_refused_before_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli([*CAPACITY_RUN, "--report", str(tmp_path)]) == 2
    assert "--report" in capsys.readouterr().err
