"""``compare(a, b, suite) -> Comparison``: a paired A/B of two policies.

Both policies run the same (scenario, seed) runs, so each pair differs only by the policy. The
effect of one pair is the objective's utility difference, ``sum(w * direction * ln(b / a))``
(for one metric: the log of B's figure relative to A's, sign-adjusted so > 0 means B is
better). The headline is its mean over seeds, then over scenarios (each scenario counts once),
with a 95% stratified bootstrap interval (seeds resampled within each scenario, with a fixed
seed: deterministic). A scenario counts as a win for B when its mean effect is above zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from servesim.lab.evaluate import PolicyLike, Score, evaluate_many
from servesim.lab.objectives import METRICS, Objective, parse_objective
from servesim.lab.suites import SuiteConfig
from servesim.lab.worker import Limits
from servesim.planner.executors import Executor

NUM_BOOTSTRAP = 4000
CONFIDENCE = 0.95
_BOOTSTRAP_SEED = 20240611  # fixed: the same inputs give the same interval


@dataclass(frozen=True, slots=True)
class Comparison:
    """B against A on the same runs.

    Attributes:
        a: A's score.
        b: B's score.
        objective: the objective's name.
        effects: per (scenario, seed) pair, B's utility minus A's (> 0: B better).
        mean_effect: mean of ``effects`` over seeds, then scenarios (nan without pairs).
        ci_low: lower end of the 95% bootstrap interval of ``mean_effect``.
        ci_high: upper end.
        scenario_effects: mean effect per scenario.
        verdict: one plain line.
        direction: +1, or -1 for a one-metric objective where lower is better (the verdict
            then shows the metric's own relative change).
    """

    a: Score
    b: Score
    objective: str
    effects: tuple[tuple[str, int, float], ...]
    mean_effect: float
    ci_low: float
    ci_high: float
    scenario_effects: tuple[tuple[str, float], ...]
    verdict: str
    direction: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (deterministic)."""
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "objective": self.objective,
            "mean_effect": _finite(self.mean_effect),
            "ci": [_finite(self.ci_low), _finite(self.ci_high)],
            "relative_change": _finite(math.expm1(self.direction * self.mean_effect)),
            "scenario_effects": dict(self.scenario_effects),
            "pairs": [{"scenario": s, "seed": k, "effect": e} for s, k, e in self.effects],
            "verdict": self.verdict,
        }

    def to_json(self) -> str:
        """``to_dict()`` as indented, key-sorted JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def compare(
    a: PolicyLike,
    b: PolicyLike,
    suite: SuiteConfig | str = "chat",
    objective: Objective | str | Mapping[str, float] = "goodput",
    *,
    fast: bool = False,
    seeds: Sequence[int] | None = None,
    executor: Executor | str = "inline",
    num_workers: int | None = None,
    limits: Limits | None = None,
    isolate: bool = True,
) -> Comparison:
    """Evaluate ``a`` and ``b`` on the same runs (one executor pass) and pair them."""
    goal = parse_objective(objective)
    score_a, score_b = evaluate_many(
        [a, b],
        suite,
        goal,
        fast=fast,
        seeds=seeds,
        executor=executor,
        num_workers=num_workers,
        limits=limits,
        isolate=isolate,
    )
    return paired(score_a, score_b, goal)


def paired(a: Score, b: Score, objective: Objective) -> Comparison:
    """The paired comparison of two scores of the same suite runs."""
    b_runs = {(r.scenario, r.seed): r for r in b.runs}
    effects = []
    for run in a.runs:
        other = b_runs.get((run.scenario, run.seed))
        if run.metrics is None or other is None or other.metrics is None:
            continue
        effects.append((run.scenario, run.seed, objective.delta(run.metrics, other.metrics)))
    values = np.array([e for _, _, e in effects], dtype=np.float64)
    strata = np.array([s for s, _, _ in effects], dtype=object)
    mean, low, high = bootstrap_mean(values, strata)
    by_scenario: dict[str, list[float]] = {}
    for scenario, _, effect in effects:
        by_scenario.setdefault(scenario, []).append(effect)
    scenario_effects = tuple((s, float(np.mean(v))) for s, v in by_scenario.items())
    comparison = Comparison(
        a=a,
        b=b,
        objective=objective.name,
        effects=tuple(effects),
        mean_effect=mean,
        ci_low=low,
        ci_high=high,
        scenario_effects=scenario_effects,
        verdict="",
        direction=METRICS[objective.weights[0][0]][0] if objective.is_single else 1,
    )
    return _with_verdict(comparison)


def bootstrap_mean(
    values: np.ndarray, strata: np.ndarray | None = None
) -> tuple[float, float, float]:
    """The mean over strata (scenarios) of each stratum's mean, and its percentile-bootstrap
    interval: seeds are resampled within each scenario (a stratified bootstrap), so every
    scenario counts once. Deterministic; a point when nothing varies."""
    if values.size == 0:
        return math.nan, math.nan, math.nan
    labels = np.zeros(values.size, dtype=np.int64) if strata is None else strata
    groups = [values[labels == label] for label in dict.fromkeys(labels.tolist())]
    mean = float(np.mean([g.mean() for g in groups]))
    if all(np.all(g == g[0]) for g in groups):
        return mean, mean, mean
    rng = np.random.default_rng(_BOOTSTRAP_SEED)
    means = np.zeros(NUM_BOOTSTRAP)
    for group in groups:
        picks = rng.integers(0, group.size, size=(NUM_BOOTSTRAP, group.size))
        means += group[picks].mean(axis=1)
    means /= len(groups)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return mean, float(low), float(high)


def _with_verdict(c: Comparison) -> Comparison:
    return replace(c, verdict=verdict_line(c))


def _figure(c: Comparison) -> str:
    """B's change relative to A, in the metric's own direction for a one-metric objective
    (``p99_ttft_s -30.0%``: B's p99 TTFT is 30% lower), else the utility's
    (``exp(effect) - 1``)."""
    sign = c.direction
    low, high = sorted((math.expm1(sign * c.ci_low), math.expm1(sign * c.ci_high)))
    return f"{c.objective} {math.expm1(sign * c.mean_effect):+.1%} [{low:+.1%}, {high:+.1%}]"


def verdict_line(c: Comparison) -> str:
    """``B better than A on 6/7 scenarios; goodput_per_s +12.0% [+8.0%, +15.0%]``."""
    for score in (c.a, c.b):
        if not score.is_valid:
            first = score.failures[0]
            return (
                f"{score.policy} failed {len(score.failures)} run(s) "
                f"({first.category}: {first.message}); no comparison"
            )
    if not c.effects:
        return "no run produced figures for both policies; no comparison"
    a, b = c.a.policy, c.b.policy
    if a == b:
        a, b = f"A ({a})", f"B ({b})"
    num = len(c.scenario_effects)
    wins_b = sum(1 for _, e in c.scenario_effects if e > 0)
    wins_a = sum(1 for _, e in c.scenario_effects if e < 0)
    figure = _figure(c)
    if all(e == 0.0 for _, _, e in c.effects):
        return f"no difference: identical figures on all {len(c.effects)} runs; {figure}"
    if c.ci_low > 0:
        return f"{b} better than {a} on {wins_b}/{num} scenarios; {figure}"
    if c.ci_high < 0:
        return f"{a} better than {b} on {wins_a}/{num} scenarios; {figure}"
    return (
        f"no significant difference ({b} better on {wins_b}/{num} scenarios, "
        f"{a} on {wins_a}/{num}); {figure}"
    )
