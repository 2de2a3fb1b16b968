"""``servesim perf --op ...``: one operator's predicted time, and which calibration priced it."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from servesim.cli.common import console, print_json
from servesim.cli.params import Opt
from servesim.perf.calibration import load_calibration
from servesim.perf.op_query import OPS, op_time_s

PANEL = "Op query (with --op)"


def _opt(flag: str, text: str) -> Any:
    return typer.Option(flag, help=text, rich_help_panel=PANEL, show_default=False)


# The shape options of ``perf --op`` (after ``--stack``); each is a keyword of
# servesim.perf.op_time_s, under its own name unless ``_SHAPE_KEYWORD`` renames it.
OP_OPTIONS: tuple[Opt, ...] = (
    Opt(
        "stack",
        str,
        _opt("--stack", "Kernel stack: vllm-0.6, vllm-0.24 (default), sglang-0.5."),
        "vllm-0.24",
    ),
    Opt("m", float | None, _opt("--m", "GEMM: tokens (rows of the activation).")),
    Opt("n", int | None, _opt("--n", "GEMM: output features.")),
    Opt("k", int | None, _opt("--k", "GEMM: input features.")),
    Opt("seqs", int | None, _opt("--seqs", "Attention: sequences in the batch.")),
    Opt("isl", int | None, _opt("--isl", "Prefill attention: new tokens per sequence.")),
    Opt(
        "context",
        int | None,
        _opt("--context", "Attention: cached tokens per sequence (decode: KV read)."),
    ),
    Opt("num_heads", int | None, _opt("--num-heads", "Attention: query heads per GPU.")),
    Opt("num_kv_heads", int | None, _opt("--num-kv-heads", "Attention: KV heads per GPU.")),
    Opt("head_dim", int | None, _opt("--head-dim", "Attention: head dimension (128).")),
    Opt("window", int | None, _opt("--window", "Attention: sliding window (0: full).")),
    Opt("num_gpus", int | None, _opt("--num-gpus", "Collective: GPUs in the group.")),
    Opt("num_bytes", float | None, _opt("--bytes", "Collective: bytes of the full tensor.")),
    Opt(
        "eager",
        bool | None,
        _opt("--eager", "All-reduce: not graph-captured (adds the custom kernel's input copy)."),
    ),
    Opt("tokens", int | None, _opt("--tokens", "MoE: tokens entering the layer.")),
    Opt("hidden", int | None, _opt("--hidden", "MoE: model width.")),
    Opt("inter", int | None, _opt("--inter", "MoE: expert FFN width per rank.")),
    Opt("topk", int | None, _opt("--topk", "MoE: experts per token.")),
    Opt("experts", int | None, _opt("--experts", "MoE: routed experts.")),
    Opt("zipf", float | None, _opt("--zipf", "MoE: routing skew (Zipf exponent, 0).")),
)
SHAPE_OPTIONS = tuple(opt.name for opt in OP_OPTIONS[1:])
_SHAPE_KEYWORD = {"seqs": "batch", "tokens": "num_tokens", "experts": "num_experts"}


def run_op_query(
    *,
    gpu: str,
    op: str,
    stack: str,
    dtype: str,
    kv_dtype: str,
    ep: int,
    as_json: bool,
    values: dict[str, Any],
    calibration: str | None = None,
) -> None:
    """Price one op and print it (a table, or JSON with ``as_json``); ``values`` holds the
    ``SHAPE_OPTIONS`` given (None: not given)."""
    shape = {_SHAPE_KEYWORD.get(k, k): v for k, v in values.items() if v is not None}
    if op in ("prefill-attention", "decode-attention"):
        shape["kv_dtype"] = kv_dtype
    if op == "moe":
        shape["ep"] = ep
    cal = load_calibration(calibration)
    result = op_time_s(gpu, op, stack=stack, dtype=dtype, calibration=cal, **shape)
    if as_json:
        print_json(result.to_dict())
        return
    table = Table(title=f"{op} on {result.gpu} ({stack})", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    table.add_row("time", f"{result.time_s * 1e6:,.2f} us")
    table.add_row("shape", ", ".join(f"{k}={v}" for k, v in result.shape.items()))
    table.add_row("dtype", dtype)
    table.add_row("priced by", result.source)
    table.add_row("calibrated", "yes" if result.calibrated else "NO (borrowed or default)")
    table.add_row("calibration file", result.calibration_file or "(packaged)")
    console.print(table)


OP_HELP = "Price one operator instead of a batch: " + ", ".join(OPS) + "."
