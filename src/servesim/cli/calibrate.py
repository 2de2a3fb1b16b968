"""``servesim calibration`` (how well the shipped calibration predicts kernels it never saw) and
``servesim calibrate`` (fit a calibration from measured tables: the shared data or your own;
or, with ``--from-runs``, an engine profile's host time from your own ``vllm bench serve``
results: ``servesim.perf.host_fit``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
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


def _legacy_table(gpus: dict[str, dict[str, float]]) -> Table:
    classes = sorted({k for v in gpus.values() for k in v})
    table = Table(title="Legacy stack (vllm-0.6, Vidur tables): held-out-model MAPE %")
    table.add_column("gpu")
    for name in classes:
        table.add_column(name, justify="right")
    for gpu, errors in sorted(gpus.items()):
        table.add_row(gpu, *[f"{errors[c]:.1f}" if c in errors else "-" for c in classes])
    return table


# --from-runs: only the first 200 requests of each run are replayed and scored (one replay
# of 200 requests takes ~0.03-0.1 s; a fit with leave-one-run-out runs ~100-300 per run).
MAX_REQUESTS = 200
_METRIC_LABELS = {
    "mean_ttft_ms": "mean TTFT",
    "mean_tpot_ms": "mean TPOT",
    "mean_itl_ms": "mean ITL",
    "mean_e2el_ms": "mean E2E",
}


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What ``--from-runs`` replays the runs on and how it fits them.

    Attributes:
        model, gpu, tp: the deployment measured (override the --config's).
        engine: engine profile (None: the --config's, else ``vllm-v1``).
        config: a deployment YAML (its workload is ignored).
        max_requests: requests replayed and scored per run (the first ones sent).
        per_token: fit ``per_token_s``: ``auto``, ``on`` or ``off``.
    """

    model: str | None
    gpu: str | None
    tp: int | None
    engine: str | None
    config: Path | None
    max_requests: int
    per_token: str


def _deployment(settings: RunSettings) -> dict[str, Any]:
    """The SimConfig mapping (no workload) the runs are replayed on."""
    from servesim.config import load_yaml

    raw: dict[str, Any] = dict(load_yaml(settings.config)) if settings.config else {}
    raw.pop("workload", None)
    hardware = dict(raw.get("hardware") or {})
    hardware.setdefault("engine", "vllm-v1")
    for key, value in (("gpu", settings.gpu), ("tp", settings.tp), ("engine", settings.engine)):
        if value is not None:
            hardware[key] = value
    raw["hardware"] = hardware
    if settings.model is not None:
        raw["model"] = settings.model
    if "model" not in raw:
        raise ConfigError("--model", None, "give the model the runs served (or --config)")
    return raw


def _rms(errors: Mapping[str, float]) -> float | None:
    return math.sqrt(sum(e * e for e in errors.values()) / len(errors)) if errors else None


def _fit_report(
    runs: list[Any], fitted: Any, base: Any, profile: str, settings: RunSettings
) -> dict[str, Any]:
    """The fit as JSON: constants, per-run errors before / fitted / left out."""
    from servesim.perf.host_fit import FIT_BOUNDS

    fit = fitted.fit
    return {
        "host_profile": profile,
        "max_requests": settings.max_requests,
        "fitted": dict(fit.params),
        "profile": {name: getattr(base, name) for name in fit.params},
        "bounds": {name: list(FIT_BOUNDS[name]) for name in fit.params},
        "undetermined": list(fitted.undetermined),
        "loss": fit.loss,
        "two_param_loss": fitted.two_param_loss,
        "per_token_loss": fitted.per_token_loss,
        "num_replays": fit.num_replays,
        "runs": [
            {
                "file": str(run.path),
                "num_replayed": len(run.input_lens),
                "num_dropped": run.num_dropped,
                "measured": {k: run.measured[k] for k in _METRIC_LABELS if k in run.measured},
                "before": dict(fitted.before[i]),
                "fit": dict(fit.errors[i]),
                "leave_one_out": dict(fitted.leave_one_out.get(i, {})),
                "leave_one_out_params": dict(fitted.loo_params.get(i, {})),
            }
            for i, run in enumerate(runs)
        ],
    }


