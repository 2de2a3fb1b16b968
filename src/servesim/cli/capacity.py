"""``servesim capacity``, and the checks of the SLO and search flags it shares with ``plan``.

``capacity`` finds the highest rate one deployment sustains within an SLO; it takes the same
deployment, scheduler, router and workload (preset or trace) flags as ``simulate``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from servesim.api import CapacityReport, capacity, slo_criterion
from servesim.cli import options as opts
from servesim.cli.common import print_json
from servesim.cli.overrides import scheduler_overrides
from servesim.cli.params import Opt, with_options
from servesim.cli.plan_render import render_capacity
from servesim.cli.report import check_report_file, note_report
from servesim.cli.simulate_config import build_config, config_flags
from servesim.config import SimConfig, SLOConfig
from servesim.core.errors import ConfigError
from servesim.planner.scenario import SLOCriterion

_D = "Deployment"
_W = "Workload"
_L = "SLO"
_X = "Execution"
_PROBE_REQUESTS = "Requests per probe (default 1000)."


def check_positive(flag: str, value: float | None, *, integer: bool = False) -> None:
    """Refuse a given ``value`` that is not a finite number > 0 (an integer >= 1)."""
    if value is None:
        return
    if integer and not value >= 1:
        raise ConfigError(flag, value, "must be an integer >= 1")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(flag, value, "must be a finite number > 0")


def check_tol(tol: float) -> None:
    """The capacity search's relative tolerance lies strictly between 0 and 1."""
    if not 0 < tol < 1:
        raise ConfigError("--tol", tol, "must be in (0, 1), e.g. 0.05")


def criterion_from_flags(
    ttft: float | None, tpot: float | None, attainment: float | None
) -> SLOCriterion:
    """The SLO to hold: at least one target, each a finite time > 0, attainment in (0, 1]."""
    if ttft is None and tpot is None and attainment is None:
        raise ConfigError("--slo-ttft-p99", None, "give at least one SLO target")
    check_positive("--slo-ttft-p99", ttft)
    check_positive("--slo-tpot-p99", tpot)
    if attainment is not None and not 0 < attainment <= 1:
        raise ConfigError("--min-attainment", attainment, "must be in (0, 1]")
    return SLOCriterion(ttft_p99_s=ttft, tpot_p99_s=tpot, min_attainment=attainment)


CAPACITY_OPTIONS: tuple[Opt, ...] = (
    Opt("config", Path | None, opts.config(_D)),
    Opt("model", str | None, opts.model(_D)),
    Opt("gpu", str | None, opts.gpu(_D)),
    Opt("tp", int | None, opts.tp(_D)),
    Opt("pp", int | None, opts.pp(_D)),
    Opt("dtype", str | None, opts.dtype(_D)),
    Opt("kv_dtype", str | None, opts.kv_dtype(_D)),
    Opt("replicas", int | None, opts.replicas(_D)),
    Opt("disagg", str | None, opts.disagg(_D)),
    Opt("max_num_seqs", int | None, opts.max_num_seqs(_D)),
    Opt("max_num_batched_tokens", int | None, opts.max_num_batched_tokens(_D)),
    Opt("chunked_prefill", bool | None, opts.chunked_prefill(_D)),
    Opt("scheduler", str | None, opts.scheduler(_D)),
    Opt("chunk_size", int | None, opts.chunk_size(_D)),
    Opt("router", str | None, opts.router(_D)),
    Opt("engine", str | None, opts.engine(_D)),
    Opt("workload", str | None, opts.workload(_W)),
    Opt("trace", Path | None, opts.option("--trace", "Replay a trace file.", _W)),
    Opt(
        "trace_format",
        str | None,
        opts.option("--trace-format", "Trace format (default: detect).", _W),
    ),
    Opt("num_requests", int | None, opts.num_requests(_PROBE_REQUESTS, _D)),
    Opt("seed", int | None, opts.seed(_D)),
    Opt("slo_ttft_p99", float | None, opts.slo_ttft_p99(_L)),
    Opt("slo_tpot_p99", float | None, opts.slo_tpot_p99(_L)),
    Opt("min_attainment", float | None, opts.min_attainment(_L)),
    Opt("start_rate", float | None, opts.option("--start-rate", "First rate probed.", _X)),
    Opt("tol", float, opts.tol(_X), 0.05),
    Opt("calibration", str | None, opts.calibration(_D)),
    Opt("as_json", bool, opts.as_json("Print JSON."), False),
    Opt(
        "report_file",
        Path | None,
        opts.option("--report", "Write the search's HTML page here (opens offline).", _X),
    ),
)


@with_options(*CAPACITY_OPTIONS)
def capacity_cmd(**params: Any) -> None:
    """Highest arrival rate at which one deployment holds the SLO (bracketing + bisection)."""
    opts.apply_calibration(params["calibration"])
    check_positive("--start-rate", params["start_rate"])
    check_tol(params["tol"])
    report_file = params["report_file"]
    check_report_file(report_file)
    flags = config_flags(params) | scheduler_overrides(params["scheduler"])
    wl = {"preset": params["workload"], "arrival": None, "rate": None, "cv": None}
    trace = {"trace": params["trace"], "trace_format": params["trace_format"]}
    cfg = build_config(params["config"], flags, {**wl, **trace})
    min_attainment = params["min_attainment"]
    given = slo_criterion(
        cfg,
        ttft_p99_s=params["slo_ttft_p99"],
        tpot_p99_s=params["slo_tpot_p99"],
        min_attainment=min_attainment,
    )
    if given.ttft_p99_s is None and given.tpot_p99_s is None and min_attainment is None:
        raise ConfigError("--slo-ttft-p99", None, "give an SLO target (or slo: in the config)")
    criterion = criterion_from_flags(given.ttft_p99_s, given.tpot_p99_s, min_attainment)
    if cfg.slo is None:  # the targets as per-request ones too: each probe's goodput, attainment
        slo = SLOConfig(ttft_s=criterion.ttft_p99_s, tpot_s=criterion.tpot_p99_s)
        cfg = cfg.model_copy(update={"slo": slo})
    report = capacity(cfg, criterion, start_rate_per_s=params["start_rate"], rel_tol=params["tol"])
    if params["as_json"]:
        print_json(_as_json(report))
    else:
        render_capacity(report)
    if report_file is not None:
        _write_report(report, criterion, cfg, report_file)


def _as_json(report: CapacityReport) -> dict[str, Any]:
    """``capacity --json``: the capacity, what limits it and every probe of the search."""
    return {
        "rate_per_s": report.rate_per_s,
        "rate_per_gpu": report.rate_per_gpu,
        "rate_per_dollar_hour": report.rate_per_dollar_hour,
        "limiting": report.limiting,
        "probes": [
            {
                "rate_per_s": p.rate_per_s,
                "holds": p.holds,
                "limiting": p.limiting,
                # value / target of the limiting metric, as the table shows it
                "ratio": p.ratio if math.isfinite(p.ratio) else None,
            }
            for p in report.search.probes
        ],
    }


def _write_report(
    report: CapacityReport, criterion: SLOCriterion, cfg: SimConfig, path: Path
) -> None:
    """The HTML page of the search; what ran is the run at the capacity when one held."""
    from servesim.cli.capacity_page import write_capacity_page
    from servesim.cli.simulate_render import settings_rows

    if report.result is not None:
        settings = settings_rows(report.result)
    else:  # no rate held: the config is all there is to show
        hw = cfg.hardware
        settings = [("model", cfg.model), ("hardware", f"{hw.gpu} tp {hw.tp} pp {hw.pp}")]
    note_report(write_capacity_page(report, criterion, settings, path))
