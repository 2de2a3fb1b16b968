"""``servesim calibration`` (how well the shipped calibration predicts kernels it never saw) and
``servesim calibrate`` (fit a calibration from measured tables: the shared data or your own)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from servesim.cli.common import console, err_console, print_json
from servesim.core.errors import ConfigError
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
    power = report.get("power_heldout", [])
    if power:
        console.print(kernel_table(power, "Board power (W), held-out shapes", with_before=False))
    console.print(_legacy_table(legacy_gpus))


def _legacy_table(gpus: dict[str, dict[str, float]]) -> Table:
    classes = sorted({k for v in gpus.values() for k in v})
    table = Table(title="Legacy stack (vllm-0.6, Vidur tables): held-out-model MAPE %")
    table.add_column("gpu")
    for name in classes:
        table.add_column(name, justify="right")
    for gpu, errors in sorted(gpus.items()):
        table.add_row(gpu, *[f"{errors[c]:.1f}" if c in errors else "-" for c in classes])
    return table


def calibrate_command(
    tables: Annotated[
        Path | None,
        typer.Option(
            help="Your tables (aiconfigurator layout: <gpu>/<family>/<framework>/<version>/"
            "*.parquet, e.g. from bench/measure_tables.py); default: the shared data's."
        ),
    ] = None,
    gpu: Annotated[
        str | None, typer.Option(help="Catalog GPU the tables were measured on (one folder).")
    ] = None,
    stack: Annotated[
        str, typer.Option(help="Kernel stack whose entry the tables replace.")
    ] = "vllm-0.24",
    out: Annotated[Path, typer.Option(help="Calibration JSON to write.")] = Path(
        "calibration.json"
    ),
    data: Annotated[str | None, typer.Option(help="Shared data folder (holds profiling/).")] = None,
    no_heldout: Annotated[
        bool, typer.Option("--no-heldout", help="Skip the held-out reports (faster).")
    ] = False,
) -> None:
    """Fit a calibration from measured kernel tables; use it with --calibration FILE."""
    from servesim.perf.calibrate_stacks import user_sections, write_calibration

    if out.exists() and out.is_dir():
        raise ConfigError("--out", str(out), "is a folder (give a file name)")
    with console.status("fitting...") as status:

        def progress(line: str) -> None:
            status.update(f"fitting {line}")

        if tables is None:
            from servesim.perf.calibrate import build_document
            from servesim.perf.calibrate_data import require_data_dir

            document = build_document(
                require_data_dir(data), heldout=not no_heldout, progress=progress
            )
        else:
            base = json.loads(CALIBRATION_PATH.read_text(encoding="utf-8"))
            document = user_sections(
                tables,
                gpu_name=gpu,
                stack=stack,
                base=base,
                heldout=not no_heldout,
                progress=progress,
            )
    write_calibration(document, out)
    load_calibration(str(out.resolve()))  # the file written must load
    console.print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB); use --calibration {out}")


def register(app: typer.Typer) -> None:
    """Add ``calibration`` and ``calibrate``."""
    app.command("calibration")(calibration_command)
    app.command("calibrate")(calibrate_command)
