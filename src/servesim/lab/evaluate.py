"""``evaluate(policy, suite, objective) -> Score``: a policy's worth on a standard suite.

Each (scenario, seed) of the suite is one task for an executor (``servesim.planner.executors``:
in-process, a local process pool, or Ray); each task runs in its own forked child with limits
(``servesim.lab.worker``). Tasks carry their seeds, and results are put back in the suite's
order, so the score does not depend on the executor nor on the order tasks finish.

A run that fails makes the whole score invalid (``value`` None, ``utility`` -inf): a policy
that crashes or stalls on one scenario cannot average it away.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from servesim.lab.objectives import METRICS, Objective, parse_objective
from servesim.lab.policy import Policy, resolve_policy
from servesim.lab.suites import SuiteConfig, load_suite, suite_runs
from servesim.lab.worker import Failure, Limits, RunResult, Task, run_task
from servesim.planner.executors import Executor, make_executor

PolicyLike = Policy | str | type | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Score:
    """A policy's evaluation on a suite.

    Attributes:
        policy: the policy's name.
        suite: suite name.
        suite_version: its version (scores of different versions do not compare).
        objective: the objective's name (``Objective.name``).
        is_fast: screening mode (fewer requests and seeds).
        value: the objective over the suite: for one metric, its geometric mean in its own
            unit (over seeds, then over scenarios: each scenario counts once); for a weighted
            objective, the utility averaged the same way. None if a run failed.
        utility: higher is better; -inf if a run failed (for ranking).
        baseline_value: the suite's reference policy's ``value`` (recorded baselines, full
            mode only; None when not recorded).
        runs: every run's result, in suite order.
    """

    policy: str
    suite: str
    suite_version: int
    objective: str
    is_fast: bool
    value: float | None
    utility: float
    baseline_value: float | None
    runs: tuple[RunResult, ...]

    @property
    def failures(self) -> list[Failure]:
        """The runs that failed."""
        return [r.failure for r in self.runs if r.failure is not None]

    @property
    def is_valid(self) -> bool:
        """Every run that could run produced figures."""
        return not self.failures

    def skipped(self) -> list[str]:
        """``scenario: reason`` of every scenario that could not run here."""
        return sorted({f"{r.scenario}: {r.skip_reason}" for r in self.runs if r.skip_reason})

    def per_scenario(self) -> dict[str, dict[str, float]]:
        """Metric means over seeds, per scenario (scenarios with figures only)."""
        by_scenario: dict[str, list[Mapping[str, float]]] = {}
        for run in self.runs:
            if run.metrics is not None:
                by_scenario.setdefault(run.scenario, []).append(run.metrics)
        return {
            name: {m: float(np.mean([r[m] for r in rows])) for m in METRICS}
            for name, rows in by_scenario.items()
        }

    def line(self) -> str:
        """One line: ``policy on suite (objective): value [vs baseline]`` or its failures."""
        head = f"{self.policy} on {self.suite} v{self.suite_version}"
        head += " (fast)" if self.is_fast else ""
        if self.value is None:
            fails = self.failures
            return f"{head}: FAILED {len(fails)} run(s); first: {fails[0].line()}"
        text = f"{head}: {self.objective} = {self.value:.6g}"
        if self.baseline_value:
            text += f" ({self.value / self.baseline_value - 1:+.1%} vs baseline)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (deterministic)."""
        return {
            "policy": self.policy,
            "suite": self.suite,
            "suite_version": self.suite_version,
            "objective": self.objective,
            "fast": self.is_fast,
            "value": self.value,
            "baseline_value": self.baseline_value,
            "per_scenario": self.per_scenario(),
            "failures": [_failure_dict(f) for f in self.failures],
            "skipped": self.skipped(),
            "runs": [_run_dict(r) for r in self.runs],
        }

    def to_json(self) -> str:
        """``to_dict()`` as indented, key-sorted JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def _failure_dict(f: Failure) -> dict[str, Any]:
    return {
        "category": f.category,
        "message": f.message,
        "scenario": f.scenario,
        "seed": f.seed,
        "sim_time_s": f.sim_time_s,
    }


def _run_dict(r: RunResult) -> dict[str, Any]:
    out: dict[str, Any] = {"scenario": r.scenario, "seed": r.seed}
    if r.metrics is not None:
        out["metrics"] = dict(r.metrics)
    if r.diagnostics is not None:
        out["diagnostics"] = dict(r.diagnostics)
    if r.skip_reason:
        out["skip_reason"] = r.skip_reason
    return out


def evaluate(
    policy: PolicyLike,
    suite: SuiteConfig | str = "chat",
    objective: Objective | str | Mapping[str, float] = "goodput",
    *,
    fast: bool = False,
    seeds: Sequence[int] | None = None,
    executor: Executor | str = "inline",
    num_workers: int | None = None,
    limits: Limits | None = None,
    isolate: bool = True,
    diagnostics: bool = False,
    counterfactual: int = 0,
) -> Score:
    """Evaluate ``policy`` on every scenario and seed of ``suite``.

    Args:
        policy: ``file.py:Class``, a class, a built-in name, or a config mapping
            (``servesim.lab.policy``).
        suite: a shipped suite's name (``servesim.lab.suite_names()``) or a YAML path.
        objective: ``"goodput"``, ``"p99_ttft"``, ``"goodput:1,p99_ttft:0.5"``...
        fast: screening mode (the suite's ``fast`` section).
        seeds: override the suite's seeds.
        executor: ``inline``, ``process``, ``ray`` or an ``Executor`` (kept open: reuse one
            across calls to avoid restarting workers).
        num_workers: workers of a ``process``/``ray`` executor made here.
        limits: per-run wall-clock, memory and per-hook limits (``worker.Limits``).
        isolate: run each task in a forked child (limits on wall clock and memory); False runs
            in the executor's process (faster to debug; hook limits still apply).
        diagnostics: attach ``servesim.lab.diagnostics`` to each run.
        counterfactual: with diagnostics, re-simulate this many routing decisions per run
            with each alternative replica (``servesim.lab.counterfactual``; each costs one
            run per alternative, inside the run's wall-clock limit).
    """
    return evaluate_many(
        [policy],
        suite,
        objective,
        fast=fast,
        seeds=seeds,
        executor=executor,
        num_workers=num_workers,
        limits=limits,
        isolate=isolate,
        diagnostics=diagnostics,
        counterfactual=counterfactual,
    )[0]


def evaluate_many(
    policies: Sequence[PolicyLike],
    suite: SuiteConfig | str = "chat",
    objective: Objective | str | Mapping[str, float] = "goodput",
    *,
    fast: bool = False,
    seeds: Sequence[int] | None = None,
    executor: Executor | str = "inline",
    num_workers: int | None = None,
    limits: Limits | None = None,
    isolate: bool = True,
    diagnostics: bool = False,
    counterfactual: int = 0,
) -> list[Score]:
    """``evaluate`` for several policies in one executor pass (same arguments)."""
    config = load_suite(suite)
    goal = parse_objective(objective)
    resolved = [resolve_policy(p) for p in policies]
    runs = suite_runs(config, fast=fast, seeds=list(seeds) if seeds is not None else None)
    tasks = [
        Task(
            p,
            run,
            limits or Limits(),
            isolate=isolate,
            with_diagnostics=diagnostics,
            num_counterfactual=counterfactual,
        )
        for p in resolved
        for run in runs
    ]
    results = _run_all(tasks, executor, num_workers)
    with_baseline = not fast and seeds is None
    scores = []
    for k, p in enumerate(resolved):
        own = tuple(results[k * len(runs) : (k + 1) * len(runs)])
        scores.append(make_score(p.name, config, goal, fast, own, with_baseline=with_baseline))
    return scores


def _run_all(tasks: list[Task], executor: Executor | str, num_workers: int | None) -> list[Any]:
    owned = isinstance(executor, str)
    runner = make_executor(executor, num_workers=num_workers) if owned else executor
    results: list[Any] = [None] * len(tasks)
    try:
        for index, result in runner.run(run_task, tasks):
            results[index] = result
    finally:
        if owned:
            runner.close()
    return results


def make_score(
    name: str,
    suite: SuiteConfig,
    objective: Objective,
    fast: bool,
    runs: tuple[RunResult, ...],
    *,
    with_baseline: bool = False,
) -> Score:
    """Aggregate runs into a ``Score`` (see ``Score.value``); ``with_baseline`` looks up the
    reference policy's value over the same (scenario, seed) runs."""
    figures = [(r.scenario, r.metrics) for r in runs if r.metrics is not None]
    failed = any(r.failure is not None for r in runs)
    value: float | None = None
    utility = -math.inf
    keys = {(r.scenario, r.seed) for r in runs if not r.skip_reason}
    if figures and not failed:
        utility = scenario_mean([(s, objective.utility(m)) for s, m in figures])
        value = aggregate_value(objective, figures)
    return Score(
        policy=name,
        suite=suite.name,
        suite_version=suite.version,
        objective=objective.name,
        is_fast=fast,
        value=value,
        utility=utility,
        baseline_value=baseline_value(suite, objective, keys) if with_baseline else None,
        runs=runs,
    )


def scenario_mean(values: Sequence[tuple[str, float]]) -> float:
    """Mean over scenarios of each scenario's mean over its seeds: every scenario counts
    once, however many seeds it runs (a trace replay runs one)."""
    by_scenario: dict[str, list[float]] = {}
    for scenario, value in values:
        by_scenario.setdefault(scenario, []).append(value)
    return float(np.mean([np.mean(v) for v in by_scenario.values()]))


def aggregate_value(
    objective: Objective, figures: Sequence[tuple[str, Mapping[str, float]]]
) -> float:
    """One metric: its geometric mean (over seeds, then over scenarios, each scenario
    counting once); weighted: the utility averaged the same way."""
    if objective.is_single:
        metric = objective.weights[0][0]
        logs = [(s, math.log(max(m[metric], 1e-9))) for s, m in figures]
        return float(math.exp(scenario_mean(logs)))
    return scenario_mean([(s, objective.utility(m)) for s, m in figures])


def load_baselines() -> dict[str, Any]:
    """The recorded baselines (``lab/suites/baselines.json``; ``python -m
    servesim.lab.baselines`` regenerates it)."""
    resource = resources.files("servesim.lab") / "suites" / "baselines.json"
    if not resource.is_file():
        return {}
    return json.loads(resource.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def baseline_value(
    suite: SuiteConfig, objective: Objective, keys: set[tuple[str, int]]
) -> float | None:
    """The reference policy's value on ``suite`` over the recorded runs whose (scenario,
    seed) is in ``keys`` (None if not recorded for all of them, or for another version)."""
    entry = load_baselines().get(suite.name)
    if not entry or entry.get("version") != suite.version or not keys:
        return None
    runs = entry["policies"].get(suite.baselines[0], {}).get("runs", [])
    figures = [
        (r["scenario"], r["metrics"])
        for r in runs
        if (r["scenario"], r["seed"]) in keys and "metrics" in r
    ]
    if len(figures) != len(keys):
        return None
    return aggregate_value(objective, figures)
