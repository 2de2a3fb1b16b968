"""Replay the real vLLM 0.6 Llama-3.1-70B / 8x H100 runs and print predicted vs measured means.

Usage: python bench/validate_apex.py [--data ../shared/data]   (same as `servesim validate`)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from servesim.core.paths import shared_data_dir
from servesim.validate import mape, validate_apex


def main() -> None:
    """Print one row per run and the MAPE per metric."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=shared_data_dir())
    args = parser.parse_args()
    start = time.perf_counter()
    comparisons = validate_apex(args.data)
    header = (
        f"{'run':26} {'TTFT ms pred/meas':>20} {'ITL ms pred/meas':>18} {'E2E s pred/meas':>17}"
        "   error TTFT/ITL/E2E"
    )
    print(header)
    for c in comparisons:
        r = c.run
        err = c.errors()
        flag = "" if r.is_consistent else "  (inconsistent run)"
        print(
            f"{r.name:26} {c.predicted_mean_ttft_s * 1e3:9.1f}/{r.measured_mean_ttft_s * 1e3:<9.1f}"
            f" {c.predicted_mean_itl_s * 1e3:8.2f}/{r.measured_mean_itl_s * 1e3:<8.2f}"
            f" {c.predicted_mean_e2e_s:8.2f}/{r.measured_mean_e2e_s:<8.2f}"
            f" {err['ttft'] * 100:+6.1f}% {err['itl'] * 100:+6.1f}% {err['e2e'] * 100:+6.1f}%{flag}"
        )
    for label, subset in (("all runs", False), ("consistent runs", True)):
        errors = mape(comparisons, consistent_only=subset)
        print(f"MAPE ({label}): " + ", ".join(f"{k} {v * 100:.1f}%" for k, v in errors.items()))
    # The host constants were set on TP8 runs only (perf/calibrate_defaults.py).
    for label, is_fit in (("TP8, fit set", True), ("TP4/TP2, held out", False)):
        chosen = [c for c in comparisons if (c.run.tp == 8) == is_fit]
        errors = mape(chosen, consistent_only=True)
        print(
            f"MAPE (consistent, {label}): "
            + ", ".join(f"{k} {v * 100:.1f}%" for k, v in errors.items())
        )
    print(f"{len(comparisons)} runs replayed in {time.perf_counter() - start:.1f} s wall")


if __name__ == "__main__":
    main()
