"""``servesim calibrate --from-runs``: fit an engine profile's host time to your own
``vllm bench serve`` results (``servesim.perf.host_fit``), report the fit per run (profile,
fit, leave-one-run-out) and write it into a calibration file."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from servesim.cli.common import console, print_json
from servesim.core.errors import ConfigError
from servesim.perf.calibration import CALIBRATION_PATH, load_calibration

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
