"""``servesim calibration`` (how well the shipped calibration predicts kernels it never saw:
``cli/calibration_report.py``) and ``servesim calibrate`` (fit a calibration from measured
tables: the shared data or your own; or, with ``--from-runs``, an engine profile's host time
from your own ``vllm bench serve`` results: ``cli/calibrate_runs.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from servesim.cli.calibrate_runs import MAX_REQUESTS, RunSettings, calibrate_from_runs
from servesim.cli.calibration_report import calibration_command
from servesim.cli.common import console
from servesim.cli.params import Opt, with_options
from servesim.core.errors import ConfigError
from servesim.perf.calibration import CALIBRATION_PATH, load_calibration

CALIBRATE_OPTIONS: tuple[Opt, ...] = (
    Opt(
        "runs",
        list[Path] | None,
        typer.Argument(
            help="--from-runs: vllm bench serve result JSONs (--save-result --save-detailed).",
            show_default=False,
        ),
    ),
    Opt(
        "from_runs",
        bool,
        typer.Option(
            "--from-runs",
            help="Fit the engine profile's host time to the result files given as arguments "
            "(replaces that profile's entry in the calibration written).",
        ),
        False,
    ),
    Opt(
        "tables",
        Path | None,
        typer.Option(
            help="Your tables (aiconfigurator layout: <gpu>/<family>/<framework>/<version>/"
            "*.parquet, e.g. from bench/measure_tables.py); default: the shared data's."
        ),
    ),
    Opt(
        "gpu",
        str | None,
        typer.Option(
            help="Catalog GPU the tables (one folder) or the --from-runs runs were measured on."
        ),
    ),
    Opt(
        "stack", str, typer.Option(help="Kernel stack whose entry the tables replace."), "vllm-0.24"
    ),
    Opt("out", Path, typer.Option(help="Calibration JSON to write."), Path("calibration.json")),
    Opt("data", str | None, typer.Option(help="Shared data folder (holds profiling/).")),
    Opt(
        "no_heldout",
        bool,
        typer.Option("--no-heldout", help="Skip the held-out reports (faster)."),
        False,
    ),
    Opt("model", str | None, typer.Option(help="--from-runs: the model served.")),
    Opt("tp", int | None, typer.Option(help="--from-runs: tensor parallelism.")),
    Opt(
        "engine",
        str | None,
        typer.Option(
            help="--from-runs: engine profile measured (default: the --config's, else vllm-v1; "
            "vllm-v1-async for vLLM >= 0.11, vllm-0.6, sglang, trtllm)."
        ),
    ),
    Opt(
        "config",
        Path | None,
        typer.Option(help="--from-runs: deployment YAML (scheduler, ...; workload ignored)."),
    ),
    Opt(
        "max_requests",
        int,
        typer.Option(
            min=1, help="--from-runs: replay (and score) only each run's first N requests."
        ),
        MAX_REQUESTS,
    ),
    Opt(
        "per_token",
        str,
        typer.Option(
            help="--from-runs: fit a per-token cost: auto (when the runs tell it apart), on, off."
        ),
        "auto",
    ),
    Opt("as_json", bool, typer.Option("--json", help="Print deterministic JSON instead."), False),
)
# lines 21-125, body starts 87


@with_options(*CALIBRATE_OPTIONS)
def calibrate_command(**params: Any) -> None:
    """Fit a calibration from measured kernel tables, or (--from-runs) an engine's host time
    from your own vllm bench serve runs; use it with --calibration FILE."""
    out: Path = params["out"]
    if out.exists() and out.is_dir():
        raise ConfigError("--out", str(out), "is a folder (give a file name)")
    runs, tables = params["runs"], params["tables"]
    if params["from_runs"] or runs:
        if not params["from_runs"]:
            raise ConfigError("files", [str(r) for r in runs or []], "need --from-runs")
        if tables is not None:
            raise ConfigError("--tables", str(tables), "cannot be combined with --from-runs")
        settings = RunSettings(**{key: params[key] for key in _RUN_SETTINGS})
        calibrate_from_runs(list(runs or []), settings, out, as_json=params["as_json"])
        return
    from servesim.perf.calibrate_stacks import write_calibration

    with console.status("fitting...") as status:

        def progress(line: str) -> None:
            status.update(f"fitting {line}")

        document = _fit(params, progress)
    write_calibration(document, out)
    load_calibration(str(out.resolve()))  # the file written must load
    console.print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB); use --calibration {out}")


# the flags of --from-runs (RunSettings' fields)
_RUN_SETTINGS = ("model", "gpu", "tp", "engine", "config", "max_requests", "per_token")


def _fit(params: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    """The calibration document: refitted from the shared data, or the packaged one with the
    sections of ``--tables`` replaced."""
    heldout = not params["no_heldout"]
    if params["tables"] is None:
        from servesim.perf.calibrate import build_document
        from servesim.perf.calibrate_data import require_data_dir

        return build_document(require_data_dir(params["data"]), heldout=heldout, progress=progress)
    from servesim.perf.calibrate_stacks import user_sections

    base = json.loads(CALIBRATION_PATH.read_text(encoding="utf-8"))
    return user_sections(
        params["tables"],
        gpu_name=params["gpu"],
        stack=params["stack"],
        base=base,
        heldout=heldout,
        progress=progress,
    )


def register(app: typer.Typer) -> None:
    """Add ``calibration`` and ``calibrate``."""
    app.command("calibration")(calibration_command)
    app.command("calibrate")(calibrate_command)
