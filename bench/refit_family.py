"""Refit one operator family of the shipped calibration in place, with its held-out reports.

A full ``servesim calibrate`` refits every family and the legacy sections (about half an hour
on 2 cores). While working on one family's model, this refits only that family: its fitted
parameters in every kernel stack and GPU entry, its ``sources`` line, and its rows of the
held-out and leave-one-GPU-out reports. Everything else in the file is kept as it is, so the
result equals what a full refit would write for that family (the families are fitted
independently). The read-modify-write holds a lock on the file, so two refits of different
families can run at the same time.

Run: ``python bench/refit_family.py attention [--data ../shared/data] [--no-heldout]``.
``--logo-only`` refits nothing: it recomputes the family's leave-one-GPU-out rows from the
fits already stored (what changes when only ``opmodels.transfer``'s rules change; a minute).
``mla`` (the MLA attention kernel, ``fitting.mla``: SGLang 0.5.14 H100/H200) refits like the
other kernel families. ``power`` refits the ``power`` section and
``kernel_report.power_heldout`` only (``calibrate_stacks._power``, the same call a full refit
makes).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
from pathlib import Path
from typing import Any

from servesim.perf.calibrate_data import require_data_dir
from servesim.perf.calibrate_stacks import _power, write_calibration
from servesim.perf.calibration import CALIBRATION_PATH
from servesim.perf.fitting.build import FAMILY_MODULES, fit_kernel_stacks, transfer_report
from servesim.perf.fitting.tables import aic_root
from servesim.perf.opmodels.transfer import describe_rules
from servesim.perf.stacks import STACKS, TABLE_GPUS


def _attention_parts(family: str) -> set[str]:
    """Summary rows name their part: attention's are prefill/decode_attention."""
    if family == "attention":
        return {"prefill_attention", "decode_attention"}
    return {family}


def merge_family(document: dict[str, Any], family: str, fitted: Any, heldout: bool) -> None:
    """Replace ``family``'s entries of ``document`` by ``fitted``'s (a ``StackFit``)."""
    for stack, entries in fitted.kernel_stacks.items():
        shipped = document["kernel_stacks"].setdefault(stack, {})
        for key, entry in entries.items():
            if family not in entry:
                continue
            target = shipped.setdefault(key, {k: v for k, v in entry.items() if k != "sources"})
            target[family] = entry[family]
            target.setdefault("sources", {})[family] = entry["sources"][family]
    if not heldout:
        return
    report = document["kernel_report"]
    report["heldout"] = [r for r in report["heldout"] if r.get("family") != family]
    report["heldout"] += fitted.heldout
    merge_logo(document, family, fitted.transfer, fitted.transfer_summary)


def merge_logo(
    document: dict[str, Any],
    family: str,
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
) -> None:
    """Replace ``family``'s leave-one-GPU-out rows and summary of ``document`` (and the rules
    text: that of the code that computed them), in the order a full refit writes them."""
    report = document["kernel_report"]
    report["transfer_rules"] = describe_rules()
    report["leave_one_gpu_out"] = [
        r for r in report["leave_one_gpu_out"] if r.get("family") != family
    ] + rows
    parts = _attention_parts(family)
    report["leave_one_gpu_out_summary"] = [
        r for r in report["leave_one_gpu_out_summary"] if r.get("part") not in parts
    ] + summary
    _full_refit_order(report)


def refresh_logo(document: dict[str, Any], family: str, root: Path) -> None:
    """Recompute ``family``'s leave-one-GPU-out from the fits stored in ``document``.

    A donor's fit is its all-rows fit in a full refit too, so when only the transfer rules
    changed this stores what ``bench/refit_family.py FAMILY`` would, without refitting.
    """
    rows, summary = transfer_report(root, document["kernel_stacks"], (family,))
    merge_logo(document, family, rows, summary)


def _full_refit_order(report: dict[str, Any]) -> None:
    """Order the report's rows as ``fit_kernel_stacks`` writes them (a stable sort keeps each
    group's own row order): held-out rows by (stack, GPU folder, family) in fitting order,
    leave-one-GPU-out rows and summaries by sorted (stack, GPU, family)."""
    stacks = [name for name, info in STACKS.items() if info.tables]
    gpus = {name: [TABLE_GPUS[f][1] for f in STACKS[name].tables] for name in stacks}
    families = list(FAMILY_MODULES)

    def fitting_order(row: dict[str, Any]) -> tuple[int, int, int]:
        stack_gpus = gpus.get(row["stack"], [])
        return (
            stacks.index(row["stack"]) if row["stack"] in stacks else len(stacks),
            stack_gpus.index(row["gpu"]) if row["gpu"] in stack_gpus else len(stack_gpus),
            families.index(row["family"]),
        )

    def family_of(row: dict[str, Any]) -> str:
        return row.get("family") or row["part"].replace("prefill_", "").replace("decode_", "")

    report["heldout"].sort(key=fitting_order)
    for key in ("leave_one_gpu_out", "leave_one_gpu_out_summary"):
        report[key].sort(key=lambda r: (r["stack"], r["gpu"], family_of(r)))


def merge_power(
    document: dict[str, Any], power: dict[str, Any], report: list[dict[str, Any]], heldout: bool
) -> None:
    """Replace the ``power`` section (and its held-out rows when ``heldout``) of ``document``."""
    document["power"] = power
    if heldout:
        document["kernel_report"]["power_heldout"] = report


def _write(path: Path, update: Any) -> None:
    """Read-modify-write ``path`` under an exclusive lock (other families refit in parallel)."""
    with open(path, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        document = json.loads(handle.read())
        update(document)
        write_calibration(document, path)


def main(argv: list[str] | None = None) -> int:
    """Refit the family named on the command line into the shipped calibration."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=sorted([*FAMILY_MODULES, "power"]))
    parser.add_argument("--data", default=None, help="shared data folder (holds profiling/)")
    parser.add_argument("--no-heldout", action="store_true", help="fit only, keep the reports")
    parser.add_argument("--out", type=Path, default=CALIBRATION_PATH, help="file to update")
    parser.add_argument(
        "--logo-only",
        action="store_true",
        help="no fit: recompute the family's leave-one-GPU-out rows from the stored fits",
    )
    args = parser.parse_args(argv)
    root = aic_root(require_data_dir(args.data))
    if args.logo_only:
        if args.family == "power":
            parser.error("--logo-only: power has no leave-one-GPU-out rows")
        _write(args.out, lambda doc: refresh_logo(doc, args.family, root))
        print(f"updated {args.family} leave-one-GPU-out in {args.out}")
        return 0
    if args.family == "power":
        power, report = _power(root, not args.no_heldout)
        _write(args.out, lambda doc: merge_power(doc, power, report, not args.no_heldout))
        print(f"updated power in {args.out}")
        return 0
    fitted = fit_kernel_stacks(
        root,
        families=(args.family,),
        heldout=not args.no_heldout,
        progress=lambda line: print(f"fitting {line}", file=sys.stderr, flush=True),
    )
    _write(args.out, lambda doc: merge_family(doc, args.family, fitted, not args.no_heldout))
    print(f"updated {args.family} in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
