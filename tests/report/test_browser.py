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
