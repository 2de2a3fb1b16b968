"""``plan``'s live view: counts, ETA base, best-so-far lines, and Ctrl-C."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import typer
from rich.console import Console

from conftest import small_scenario
from servesim.cli import plan_render
from servesim.planner.search import SearchOptions, SearchProgress, run_search
from servesim.planner.space import SearchSpace


def test_progress_counts_the_plans_left_to_simulate_and_reports_the_best(monkeypatch) -> None:
    scenario = small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05)
    space = SearchSpace(gpus=(("h100-sxm", 2), ("l4", 1)), tp_options=(1,), pp_options=(1,))
    seen: list[SearchProgress] = []
    report = run_search(scenario, space, options=SearchOptions(), on_progress=seen.append)
    last = seen[-1]
    assert last.num_done == last.num_plans == len(report.results)
    assert last.num_to_evaluate == last.num_evaluated  # the bar ends full
    assert last.num_simulated == report.num_simulated
    assert last.best is report.ranked[0]
    # The first update after the pre-filter already knows what is left to simulate.
    assert seen[0].num_to_evaluate == last.num_to_evaluate and seen[0].num_evaluated == 0

    out = io.StringIO()
    monkeypatch.setattr(plan_render, "err_console", Console(file=out, width=200))
    live = plan_render.run_with_progress(
        lambda cb: run_search(scenario, space, on_progress=cb), "goodput_per_dollar"
    )
    text = out.getvalue()
    assert f"best so far: {live.ranked[0].plan.label()}" in text
    assert "per $/h" in text


def test_ctrl_c_exits_130_and_says_where_the_results_are(monkeypatch, tmp_path: Path) -> None:
    out = io.StringIO()
    monkeypatch.setattr(plan_render, "err_console", Console(file=out, width=200))

    def interrupted(cb):
        raise KeyboardInterrupt

    store = tmp_path / "s.duckdb"
    with pytest.raises(typer.Exit) as stopped:
        plan_render.run_with_progress(interrupted, "cost_at_rate", quiet=True, store=store)
    assert stopped.value.exit_code == 130
    assert f"results so far are in {store}" in out.getvalue()
