"""CLI commands for the workload area: ``servesim workload list|describe``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import typer
import yaml
from rich.table import Table

from servesim.cli.common import console, print_json
from servesim.cli.options import check_flags
from servesim.cli.params import REQUIRED, Opt, with_options
from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload import Trace, Workload, WorkloadConfig, describe, get_preset, preset_names
from servesim.workload.describe import WorkloadStats
from servesim.workload.length_config import parse_dist_spec
from servesim.workload.native import write_requests
from servesim.workload.presets import RENAMED
from servesim.workload.traces import TraceReplay

workload_app = typer.Typer(
    help="Inspect workloads: presets, traces and synthetic arrival/length mixes.",
    no_args_is_help=True,
)


@workload_app.command("list")
def list_presets(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the built-in workload presets (fitted to public traces; no data files needed)."""
    rows = []
    for name in preset_names():
        preset = get_preset(name)
        quality = preset.fit_quality
        if quality:
            p50 = (quality["prompt"]["p50"][1], quality["output"]["p50"][1])
        else:  # a parametric model: its medians from a fixed-seed sample
            prompts, outputs = preset.lengths.sample(np.random.default_rng(0), 20_000)
            p50 = (float(np.median(prompts)), float(np.median(outputs)))
        rows.append(
            {
                "name": name,
                "description": preset.description,
                "source": preset.source,
                "arrival": preset.arrival_kind,
                "rate_per_s": preset.rate_per_s,
                "cv": preset.cv,
                "prompt_p50_tokens": p50[0],
                "output_p50_tokens": p50[1],
                "fit_quality": quality,
            }
        )
    if as_json:
        print_json(rows)
        return
    renamed = ", ".join(f"{old} -> {new}" for old, new in RENAMED.items())
    table = Table(
        title="workload presets",
        caption=f"source files and fit quality: --json; renamed (old names still work): {renamed}",
    )
    for column in ("name", "description", "default arrival", "prompt p50", "output p50"):
        table.add_column(column, overflow="fold")
    for row in rows:
        arrival = f"{row['arrival']} {row['rate_per_s']:g}/s"
        if row["arrival"] == "gamma":
            arrival += f" cv {row['cv']:g}"
        table.add_row(
            row["name"],
            row["description"],
            arrival,
            f"{row['prompt_p50_tokens']:g}",
            f"{row['output_p50_tokens']:g}",
        )
    console.print(table)


# Arrival kinds fully described by --rate (and --cv); on/off and time-varying need a file.
_CLI_ARRIVALS = ("poisson", "gamma", "constant")


def _arrival_fields(o: dict[str, Any]) -> dict[str, Any]:
    if o["arrival"] is None:
        # A preset's rate override; a timed trace rescaled to it; a length-only trace as Poisson.
        return {"rate_per_s": o["rate"]} if o["rate"] is not None else {}
    if o["arrival"] not in _CLI_ARRIVALS:
        raise ConfigError(
            "--arrival",
            o["arrival"],
            f"must be one of {', '.join(_CLI_ARRIVALS)} (others: --config)",
        )
    if o["rate"] is None:
        raise ConfigError("--rate", None, f"needed with --arrival {o['arrival']}")
    if o["cv"] is not None and o["arrival"] != "gamma":
        raise ConfigError("--cv", o["cv"], "only applies to --arrival gamma")
    spec: dict[str, Any] = {"kind": o["arrival"], "rate_per_s": o["rate"]}
    if o["cv"] is not None:
        spec["cv"] = o["cv"]
    return {"arrival": spec}


def _lengths_fields(o: dict[str, Any]) -> dict[str, Any]:
    prompt, output = o["prompt_lengths"], o["output_lengths"]
    if (prompt is None) != (output is None):
        raise ConfigError("--prompt-lengths", prompt, "give it together with --output-lengths")
    if prompt is not None and output is not None:
        return {
            "lengths": {
                "kind": "independent",
                "prompt": parse_dist_spec(prompt),
                "output": parse_dist_spec(output),
            }
        }
    if o["lengths"] is not None:
        if Path(o["lengths"]).is_file():  # rows of a trace, sampled jointly
            return {"lengths": {"kind": "trace", "path": o["lengths"]}}
        return {"lengths": {"kind": "preset", "name": o["lengths"]}}
    return {}


