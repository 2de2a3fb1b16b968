"""``servesim calibration``: how well the shipped (or a given) calibration predicts kernels it
never saw: held-out shapes, leave one GPU out per op and per family, board power, and the
legacy stack's per-GPU errors, as tables (or ``--json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from servesim.cli.common import console, err_console, print_json
from servesim.perf.calibration import CALIBRATION_PATH, load_calibration

JsonOption = Annotated[bool, typer.Option("--json", help="Print deterministic JSON instead.")]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def kernel_table(rows: list[dict[str, Any]], title: str, with_before: bool) -> Table:
    """One row per (stack, GPU, op, dtype, regime): points, MAPE and median signed error."""
    table = Table(title=title)
    heads = ["stack", "gpu", "op", "dtype", "regime", "n", "MAPE %", "median %"]
    if with_before:
        heads += ["before MAPE", "before median"]
    for head in heads:
        table.add_column(head, justify="right" if head[0].isupper() or head[0] in "nb" else "left")
    for r in rows:
        cells = [r.get("stack", "-"), r["gpu"]]
        if "source" in r:
            cells[1] = f"{r['gpu']} (from {r['source']})"
        cells += [r["op"], r["dtype"], r["regime"], str(r["n"]), _pct(r["mape"])]
        cells.append(_pct(r["median_signed"]))
        if with_before:
            cells += [_pct(r.get("before_mape")), _pct(r.get("before_median_signed"))]
        table.add_row(*cells)
    return table


def transfer_table(rows: list[dict[str, Any]], rules: str = "") -> Table:
    """Leave one GPU out per (stack, GPU, family part): the data-sheet rule before, the
    transfer rules after (donor, MAPE %, median signed %)."""
    table = Table(title="Leave one GPU out, per family (before: nearest GPU's fit unchanged)")
    for head in ("stack", "gpu", "family", "n", "before from", "MAPE", "median"):
        table.add_column(head, justify="right" if head in ("n", "MAPE", "median") else "left")
    for head in ("after from", "MAPE ", "median "):
        table.add_column(head, justify="left" if head == "after from" else "right")
    for r in rows:
        table.add_row(
            r["stack"],
            r["gpu"],
            r["part"],
            str(r["n"]),
            str(r.get("before_source", "-")),
            _pct(r.get("before_mape")),
            _pct(r.get("before_median_signed")),
            r["source"],
            _pct(r["mape"]),
            _pct(r["median_signed"]),
        )
    if rules:
        table.caption = f"rules: {rules}"
    return table


def calibration_command(
    refit: Annotated[
        bool,
        typer.Option(help="Refit from the shared data instead of reading the packaged file."),
    ] = False,
    data: Annotated[str | None, typer.Option(help="Shared data folder (holds profiling/).")] = None,
    calibration: Annotated[
        str | None, typer.Option(help="Report on this calibration file instead.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Held-out error of the calibration per (GPU, kernel stack, op, dtype, regime).

    Also the legacy model's error on the same rows, leave-one-GPU-out, and the legacy fits.
    """
    if refit:
        from servesim.perf.calibrate import build_document
        from servesim.perf.calibrate_data import require_data_dir

        with console.status("refitting every kernel table (minutes)..."):
            document = build_document(require_data_dir(data))
    else:
        cal = load_calibration(calibration)
        document = json.loads(Path(cal.path or CALIBRATION_PATH).read_text(encoding="utf-8"))
    report = document.get("kernel_report", {})
    legacy_gpus = {k: v.get("heldout_mape", {}) for k, v in document.get("gpus", {}).items()}
    if as_json:
        print_json({"kernel_report": report, "legacy_heldout_mape_by_gpu": legacy_gpus})
        return
    heldout = report.get("heldout", [])
    if not heldout:
        err_console.print("this calibration holds no kernel-table report (run servesim calibrate)")
    title = "Held-out shapes (4 shape-wise folds): fitted vs legacy (vllm-0.6) on the same rows"
    console.print(kernel_table(heldout, title, with_before=True))
    transfer = report.get("leave_one_gpu_out", [])
    if transfer:
        title = "Leave one GPU out: its own tables removed, the borrowing rule's GPU predicts it"
        console.print(kernel_table(transfer, title, with_before=False))
    summary = report.get("leave_one_gpu_out_summary", [])
    if summary:
        console.print(transfer_table(summary, str(report.get("transfer_rules", ""))))
    power = report.get("power_heldout", [])
    if power:
        console.print(kernel_table(power, "Board power (W), held-out shapes", with_before=False))
    console.print(_legacy_table(legacy_gpus))
    legacy_rows = [r for v in document.get("gpus", {}).values() for r in v.get("heldout_rows", [])]
    if legacy_rows:  # per op class and token regime; before: the roofline curve (GEMMs)
        title = "Legacy stack (vllm-0.6): held-out Vidur models per op class and token regime"
        console.print(kernel_table(legacy_rows, title, with_before=True))


def _legacy_table(gpus: dict[str, dict[str, float]]) -> Table:
    classes = sorted({k for v in gpus.values() for k in v})
    table = Table(title="Legacy stack (vllm-0.6, Vidur tables): held-out-model MAPE %")
    table.add_column("gpu")
    for name in classes:
        table.add_column(name, justify="right")
    for gpu, errors in sorted(gpus.items()):
        table.add_row(gpu, *[f"{errors[c]:.1f}" if c in errors else "-" for c in classes])
    return table
