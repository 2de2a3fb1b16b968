"""CLI commands for the specs area: ``servesim models`` and ``servesim gpus``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from servesim.cli.common import console, print_json
from servesim.specs.catalog import get_gpu, list_gpus, list_models, resolve_model
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec
from servesim.specs.model import ModelSpec

JsonOption = Annotated[bool, typer.Option("--json", help="Print deterministic JSON instead.")]


def _billions(count: int) -> str:
    return f"{count / 1e9:.2f}B"


def _models_table(models: list[ModelSpec]) -> Table:
    table = Table(title="Models (figures from each HF config.json)")
    for header in (
        "name",
        "family",
        "params",
        "active",
        "layers",
        "hidden",
        "heads/kv",
        "context",
        "KV B/token bf16",
    ):
        table.add_column(header, justify="left" if header in ("name", "family") else "right")
    for m in models:
        table.add_row(
            m.name,
            m.family,
            _billions(m.num_params()),
            _billions(m.num_active_params()),
            str(m.num_layers),
            str(m.hidden_size),
            f"{m.num_attention_heads}/{m.num_kv_heads}",
            f"{m.max_context_tokens:,}",
            f"{m.kv_bytes_per_token(DType.BF16):,}",
        )
    return table


def _detail_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        table.add_row(key, str(value))
    return table


def _gpus_table(gpus: list[GPUSpec]) -> Table:
    table = Table(title="GPUs (dense peaks; sources: servesim gpus NAME)")
    for header in (
        "name",
        "vendor",
        "memory GiB",
        "HBM TB/s",
        "bf16 TFLOP/s",
        "fp8 TFLOP/s",
        "GPU link",
        "GB/s/dir",
        "TDP W",
        "$/GPU-h",
    ):
        table.add_column(
            header, justify="left" if header in ("name", "vendor", "GPU link") else "right"
        )
    for g in gpus:
        fp8 = g.peak_flops_per_s.get(DType.FP8)
        # Pre-Ampere parts (T4, Turing) have no bf16 tensor path: show "-" rather than fail.
        bf16 = g.peak_flops_per_s.get(DType.BF16)
        table.add_row(
            g.name,
            g.vendor,
            f"{g.memory_gib:g}",
            f"{g.hbm_bandwidth_bytes_per_s / 1e12:.2f}",
            f"{bf16 / 1e12:,.1f}" if bf16 else "-",
            f"{fp8 / 1e12:,.1f}" if fp8 else "-",
            g.intra_node_link.name,
            f"{g.intra_node_link.bandwidth_bytes_per_s / 1e9:g}",
            f"{g.tdp_w:g}",
            f"{g.price_per_hour_usd:.2f}",
        )
    return table


def _link_text(link: dict[str, Any] | None) -> str:
    if link is None:
        return "-"
    return (
        f"{link['name']}: {link['bandwidth_bytes_per_s'] / 1e9:g} GB/s per direction, "
        f"{link['latency_s'] * 1e6:g} us"
    )


def _gpu_rows(gpu: GPUSpec) -> dict[str, Any]:
    summary = gpu.summary()
    rows: dict[str, Any] = {
        "vendor": gpu.vendor,
        "form factor": gpu.form_factor,
        "memory": f"{gpu.memory_gib:g} GiB ({gpu.memory_bytes:,} bytes)",
        "HBM bandwidth": f"{gpu.hbm_bandwidth_bytes_per_s / 1e12:g} TB/s",
    }
    for dtype, flops in gpu.peak_flops_per_s.items():
        rows[f"peak {dtype.value} (dense)"] = f"{flops / 1e12:g} TFLOP/s"
    rows["GPU-GPU link"] = _link_text(summary["intra_node_link"])  # type: ignore[arg-type]
    rows["NVLink bridge (pairs)"] = _link_text(summary["pair_link"])  # type: ignore[arg-type]
    rows["host link"] = _link_text(summary["host_link"])  # type: ignore[arg-type]
    rows["TDP / idle"] = f"{gpu.tdp_w:g} W / {gpu.idle_w:g} W"
    rows["price"] = f"${gpu.price_per_hour_usd:.2f} per GPU-hour (indicative)"
    rows.update({f"source: {k}": v for k, v in sorted(gpu.sources.items())})
    return rows


def register(app: typer.Typer) -> None:
    """Add this area's commands to the servesim app."""

    @app.command("models")
    def models(
        name: Annotated[
            str | None,
            typer.Argument(help="Catalog name, HF repo id, or path to a config.json / its folder."),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """List the built-in models, or show one model (or a config.json) in detail."""
        if name is None:
            specs = list_models()
            if as_json:
                print_json([m.summary() for m in specs])
            else:
                console.print(_models_table(specs))
            return
        spec = resolve_model(name)
        if as_json:
            print_json(spec.summary())
        else:
            console.print(_detail_table(f"{spec.name} ({spec.source})", spec.summary()))

    @app.command("gpus")
    def gpus(
        name: Annotated[str | None, typer.Argument(help="GPU name or alias (h100, a100).")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """List the built-in GPUs, or show one GPU with the source of every figure."""
        if name is None:
            specs = list_gpus()
            if as_json:
                print_json([g.summary() for g in specs])
            else:
                console.print(_gpus_table(specs))
            return
        gpu = get_gpu(name)
        if as_json:
            print_json(gpu.summary())
        else:
            console.print(_detail_table(gpu.name, _gpu_rows(gpu)))
