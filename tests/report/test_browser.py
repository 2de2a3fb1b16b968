"""The HTML report in a real browser: headless Chromium draws every chart with no console
error, and a screenshot is kept in the test's tmp folder (skipped without Chromium; CI
installs Debian's ``chromium`` in ``.ci/run``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.report.html import REPORT_FILE
from tests.report.browser import find_chromium, render_page

CHROMIUM = find_chromium()
NUM_CHARTS = 5

CHECKS = {
    "num_charts": "document.querySelectorAll('.js-plotly-plot').length",
    "num_svgs": "document.querySelectorAll('.js-plotly-plot svg.main-svg').length",
    "num_traces": "document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length",
    "num_points": "document.querySelectorAll('.js-plotly-plot .scatterlayer path').length",
    "has_plotly": "typeof Plotly === 'object' && typeof Plotly.newPlot === 'function'",
}
READY = f"document.querySelectorAll('.js-plotly-plot svg.main-svg').length >= {NUM_CHARTS}"


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(out_dir: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    screenshot = tmp_path / "report.png"
    page = render_page(
        CHROMIUM, out_dir / REPORT_FILE, tmp_path / "profile", screenshot, CHECKS, READY
    )
    assert page.errors == []
    values = page.values
    assert values["has_plotly"] is True
    assert values["num_charts"] == NUM_CHARTS
    assert values["num_svgs"] >= NUM_CHARTS  # plotly draws each chart as SVG layers
    # latency CDF 4 + scatter 2 + throughput 3 + replica timelines 4 x 2 replicas + replicas up 2
    assert values["num_traces"] == 19
    assert values["num_points"] > 19
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    print(f"screenshot: {screenshot}")


PAGE_CHECKS = {
    **CHECKS,
    "num_bars": "document.querySelectorAll('.js-plotly-plot .barlayer .trace').length",
    "num_markers": "document.querySelectorAll('.js-plotly-plot .scatterlayer .point').length",
    "num_shapes": "document.querySelectorAll('.js-plotly-plot .shapelayer path').length",
}
# page: (charts, scatter traces, bar traces, at least this many markers, SLO/capacity lines)
EXPECTED = {
    # 3 panels + the offered-rate line; 6 probes x 3 panels; 2 SLO lines + 3 capacity lines
    "capacity": (1, 4, 0, 18, 5),
    # 3 fronts x (plans, front, winner); 2 ranked plans, each on all three charts
    "plan": (3, 9, 0, 6, 0),
    # the effects with their intervals; A and B per metric (3 panels); the zero line
    "compare": (2, 1, 6, 4, 1),
}


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install -y chromium)")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_result_pages_render_in_headless_chromium(
    name: str, result_pages: dict[str, Path], tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    charts, scatters, bars, markers, shapes = EXPECTED[name]
    screenshot = tmp_path / f"{name}.png"
    ready = f"document.querySelectorAll('.js-plotly-plot svg.main-svg').length >= {charts}"
    page = render_page(
        CHROMIUM, result_pages[name], tmp_path / "profile", screenshot, PAGE_CHECKS, ready
    )
    assert page.errors == []
    values = page.values
    assert values["has_plotly"] is True
    assert values["num_charts"] == charts
    assert values["num_traces"] == scatters and values["num_bars"] == bars
    assert values["num_markers"] >= markers
    assert values["num_shapes"] == shapes
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    print(f"screenshot: {screenshot}")
