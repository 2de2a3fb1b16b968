"""CLI commands for the workload area: ``servesim workload list|describe``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from servesim.cli.common import console, print_json
from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload import WorkloadConfig, describe, get_preset, preset_names
from servesim.workload.describe import WorkloadStats
from servesim.workload.length_config import parse_dist_spec

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
        rows.append(
            {
                "name": name,
                "description": preset.description,
                "source": preset.source,
                "arrival": preset.arrival_kind,
                "rate_per_s": preset.rate_per_s,
                "cv": preset.cv,
                "prompt_p50_tokens": quality["prompt"]["p50"][1],
                "output_p50_tokens": quality["output"]["p50"][1],
                "fit_quality": quality,
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table(title="workload presets", caption="source files and fit quality: --json")
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


def _config(
    preset: str | None,
    trace: Path | None,
    trace_format: str | None,
    skip_bad_rows: bool,
    arrival: str | None,
    rate: float | None,
    cv: float | None,
    lengths: str | None,
    prompt_lengths: str | None,
    output_lengths: str | None,
    num_requests: int | None,
    max_context_tokens: int | None,
) -> WorkloadConfig:
    fields: dict[str, Any] = {"num_requests": num_requests}
    if trace is not None:
        fields["trace"] = {
            "path": trace,
            "format": trace_format,
            "skip_bad_rows": skip_bad_rows,
            "max_context_tokens": max_context_tokens,
        }
    if arrival is not None:
        if rate is None:
            raise ConfigError("--rate", None, f"needed with --arrival {arrival}")
        spec: dict[str, Any] = {"kind": arrival, "rate_per_s": rate}
        if cv is not None:
            spec["cv"] = cv
        fields["arrival"] = spec
    elif rate is not None:
        if trace is not None:
            raise ConfigError("--rate", rate, "with --trace give --arrival too (replay at rate)")
        fields["rate_per_s"] = rate
    if lengths is not None:
        fields["lengths"] = {"kind": "preset", "name": lengths}
    if (prompt_lengths is None) != (output_lengths is None):
        raise ConfigError("--prompt-lengths", prompt_lengths, "give with --output-lengths")
    if prompt_lengths is not None and output_lengths is not None:
        fields["lengths"] = {
            "kind": "independent",
            "prompt": parse_dist_spec(prompt_lengths),
            "output": parse_dist_spec(output_lengths),
        }
    if preset is not None:
        fields["preset"] = preset
    return WorkloadConfig(**fields)


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


@workload_app.command("describe")
def describe_cmd(
    preset: str | None = typer.Option(None, "--preset", help="Preset name (see list)."),
    trace: Path | None = typer.Option(None, "--trace", help="Trace file (CSV or JSONL)."),
    trace_format: str | None = typer.Option(None, "--trace-format", help="Trace format name."),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Skip and count bad rows."),
    arrival: str | None = typer.Option(None, "--arrival", help="poisson, gamma or constant."),
    rate: float | None = typer.Option(None, "--rate", help="Arrival rate (req/s)."),
    cv: float | None = typer.Option(None, "--cv", help="Inter-arrival CV (gamma)."),
    lengths: str | None = typer.Option(None, "--lengths", help="Use a preset's lengths."),
    prompt_lengths: str | None = typer.Option(
        None, "--prompt-lengths", help="e.g. 512, uniform:min_tokens=10,max_tokens=100"
    ),
    output_lengths: str | None = typer.Option(
        None, "--output-lengths", help="e.g. lognormal:median_tokens=200,sigma=1"
    ),
    num_requests: int | None = typer.Option(None, "--num-requests", help="Number of requests."),
    max_context_tokens: int | None = typer.Option(
        None, "--max-context-tokens", help="Cap trace rows to this context (counted)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Describe a workload (default: the sharegpt preset, 1,000 requests, its default rate)."""
    config = _config(
        preset,
        trace,
        trace_format,
        skip_bad_rows,
        arrival,
        rate,
        cv,
        lengths,
        prompt_lengths,
        output_lengths,
        num_requests,
        max_context_tokens,
    )
    workload = config.build(RandomStreams(seed))
    stats = describe(workload)
    if as_json:
        print_json(stats.to_dict())
        return
    console.print(_stats_table(stats))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the servesim app."""
    app.add_typer(workload_app, name="workload")
