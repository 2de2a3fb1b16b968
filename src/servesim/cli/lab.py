"""``servesim evaluate`` and ``servesim compare``: the policy lab on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from servesim.cli.common import console, print_json
from servesim.cli.report import check_report_file, note_report
from servesim.core.errors import ConfigError
from servesim.lab import Comparison, Limits, Score, compare, evaluate, load_suite, suite_names

_SUITE_HELP = "Suite name (see --list-suites) or a suite YAML file."
_OBJECTIVE_HELP = (
    "goodput | attainment | p99_ttft | p99_tpot | throughput | cost | energy | fairness, "
    "or weighted: goodput:1,p99_ttft:0.5."
)


_POLICY_HELP = (
    "file.py:Class, a built-in name, or a JSON mapping such as "
    '\'{"admission": {"kind": "token_bucket", "options": {"rate_per_s": 4}}}\'.'
)


def _policy(text: str) -> Any:
    """A policy argument: a JSON mapping when it starts with ``{``, else the text itself."""
    if not text.lstrip().startswith("{"):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("policy", text, f"is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ConfigError("policy", text, "must be a JSON object")
    return value


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError("--seeds", text, "must be comma-separated integers") from None


def _limits(wall_s: float, memory_mb: int, hook_ms: float) -> Limits:
    return Limits(
        wall_s=wall_s,
        memory_bytes=memory_mb * 2**20 if memory_mb > 0 else None,
        hook_cpu_s=hook_ms / 1e3 if hook_ms > 0 else None,
    )


def _scenario_table(score: Score) -> Table:
    table = Table(title=score.line())
    for name in ("scenario", "goodput/s", "attain", "p99 TTFT s", "p99 TPOT ms", "tok/s", "done"):
        table.add_column(name, justify="left" if name == "scenario" else "right")
    for scenario, m in score.per_scenario().items():
        table.add_row(
            scenario,
            f"{m['goodput_per_s']:.3f}",
            f"{m['attainment']:.3f}",
            f"{m['p99_ttft_s']:.3f}",
            f"{m['p99_tpot_s'] * 1e3:.1f}",
            f"{m['throughput_tokens_per_s']:.0f}",
            f"{m['completed_fraction']:.3f}",
        )
    return table


def _diagnostics_table(score: Score) -> Table:
    table = Table(title="diagnostics per run")
    names = ("run", "overtakes", "prio inversions", "HOL blocked", "preempt", "rejected")
    for name in (*names, "route regret s"):
        table.add_column(name, justify="left" if name == "run" else "right")
    for run in score.runs:
        d = run.diagnostics
        if d is None:
            continue
        hol = d["head_of_line"]
        table.add_row(
            f"{run.scenario}/{run.seed}",
            str(d["fcfs_overtakes"]),
            str(d["priority_inversions"]),
            f"{hol['num_blocked']} (+{hol['mean_excess_wait_s']:.2f} s)",
            str(d["num_preemptions"]),
            ", ".join(f"{k} {v}" for k, v in d["rejected"].items()) or "0",
            _regret_cell(d.get("router_counterfactual")),
        )
    return table


def _regret_cell(cf: Any) -> str:
    """Mean counterfactual TTFT regret over the decisions re-simulated ("-" when none)."""
    if not cf:
        return "-"
    return f"{cf['mean_ttft_regret_s']:.3f} ({cf['num_decisions']} decisions)"


def _print_score(score: Score) -> None:
    console.print(_scenario_table(score))
    if any(r.diagnostics is not None for r in score.runs):
        console.print(_diagnostics_table(score))
    for failure in score.failures:
        console.print(f"failed: {failure.line()}", markup=False, highlight=False)
    for note in score.skipped():
        console.print(f"skipped: {note}", markup=False, highlight=False)


def _print_suites() -> None:
    for name in suite_names():
        s = load_suite(name)
        console.print(
            f"{name} v{s.version}: {len(s.scenarios)} scenarios x {len(s.seeds)} "
            f"seeds; baselines {', '.join(s.baselines)}",
            markup=False,
            highlight=False,
        )


def _print_comparison(c: Comparison) -> None:
    table = Table(title=f"{c.b.policy} vs {c.a.policy} on {c.a.suite} ({c.objective})")
    for name in ("scenario", "effect (B vs A)"):
        table.add_column(name, justify="left" if name == "scenario" else "right")
    for scenario, effect in c.scenario_effects:
        table.add_row(scenario, f"{effect:+.4f}")
    console.print(table)
    console.print(c.verdict, markup=False, highlight=False)


def _write_report(result: Comparison, path: Path) -> None:
    from servesim.cli.compare_page import write_compare_page

    note_report(write_compare_page(result, path))


def register(app: typer.Typer) -> None:
    """Add ``servesim evaluate`` and ``servesim compare``."""
    app.command("evaluate")(evaluate_cmd)
    app.command("compare")(compare_cmd)


# the options evaluate and compare share (typer reads each default's metadata per command)
_SUITE = typer.Option("chat", "--suite", help=_SUITE_HELP)
_OBJECTIVE = typer.Option("goodput", "--objective", help=_OBJECTIVE_HELP)
_FAST = typer.Option(False, "--fast", help="Screening mode: fewer requests, 1 seed.")
_SEEDS = typer.Option(None, "--seeds", help="Comma-separated seeds (override).")
_EXECUTOR = typer.Option("inline", "--executor", help="inline | process | ray.")
_WORKERS = typer.Option(None, "--workers", help="Workers of process / ray.")
_WALL_S = typer.Option(60.0, "--timeout-s", help="Wall-clock limit per run.")
_MEMORY_MB = typer.Option(4096, "--memory-mb", help="Memory per run (0: none).")
_HOOK_MS = typer.Option(20.0, "--hook-ms", help="CPU ms per hook call (0: none).")


def evaluate_cmd(
    policy: str = typer.Argument(None, help=_POLICY_HELP),
    suite: str = _SUITE,
    objective: str = _OBJECTIVE,
    fast: bool = _FAST,
    seeds: str = _SEEDS,
    executor: str = _EXECUTOR,
    workers: int = _WORKERS,
    wall_s: float = _WALL_S,
    memory_mb: int = _MEMORY_MB,
    hook_ms: float = _HOOK_MS,
    diagnostics: bool = typer.Option(False, "--diagnostics", help="Per-run diagnostics."),
    counterfactual: int = typer.Option(
        0,
        "--counterfactual",
        min=0,
        help="With --diagnostics: routing decisions per run re-simulated with each "
        "alternative replica (counterfactual regret).",
    ),
    list_suites: bool = typer.Option(False, "--list-suites", help="List suites and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the score as JSON."),
) -> None:
    """Score a policy on a standard suite (each run isolated, with limits)."""
    if list_suites:
        _print_suites()
        return
    if policy is None:
        raise ConfigError("policy", None, "give a policy (file.py:Class or a built-in name)")
    score = evaluate(
        _policy(policy),
        suite,
        objective,
        fast=fast,
        seeds=_seeds(seeds),
        executor=executor,
        num_workers=workers,
        limits=_limits(wall_s, memory_mb, hook_ms),
        diagnostics=diagnostics or counterfactual > 0,
        counterfactual=counterfactual,
    )
    if as_json:
        print_json(score.to_dict())
    else:
        _print_score(score)
    if not score.is_valid:
        raise typer.Exit(1)


def compare_cmd(
    a: str = typer.Argument(..., help="Policy A (the reference): " + _POLICY_HELP),
    b: str = typer.Argument(..., help="Policy B (the candidate), as A."),
    suite: str = _SUITE,
    objective: str = _OBJECTIVE,
    fast: bool = _FAST,
    seeds: str = _SEEDS,
    executor: str = _EXECUTOR,
    workers: int = _WORKERS,
    wall_s: float = _WALL_S,
    memory_mb: int = _MEMORY_MB,
    hook_ms: float = _HOOK_MS,
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    report_file: Path = typer.Option(
        None, "--report", help="Write the side-by-side HTML page here (opens offline)."
    ),
) -> None:
    """Paired A/B of two policies on the same runs, with a confidence interval."""
    check_report_file(report_file)
    result = compare(
        _policy(a),
        _policy(b),
        suite,
        objective,
        fast=fast,
        seeds=_seeds(seeds),
        executor=executor,
        num_workers=workers,
        limits=_limits(wall_s, memory_mb, hook_ms),
    )
    if as_json:
        print_json(result.to_dict())
    else:
        _print_comparison(result)
    if report_file is not None:
        _write_report(result, report_file)
