"""Calibration report: held-out MAPE per op class and GPU, collectives by size, and a decode
step check against the real vLLM 0.6 Llama-3.1-70B runs on H100 (apex_plus validation data).

Run: ``python bench/calibration_report.py [--data ../shared/data]`` (refits every kernel table
with held-out folds: about half an hour on 2 cores), or with ``--packaged`` to print the report
stored in the shipped calibration (the same tables as ``servesim calibration``), or with
``--logo`` to recompute only leave-one-GPU-out from the shipped fits and the tables (the same
rows the refit stores, without refitting: a minute or two).
"""

from __future__ import annotations

import argparse
import csv
import json
import time

from rich.console import Console

from servesim.cli.calibration_report import kernel_table, transfer_table
from servesim.perf.calibrate import build_document
from servesim.perf.calibrate_data import require_data_dir
from servesim.perf.calibration import CALIBRATION_PATH
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model


def _decode_check(data_dir: str) -> None:
    """Measured token-weighted ITL at 0.25 req/s (few sequences in flight) vs predicted steps.

    TP8 set the host base overhead (see calibrate_defaults.HOST_OVERHEAD); TP4 and TP2 are
    held out. TP2 ran with --disable-custom-all-reduce.
    """
    model = RooflinePerfModel()
    path = f"{data_dir}/validation/apex_vllm_llama70b/plans.csv"
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["plan"] in ("8TP", "4TP", "2TP")]
    print("\nDecode step vs vLLM 0.6 ITL (Llama-3.1-70B, H100, bf16; batch 4 x 1000 ctx)")
    for row in rows:
        tp = int(row["tp"])
        plan = ReplicaPlan(
            resolve_model("llama-3.1-70b"), get_gpu("h100-sxm"), tp=tp, custom_all_reduce=tp != 2
        )
        pred = model.iteration_time(plan, BatchShape.from_lists(decode_contexts=[1000] * 4)).total_s
        meas = float(row["itl_mean_token_weighted_s"])
        print(
            f"  {row['workload']:<14}{row['rate_req_per_s']:>5} {row['plan']:>4}: measured "
            f"{meas * 1e3:6.2f} ms  predicted {pred * 1e3:6.2f} ms  "
            f"({100 * (pred / meas - 1):+.1f}%)"
        )


def _logo(data_dir: object) -> None:
    """Leave one GPU out from the shipped fits, by the current transfer rules."""
    from pathlib import Path

    from servesim.perf.fitting.build import transfer_report
    from servesim.perf.fitting.tables import aic_root
    from servesim.perf.opmodels.transfer import describe_rules

    document = json.loads(CALIBRATION_PATH.read_text(encoding="utf-8"))
    _, summary = transfer_report(aic_root(Path(str(data_dir))), document["kernel_stacks"])
    Console(width=160).print(transfer_table(summary, describe_rules()))


def main() -> None:
    """Refit (or read the packaged file) and print the held-out tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None)
    parser.add_argument(
        "--packaged", action="store_true", help="print the shipped report instead of refitting"
    )
    parser.add_argument(
        "--logo", action="store_true", help="only leave-one-GPU-out, from the shipped fits"
    )
    args = parser.parse_args()
    data_dir = require_data_dir(args.data)
    if args.logo:
        _logo(data_dir)
        return
    if args.packaged:
        document = json.loads(CALIBRATION_PATH.read_text(encoding="utf-8"))
    else:
        start = time.perf_counter()
        document = build_document(data_dir, progress=lambda line: print(f"  fitting {line}"))
        print(f"refitted in {time.perf_counter() - start:.0f} s")
    console = Console(width=160)
    report = document.get("kernel_report", {})
    console.print(
        kernel_table(report.get("heldout", []), "Held-out shapes: fitted vs legacy", True)
    )
    console.print(kernel_table(report.get("leave_one_gpu_out", []), "Leave one GPU out", False))
    console.print(
        transfer_table(
            report.get("leave_one_gpu_out_summary", []), str(report.get("transfer_rules", ""))
        )
    )
    console.print(kernel_table(report.get("power_heldout", []), "Board power (W)", False))
    print("\nLegacy stack (vllm-0.6): held-out-model MAPE % by op class (Vidur tables)")
    for gpu, entry in sorted(document["gpus"].items()):
        errors = entry.get("heldout_mape", {})
        if errors:
            print(f"  {gpu:<6}" + "  ".join(f"{k}={v:.1f}" for k, v in sorted(errors.items())))
    print("\nLegacy collectives: held-out MAPE % by message size (fit on alternate sizes)")
    for c in document["collectives"]:
        sizes = "  ".join(f"{k}={v:.1f}" for k, v in c.get("heldout_mape_by_size", {}).items())
        print(
            f"  {c['gpu']:<5}{c['topology']:<13}{c['collective']:<15}n={c['num_gpus']}  "
            f"{sizes}  [{c['source']}]"
        )
    _decode_check(str(data_dir))


if __name__ == "__main__":
    main()
