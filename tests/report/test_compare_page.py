"""``compare --report``: the two policies side by side per scenario, the paired differences
and their intervals; checked on a hand-made comparison and on a real one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from servesim.cli.compare_page import (
    comparison_rows,
    effects_figure,
    metrics_figure,
    render_compare_html,
    scenario_intervals,
)
from servesim.lab import Comparison
from servesim.lab.evaluate import Score
from servesim.lab.objectives import METRICS
from servesim.lab.worker import RunResult
from tests.report.conftest import COMPARE_RUN, run_cli


def _score(policy: str, goodput: dict[str, float]) -> Score:
    runs = []
    for scenario, value in goodput.items():
        for seed in (1, 2):
            metrics = dict.fromkeys(METRICS, 1.0) | {"goodput_per_s": value, "p99_tpot_s": 0.02}
            runs.append(RunResult(scenario, seed, metrics))
    return Score(policy, "chat", 1, "goodput_per_s", False, 1.0, 0.0, None, tuple(runs))


A = _score("vllm", {"chat": 2.0, "code": 4.0})
B = _score("sarathi", {"chat": 3.0, "code": 4.0})
# chat: effects 0.1 and 0.3 on its two seeds; code: both 0 (identical figures)
EFFECTS = (("chat", 1, 0.1), ("chat", 2, 0.3), ("code", 1, 0.0), ("code", 2, 0.0))
COMPARISON = Comparison(
    a=A,
    b=B,
    objective="goodput_per_s",
    effects=EFFECTS,
    mean_effect=0.1,
    ci_low=0.05,
    ci_high=0.15,
    scenario_effects=(("chat", 0.2), ("code", 0.0)),
    verdict="sarathi better than vllm on 1/2 scenarios",
)


def test_intervals_per_scenario_then_overall() -> None:
    rows = scenario_intervals(COMPARISON)
    assert [r[0] for r in rows] == ["chat", "code", "overall"]
    chat, code, overall = rows
    assert chat[1] == pytest.approx(0.2) and 0.1 <= chat[2] <= 0.2 <= chat[3] <= 0.3
    assert chat[4] == 2
    assert code[1:4] == (0.0, 0.0, 0.0)  # nothing varies: a point
    assert overall == ("overall", 0.1, 0.05, 0.15, 4)  # the comparison's own interval


def test_figures_and_table() -> None:
    fig = effects_figure(COMPARISON)
    (trace,) = fig.data
    assert list(trace.y) == ["chat", "code", "overall"]
    assert list(trace.x) == pytest.approx([0.2, 0.0, 0.1])
    assert trace.error_x.array[2] == pytest.approx(0.05)  # 0.15 - 0.1
    assert trace.error_x.arrayminus[2] == pytest.approx(0.05)
    bars = metrics_figure(COMPARISON).data
    assert [b.name for b in bars] == ["A: vllm"] * 3 + ["B: sarathi"] * 3
    assert list(bars[0].y) == [2.0, 4.0] and list(bars[3].y) == [3.0, 4.0]  # goodput
    assert list(bars[2].y) == pytest.approx([20.0, 20.0])  # p99 TPOT in ms
    rows = comparison_rows(COMPARISON)
    assert rows[0][:3] == ["chat", "2", "3"]  # A's and B's goodput side by side
    assert rows[0][-1] == f"{math.expm1(0.2) * 100:+.1f}%"  # +22.1%
    assert rows[1][-3:-1] == ["+0.0000", "[+0.0000, +0.0000]"]


def test_page_bytes_and_content() -> None:
    text = render_compare_html(COMPARISON)
    assert text == render_compare_html(COMPARISON)
    assert 'id="fig-compare-effects"' in text and 'id="fig-compare-metrics"' in text
    assert "sarathi better than vllm on 1/2 scenarios" in text
    table = text.split('id="comparison"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 4  # header, 2 scenarios, overall


def test_compare_command_writes_the_page(result_pages: dict[str, Path], tmp_path: Path) -> None:
    text = result_pages["compare"].read_text(encoding="utf-8")
    table = text.split('id="comparison"', 1)[1].split("</table>", 1)[0]
    for scenario in ("sharegpt-tenants", "sharegpt-classes", "azure-conv-trace", "overall"):
        assert f"<td>{scenario}</td>" in table
    assert "<th>A (reference)</th><td>vllm on chat v1 (fast)" in text
    again = tmp_path / "again.html"
    assert run_cli([*COMPARE_RUN, "--report", str(again)]) == 0
    assert again.read_bytes() == result_pages["compare"].read_bytes()
