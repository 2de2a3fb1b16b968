"""Admission control under bursty load: does refusing requests early buy goodput?

Evaluates accept-all (vLLM's default), a token bucket and SLO-aware shedding at a few targets
on the bursty suite with the policy lab, and prints each one's goodput, SLO attainment and
the fraction of requests it served. Refused requests count as unserved (the lab's penalty
rule), so shedding pays only if the requests it lets in meet their SLO more often.

    python examples/admission_shedding.py            # bursty suite, fast mode (~15 CPU-s)
    python examples/admission_shedding.py SUITE.yaml # any suite
"""

from __future__ import annotations

import sys
from typing import Any

from servesim.lab import evaluate_many

CANDIDATES: list[dict[str, Any]] = [
    {"name": "accept_all", "admission": {"kind": "accept_all"}},
    {
        "name": "token_bucket(2/s, burst 8)",
        "admission": {"kind": "token_bucket", "options": {"rate_per_s": 2.0, "burst": 8}},
    },
    *(
        {
            "name": f"slo_ttft({ttft:g} s)",
            "admission": {"kind": "slo_ttft", "options": {"ttft_s": ttft}},
        }
        for ttft in (1.0, 0.5, 0.25)
    ),
]


def main(suite: str = "bursty") -> None:
    """Evaluate every candidate on ``suite`` (fast mode) and print a table."""
    scores = evaluate_many(CANDIDATES, suite, "goodput", fast=True)
    print(f"{'policy':30} {'scenario':12} {'goodput/s':>9} {'attain':>7} {'served':>7}")
    for score in scores:
        for scenario, m in score.per_scenario().items():
            print(
                f"{score.policy:30} {scenario:12} {m['goodput_per_s']:9.3f} "
                f"{m['attainment']:7.3f} {m['completed_fraction']:7.3f}"
            )
    best = max(scores, key=lambda s: s.utility)
    print(f"best: {best.line()}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
