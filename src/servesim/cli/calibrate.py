"""``servesim calibration`` (how well the shipped calibration predicts kernels it never saw:
``cli/calibration_report.py``) and ``servesim calibrate`` (fit a calibration from measured
tables: the shared data or your own; or, with ``--from-runs``, an engine profile's host time
from your own ``vllm bench serve`` results: ``cli/calibrate_runs.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from servesim.cli.calibrate_runs import MAX_REQUESTS, RunSettings, calibrate_from_runs
from servesim.cli.calibration_report import JsonOption, calibration_command
from servesim.cli.common import console
from servesim.core.errors import ConfigError
from servesim.perf.calibration import CALIBRATION_PATH, load_calibration


def calibrate_command(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="--from-runs: vllm bench serve result JSONs (--save-result --save-detailed).",
            show_default=False,
        ),
    ] = None,
    from_runs: Annotated[
        bool,
        typer.Option(
            "--from-runs",
            help="Fit the engine profile's host time to the result files given as arguments "
            "(replaces that profile's entry in the calibration written).",
        ),
    ] = False,
    tables: Annotated[
        Path | None,
        typer.Option(
            help="Your tables (aiconfigurator layout: <gpu>/<family>/<framework>/<version>/"
            "*.parquet, e.g. from bench/measure_tables.py); default: the shared data's."
        ),
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option(
            help="Catalog GPU the tables (one folder) or the --from-runs runs were measured on."
        ),
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
    model: Annotated[str | None, typer.Option(help="--from-runs: the model served.")] = None,
    tp: Annotated[int | None, typer.Option(help="--from-runs: tensor parallelism.")] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="--from-runs: engine profile measured (default: the --config's, else vllm-v1; "
            "vllm-v1-async for vLLM >= 0.11, vllm-0.6, sglang, trtllm)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="--from-runs: deployment YAML (scheduler, ...; workload ignored)."),
    ] = None,
    max_requests: Annotated[
        int,
        typer.Option(
            min=1, help="--from-runs: replay (and score) only each run's first N requests."
        ),
    ] = MAX_REQUESTS,
    per_token: Annotated[
        str,
        typer.Option(
            help="--from-runs: fit a per-token cost: auto (when the runs tell it apart), on, off."
        ),
    ] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Fit a calibration from measured kernel tables, or (--from-runs) an engine's host time
    from your own vllm bench serve runs; use it with --calibration FILE."""
    from servesim.perf.calibrate_stacks import user_sections, write_calibration

    if out.exists() and out.is_dir():
        raise ConfigError("--out", str(out), "is a folder (give a file name)")
    if from_runs or runs:
        if not from_runs:
            raise ConfigError("files", [str(r) for r in runs or []], "need --from-runs")
        if tables is not None:
            raise ConfigError("--tables", str(tables), "cannot be combined with --from-runs")
        settings = RunSettings(model, gpu, tp, engine, config, max_requests, per_token)
        calibrate_from_runs(list(runs or []), settings, out, as_json=as_json)
        return
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
