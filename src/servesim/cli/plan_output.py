"""What ``servesim plan`` prints after a search (the winner's config and launch line, the
GPU mix) and ``plan show STORE``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from servesim.api import plan_config
from servesim.cli.common import console
from servesim.cli.plan_render import render_mix, render_stored
from servesim.config import SimConfig
from servesim.core.errors import ConfigError
from servesim.engine.profiles import AUTO, resolve_engine
from servesim.planner.deploy import launch_command, sim_config_dict
from servesim.planner.executors import Executor
from servesim.planner.mix import mix_candidates, plan_mix
from servesim.planner.scenario import Scenario
from servesim.planner.search import SearchReport
from servesim.planner.space import SearchSpace
from servesim.planner.store import PlanStore


def print_winner(scenario: Scenario, report: SearchReport, out: Path | None, engine: str) -> None:
    """The best plan's SimConfig YAML (to ``out`` or the screen) and its launch line."""
    best = report.ranked[0]
    if engine == AUTO:
        cfg = plan_config(scenario, best.plan, best.capacity_per_s)
    else:  # plan_config with the engine named in the YAML
        cfg = SimConfig.from_dict(sim_config_dict(scenario, best.plan, best.capacity_per_s, engine))
    text = yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        console.print(f"\nwinner's config written to {out} (servesim simulate --config {out})")
    else:
        console.print("\n[bold]Winner's config[/] (servesim simulate --config FILE):")
        console.print(text, markup=False, highlight=False)
    profile = resolve_engine(engine, best.plan.scheduler.kind)
    console.print(f"[bold]Launch ({profile.name}, {profile.version}):[/]")
    console.print(
        launch_command(scenario, best.plan, engine), markup=False, highlight=False, soft_wrap=True
    )


def print_mix(
    scenario: Scenario,
    report: SearchReport,
    space: SearchSpace,
    target_rate: float | None,
    executor: Executor,
) -> None:
    """The Mélange GPU mix for ``target_rate`` from the ranked single-replica plans."""
    if target_rate is None:
        raise ConfigError("--target-rate", None, "--mix needs the rate to serve")
    candidates = mix_candidates(report.ranked)
    if not candidates:
        console.print("no single-replica plan held the SLO: no GPU mix to choose")
        return
    mixed = plan_mix(
        scenario,
        candidates,
        target_rate,
        available=dict(space.gpus),
        executor=executor,
    )
    render_mix(mixed)


def show_cmd(
    path: Annotated[Path, typer.Argument(help="A --store DuckDB file.")],
    search: Annotated[
        str | None, typer.Option("--search", help="Search hash (default: the largest).")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Plans shown.")] = 20,
) -> None:
    """Show the plans stored in a DuckDB results file."""
    if not path.is_file():
        raise ConfigError("store", str(path), "file not found")
    db = PlanStore(path, read_only=True)
    try:
        render_stored(db, search, top)
    finally:
        db.close()
