"""``plan --report``: the Pareto fronts, the winner and why, the left-out plans with reasons;
checked on hand-made results and on a real search."""

from __future__ import annotations

from pathlib import Path

from servesim.planner.evaluate import PlanResult
from servesim.planner.search import SearchOptions, SearchReport
from servesim.planner.space import PlanSpec
from servesim.report.plan_html import (
    front_2d,
    plan_figures,
    render_plan_html,
    tokens_per_gpu,
    tokens_per_user,
)
from tests.report.conftest import PLAN_RUN, run_cli


def _ok(
    replicas: int, capacity: float, ttft: float, tps: float, tpot: float, j: float
) -> PlanResult:
    metrics = {
        "ttft_p99_s": ttft,
        "output_tokens_per_s": tps,
        "tpot_p50_s": tpot,
        "energy_per_output_token_j": j,
    }
    return PlanResult(PlanSpec("h100-sxm", replicas=replicas), "ok", capacity_per_s=capacity,
                      limiting="ttft_p99", metrics=metrics)  # fmt: skip


# 1 replica: 100 tok/s/GPU at 50 tok/s/user; 2: 90 per GPU at 25 per user (dominated by 1
# on both); 3: 120 per GPU at 20 per user (the front's other end).
A = _ok(1, 2.0, 0.5, 100.0, 0.02, 0.4)
B = _ok(2, 3.0, 0.6, 180.0, 0.04, 0.5)
C = _ok(3, 6.0, 0.9, 360.0, 0.05, 0.3)
PRUNED = PlanResult(PlanSpec("a100-80gb"), "pruned", "dominated: bound below a simulated plan")
INFEASIBLE = PlanResult(PlanSpec("h100-sxm", tp=8), "infeasible", "needs 8 GPUs, 2 available")
REPORT = SearchReport(
    results=[A, B, C, PRUNED, INFEASIBLE],
    ranked=[C, A, B],
    pareto=[C, A],
    prune_reasons={"pruned: dominated": 1, "infeasible: GPUs": 1},
)
OPTIONS = SearchOptions(objective="goodput_per_dollar")


def test_axes_are_inferencemax_per_gpu_and_per_user() -> None:
    assert tokens_per_gpu(C) == 120.0  # 360 tok/s over 3 GPUs
    assert tokens_per_user(A) == 50.0  # 1 / 20 ms
    front = front_2d(REPORT.ranked, tokens_per_user, tokens_per_gpu, True, True)
    assert front == [C, A]  # sorted by tokens/s per user; B (90 at 25) is dominated by A


def test_figures_mark_front_and_winner() -> None:
    ids = [cid for cid, _ in plan_figures(REPORT)]
    assert ids == ["plan-cost-latency", "plan-throughput-interactivity", "plan-energy"]
    cost, interactivity, energy = (fig for _, fig in plan_figures(REPORT))
    plans, front, winner = cost.data
    assert list(plans.text) == [C.plan.label(), A.plan.label(), B.plan.label()]
    # $/h per req/s: C 3 x 2.99 / 6, A 2.99 / 2, sorted by cost
    assert [round(x, 4) for x in front.x] == [round(2.99 * 3 / 6, 4), round(2.99 / 2, 4)]
    assert list(winner.text) == [C.plan.label()] and winner.marker.symbol == "star"
    assert list(interactivity.data[1].y) == [120.0, 100.0]
    # energy: lower J/token and more tokens/s per user are better: C (0.3 J) and A (50/s)
    assert list(energy.data[1].text) == [C.plan.label(), A.plan.label()]


def test_page_has_the_winner_why_and_every_left_out_plan() -> None:
    settings = [("model", "llama-3.1-8b")]
    text = render_plan_html(REPORT, OPTIONS, settings)
    assert text == render_plan_html(REPORT, OPTIONS, settings)
    assert f"<th>winner</th><td>{C.plan.label()}</td>" in text
    assert "<th>why</th><td>0.669 req/s per $/h" in text  # 6 req/s / (3 x $2.99/h)
    left = text.split('id="left-out"', 1)[1].split("</table>", 1)[0]
    assert left.count("<tr>") == 3  # header, pruned, infeasible
    assert "needs 8 GPUs, 2 available" in left and "dominated: bound below" in left
    assert "<td>pruned: dominated</td>" in text


def test_plan_command_writes_the_page(result_pages: dict[str, Path], tmp_path: Path) -> None:
    text = result_pages["plan"].read_text(encoding="utf-8")
    for cid in ("plan-cost-latency", "plan-throughput-interactivity", "plan-energy"):
        assert f'id="fig-{cid}"' in text
    assert "<th>winner</th><td>2x h100-sxm tp1" in text
    assert 'id="left-out"' in text and "dominated" in text
    again = tmp_path / "again.html"
    assert run_cli([*PLAN_RUN, "--report", str(again)]) == 0
    assert again.read_bytes() == result_pages["plan"].read_bytes()
