"""Replay the real vLLM 0.6 Llama-3.1-70B / 8x H100 plans and print predicted vs measured means.

Every plan of plans.csv: single-server ones (8TP, 4TP, 2TP) and data-parallel ones (2DP4TP,
4DP2TP, each replica replayed on its own served trace and the replicas combined as plans.csv).

Usage: python bench/validate_apex.py [--data ../shared/data]   (same as `servesim validate`)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from servesim.core.paths import shared_data_dir
from servesim.validate import PlanComparison, mape, mape_by_subset, validate_apex


def _row(c: PlanComparison) -> str:
    p, pred, meas, err = c.plan, c.predicted, c.plan.measured, c.errors()
    flags = "" if p.is_consistent else "  (inconsistent run)"
    if p.num_missing_replicas:
        flags += f"  ({len(p.replicas)}/{p.dp} replicas: MISSING replica(s), present ones only)"
    return (
        f"{p.name:28} {pred.mean_ttft_s * 1e3:9.1f}/{meas.mean_ttft_s * 1e3:<9.1f}"
        f" {pred.mean_itl_s * 1e3:8.2f}/{meas.mean_itl_s * 1e3:<8.2f}"
        f" {pred.mean_e2e_s:8.2f}/{meas.mean_e2e_s:<8.2f}"
        f" {err['ttft'] * 100:+6.1f}% {err['itl'] * 100:+6.1f}% {err['e2e'] * 100:+6.1f}%{flags}"
    )


def main() -> None:
    """Print one row per plan and the MAPE per metric and subset."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=shared_data_dir())
    args = parser.parse_args()
    start = time.perf_counter()
    comparisons = validate_apex(args.data)
    wall_s = time.perf_counter() - start
    print(
        f"{'plan':28} {'TTFT ms pred/meas':>20} {'ITL ms pred/meas':>18} {'E2E s pred/meas':>17}"
        "   error TTFT/ITL/E2E"
    )
    for c in comparisons:
        print(_row(c))
    for label, errors in mape_by_subset(comparisons).items():
        print(f"MAPE ({label}): " + ", ".join(f"{k} {v * 100:.1f}%" for k, v in errors.items()))
    # The host constants were set on TP8 runs only (perf/calibrate_defaults.py).
    for label, is_fit in (("TP8, fit set", True), ("TP4/TP2 and DP, held out", False)):
        chosen = [c for c in comparisons if (c.plan.plan == "8TP") == is_fit]
        errors = mape(chosen, consistent_only=True)
        print(
            f"MAPE (consistent, {label}): "
            + ", ".join(f"{k} {v * 100:.1f}%" for k, v in errors.items())
        )
    num_runs = sum(len(c.replicas) for c in comparisons)
    print(f"{len(comparisons)} plans ({num_runs} server runs) replayed in {wall_s:.1f} s wall")


if __name__ == "__main__":
    main()
