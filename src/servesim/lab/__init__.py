"""The policy lab: evaluate and compare scheduling and routing policies on standard suites.

``evaluate(policy, suite, objective) -> Score`` runs a policy on every scenario and seed of a
suite, each run isolated in a worker with time and memory limits; ``compare(a, b, suite)``
pairs two policies run by run, with a bootstrap confidence interval and a plain verdict.
Suites are versioned YAML data in ``lab/suites/`` with the built-in policies' baseline runs
recorded beside them (``baselines.json``). See docs/policies.md.
"""

from __future__ import annotations

from servesim.lab.compare import Comparison, compare
from servesim.lab.evaluate import Score, evaluate, evaluate_many
from servesim.lab.objectives import METRICS, Objective, parse_objective
from servesim.lab.policy import Policy, resolve_policy
from servesim.lab.suites import load_suite, suite_names
from servesim.lab.worker import Failure, Limits, RunResult

__all__ = [
    "METRICS",
    "Comparison",
    "Failure",
    "Limits",
    "Objective",
    "Policy",
    "RunResult",
    "Score",
    "compare",
    "evaluate",
    "evaluate_many",
    "load_suite",
    "parse_objective",
    "resolve_policy",
    "suite_names",
]