def _config(o: dict[str, Any]) -> WorkloadConfig:
    """A ``WorkloadConfig`` from the describe command's options (a config file first)."""
    check_flags(o)
    fields: dict[str, Any] = {}
    if o["config"] is not None:
        fields = _read_config_file(o["config"])
    if o["trace"] is not None:
        fields["trace"] = {
            "path": o["trace"],
            "format": o["trace_format"],
            "skip_bad_rows": o["skip_bad_rows"],
            "max_context_tokens": o["max_context_tokens"],
            "rate_scale": o["rate_scale"],
        }
    elif o["rate_scale"] != 1.0:
        raise ConfigError("--rate-scale", o["rate_scale"], "applies to --trace only")
    fields.update(_arrival_fields(o))
    fields.update(_lengths_fields(o))
    for key in ("preset", "num_requests", "duration_s"):
        if o[key] is not None:
            fields[key] = o[key]
    if o["turns"] is not None:
        fields["sessions"] = {"mean_turns": o["turns"]}
    if o["group_size"] is not None:
        fields["groups"] = {"group_size": o["group_size"]}
    return WorkloadConfig(**fields)


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError("--config", str(path), "no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("--config", str(path), f"not valid YAML/JSON: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError("--config", str(path), "must hold a mapping of WorkloadConfig fields")
    return data.get("workload", data) if isinstance(data.get("workload"), dict) else data


def check_out_file(out: Path) -> None:
    """``--out`` names a file in a writable folder (checked before any request is made)."""
    if out.is_dir():
        raise ConfigError("--out", str(out), "is a folder; give a file name")
    folder = out.parent
    if not folder.is_dir():
        raise ConfigError("--out", str(out), f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError("--out", str(out), f"folder {folder} is not writable")


def _stats_table(stats: WorkloadStats) -> Table:
    table = Table(title=f"workload {stats.name}")
    table.add_column("", style="bold")
    for column in ("mean", "p50", "p90", "p99", "max"):
        table.add_column(column, justify="right")
    for label, s in (("prompt tokens", stats.prompt), ("output tokens", stats.output)):
        table.add_row(
            label, f"{s.mean:,.1f}", f"{s.p50:,.0f}", f"{s.p90:,.0f}", f"{s.p99:,.0f}", f"{s.max:,}"
        )
    table.caption = (
        f"{stats.num_requests:,} requests over {stats.duration_s:,.1f} s: "
        f"{stats.rate_per_s:.3f} req/s, inter-arrival CV {stats.interarrival_cv:.2f}"
        + (f"; {stats.num_sessions:,} sessions" if stats.num_sessions else "")
        + (f"; {stats.num_groups:,} sampling groups" if stats.num_groups else "")
        + (
            f"; prefix reuse {stats.prefix_reuse_ratio:.3f}"
            if stats.prefix_reuse_ratio is not None
            else ""
        )
        + (f"; {stats.num_skipped_rows:,} bad rows skipped" if stats.num_skipped_rows else "")
        + (f"; {stats.num_capped_requests:,} capped" if stats.num_capped_requests else "")
    )
    return table


def _skipped_lines(workload: Workload) -> list[str]:
    """Where and why rows were skipped (first few), for traces read with skip_bad_rows."""
    problems = workload.skipped_by_problem
    lines = [f"skipped {count:,} rows: {problem}" for problem, count in sorted(problems.items())]
    trace = workload.trace if isinstance(workload, TraceReplay) else workload
    examples = trace.first_skipped if isinstance(trace, Trace) else []
    return lines + [f"  e.g. {where}" for where in examples[:3]]


# The workload options of ``describe`` and ``generate`` (which adds --out).
WORKLOAD_OPTIONS: tuple[Opt, ...] = (
    Opt(
        "preset",
        str | None,
        typer.Option("--workload", "--preset", help="Workload preset (servesim workload list)."),
    ),
    Opt("trace", Path | None, typer.Option("--trace", help="Trace file (CSV or JSONL).")),
    Opt("trace_format", str | None, typer.Option("--trace-format", help="Trace format name.")),
    Opt(
        "skip_bad_rows",
        bool,
        typer.Option("--skip-bad-rows", help="Skip and count bad rows."),
        False,
    ),
    Opt(
        "rate_scale",
        float,
        typer.Option("--rate-scale", help="Trace: speed up arrivals by x."),
        1.0,
    ),
    Opt(
        "max_context_tokens",
        int | None,
        typer.Option("--max-context-tokens", help="Trace: cap rows to this context (counted)."),
    ),
    Opt(
        "arrival",
        str | None,
        typer.Option("--arrival", help="Arrival process: poisson, gamma or constant."),
    ),
    Opt(
        "rate",
        float | None,
        typer.Option(
            "--rate",
            help="Mean rate (req/s): of --arrival; else overrides the preset's, rescales a timed "
            "--trace, or replays a length-only one as Poisson.",
        ),
    ),
    Opt("cv", float | None, typer.Option("--cv", help="Inter-arrival CV (gamma).")),
    Opt(
        "lengths",
        str | None,
        typer.Option(
            "--lengths", help="A preset's lengths, or a trace file's rows (sampled jointly)."
        ),
    ),
    Opt(
        "prompt_lengths",
        str | None,
        typer.Option("--prompt-lengths", help="e.g. 512, uniform:min_tokens=10,max_tokens=100"),
    ),
    Opt(
        "output_lengths",
        str | None,
        typer.Option("--output-lengths", help="e.g. lognormal:median_tokens=200,sigma=1"),
    ),
    Opt(
        "turns",
        float | None,
        typer.Option(
            "--turns", help="Multi-turn: mean turns per session (arrivals = session starts)."
        ),
    ),
    Opt("group_size", int | None, typer.Option("--group-size", help="Parallel samples (n).")),
    Opt("num_requests", int | None, typer.Option("--num-requests", help="Number of requests.")),
    Opt(
        "duration_s",
        float | None,
        typer.Option("--duration-s", "--duration", help="Stop arrivals at this time (s)."),
    ),
    Opt(
        "config",
        Path | None,
        typer.Option(
            "--config", help="YAML/JSON file of WorkloadConfig fields (options override it)."
        ),
    ),
    Opt("seed", int, typer.Option("--seed", help="Random seed."), 0),
    Opt("as_json", bool, typer.Option("--json", help="Print JSON instead of a table."), False),
)


@workload_app.command("describe")
@with_options(*WORKLOAD_OPTIONS)
def describe_cmd(**options: Any) -> None:
    """Describe a workload (default: the sharegpt-vidur preset, 1,000 requests, its rate)."""
    workload = _config(options).build(RandomStreams(options["seed"]))
    stats = describe(workload)
    if options["as_json"]:
        print_json(stats.to_dict())
        return
    console.print(_stats_table(stats))
    for line in _skipped_lines(workload):
        console.print(line, markup=False, highlight=False)


@with_options(
    Opt("out", Path, typer.Option("--out", help="Output file (servesim JSONL)."), REQUIRED),
    *WORKLOAD_OPTIONS,
)
def generate_cmd(out: Path, **options: Any) -> None:
    """Write a workload's requests to a servesim JSONL file (read back by load_trace)."""
    workload = _config(options).build(RandomStreams(options["seed"]))
    check_out_file(out)
    try:
        count = write_requests(workload, out)
    except OSError as exc:
        raise ConfigError("--out", str(out), f"cannot be written: {exc.strerror}") from None
    if options["as_json"]:
        print_json({"path": str(out), "num_requests": count, "name": workload.name})
        return
    console.print(f"wrote {count:,} requests of {workload.name} to {out}", highlight=False)


workload_app.command("generate")(generate_cmd)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the servesim app."""
    app.add_typer(workload_app, name="workload")
