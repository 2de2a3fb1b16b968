"""Regenerate the recorded baselines: every suite's built-in policies, full mode, every seed.

Run ``python -m servesim.lab.baselines`` (all suites) or ``... --suite chat`` after changing a
suite (and bumping its version) or the simulator; it rewrites ``lab/suites/baselines.json``
(key-sorted, so a diff shows what moved). ``tests/lab/test_suites.py`` recomputes one recorded
run and requires the same figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from servesim.lab.evaluate import evaluate_many, load_baselines
from servesim.lab.suites import load_suite, suite_names

BASELINES_PATH = Path(__file__).resolve().parent / "suites" / "baselines.json"


def suite_baselines(name: str, *, executor: str = "process") -> dict[str, Any]:
    """The baseline entry of one suite: its version and each built-in policy's runs."""
    suite = load_suite(name)
    scores = evaluate_many(suite.baselines, suite, "goodput", executor=executor)
    policies: dict[str, Any] = {}
    for score in scores:
        if not score.is_valid:
            raise RuntimeError(f"baseline {score.policy} failed on {name}: {score.line()}")
        runs = [
            {"scenario": r.scenario, "seed": r.seed, "metrics": dict(r.metrics)}
            for r in score.runs
            if r.metrics is not None
        ]
        policies[score.policy] = {"runs": runs, "skipped": score.skipped()}
    return {"version": suite.version, "reference": suite.baselines[0], "policies": policies}


def main(argv: list[str] | None = None) -> None:
    """Rewrite ``baselines.json`` for the named suites (default: all), keeping the others."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", action="append", help="Suite to regenerate (repeatable).")
    parser.add_argument("--executor", default="process", help="inline | process | ray.")
    args = parser.parse_args(argv)
    recorded = load_baselines()
    for name in args.suite or suite_names():
        recorded[name] = suite_baselines(name, executor=args.executor)
        print(f"{name}: {len(recorded[name]['policies'])} policies")
    text = json.dumps(recorded, indent=1, sort_keys=True) + "\n"
    BASELINES_PATH.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