def _source_note(report: dict[str, Any], settings: RunSettings, deployment: dict) -> str:
    fitted = ", ".join(f"{k} {v:.3g}" for k, v in report["fitted"].items())
    fit_rms = [_rms(r["fit"]) for r in report["runs"]]
    loo_rms = [_rms(r["leave_one_out"]) for r in report["runs"] if r["leave_one_out"]]
    loo = f", leave-one-run-out RMS {max(loo_rms) * 100:.1f}%" if loo_rms else ""
    hardware = deployment["hardware"]
    return (
        f"{report['host_profile']}: fitted by servesim calibrate --from-runs to "
        f"{len(report['runs'])} run(s) ({', '.join(Path(r['file']).name for r in report['runs'])}"
        f"; first {settings.max_requests} requests each) of {deployment['model']} on "
        f"{hardware.get('gpu')} TP{hardware.get('tp', 1)}: {fitted}; worst run RMS error "
        f"{max(e or 0.0 for e in fit_rms) * 100:.1f}%{loo}; other constants the profile's"
    )


def _fit_tables(report: dict[str, Any]) -> list[Table]:
    params = Table(title=f"Host time of {report['host_profile']}: fitted constants")
    for head in ("constant", "profile", "fitted", "bounds", "determined by the runs"):
        params.add_column(head, justify="left" if head == "constant" else "right")
    for name, value in report["fitted"].items():
        low, high = report["bounds"][name]
        params.add_row(
            name, f"{report['profile'][name]:.3g}", f"{value:.3g}", f"{low:.0e}..{high:.0e}",
            "no" if name in report["undetermined"] else "yes",
        )  # fmt: skip
    errors = Table(
        title=f"Per run (first {report['max_requests']} requests): relative error of the "
        "profile's constants, of the fit, and of the fit without the run (leave-one-run-out)"
    )
    for head in ("run", "n", "metric", "measured", "profile", "fit", "left out"):
        errors.add_column(head, justify="left" if head in ("run", "metric") else "right")
    for run in report["runs"]:
        for key, label in _METRIC_LABELS.items():
            if key not in run["fit"]:
                continue
            cells = [run["before"].get(key), run["fit"][key], run["leave_one_out"].get(key)]
            errors.add_row(
                Path(run["file"]).name, str(run["num_replayed"]), label,
                f"{run['measured'][key]:.2f} ms",
                *["-" if e is None else f"{e * 100:+.1f}%" for e in cells],
            )  # fmt: skip
    return [params, errors]


def calibrate_from_runs(
    paths: list[Path], settings: RunSettings, out: Path, *, as_json: bool = False
) -> None:
    """Fit the engine profile's host time to ``paths``; write the calibration to ``out``."""
    from servesim.api import replica_plan
    from servesim.config import SimConfig
    from servesim.perf.calibrate_stacks import write_calibration
    from servesim.perf.host_fit import HostOverridePerfModel, calibrate_host, host_entry
    from servesim.perf.roofline import RooflinePerfModel
    from servesim.validate.vllm_bench import load_vllm_bench, replay_vllm_bench

    if not paths:
        raise ConfigError("--from-runs", None, "give the vllm bench serve result files")
    deployment = _deployment(settings)
    profile = replica_plan(SimConfig.from_dict(deployment)).host_profile
    if profile == "none":
        raise ConfigError("host_overhead", profile, "has no host time to fit")
    runs = [load_vllm_bench(p, max_requests=settings.max_requests) for p in paths]
    calibration = load_calibration()
    base = calibration.host_profile(profile)
    gpu_model = RooflinePerfModel(calibration)  # GPU times memoised across the search

    def replay(i: int, host: Any) -> Mapping[str, float]:
        perf = HostOverridePerfModel(gpu_model, profile, host)
        return replay_vllm_bench(runs[i], deployment, perf=perf).predicted

    with console.status(f"fitting {profile} to {len(runs)} run(s)..."):
        fitted = calibrate_host(
            base, [r.measured for r in runs], replay, per_token=settings.per_token
        )
    report = _fit_report(runs, fitted, base, profile, settings)
    document = json.loads(Path(calibration.path or CALIBRATION_PATH).read_text("utf-8"))
    note = _source_note(report, settings, deployment)
    document.setdefault("host_profiles", {})[profile] = host_entry(fitted.fit.host, note)
    document.setdefault("host_fits", {})[profile] = report
    write_calibration(document, out)
    load_calibration(str(out.resolve()))  # the file written must load
    if as_json:
        print_json(report)
        return
    for table in _fit_tables(report):
        console.print(table)
    engine = deployment["hardware"]["engine"]
    console.print(
        f"wrote {out}: its {profile} host profile is the fit; use --calibration {out} "
        f"(with --engine {engine})"
    )


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
