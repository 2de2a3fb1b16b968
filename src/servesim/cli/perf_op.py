"""``servesim perf --op ...``: one operator's predicted time, and which calibration priced it."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from servesim.cli.common import console, print_json
from servesim.perf.calibration import load_calibration
from servesim.perf.op_query import OPS, op_time_s

PANEL = "Op query (with --op)"


def _opt(flag: str, text: str) -> Any:
    return typer.Option(flag, help=text, rich_help_panel=PANEL, show_default=False)


# The shape options of ``perf --op``; each maps to a keyword of servesim.perf.op_time_s.
OpM = Annotated[float | None, _opt("--m", "GEMM: tokens (rows of the activation).")]
OpN = Annotated[int | None, _opt("--n", "GEMM: output features.")]
OpK = Annotated[int | None, _opt("--k", "GEMM: input features.")]
OpSeqs = Annotated[int | None, _opt("--seqs", "Attention: sequences in the batch.")]
OpIsl = Annotated[int | None, _opt("--isl", "Prefill attention: new tokens per sequence.")]
OpContext = Annotated[
    int | None, _opt("--context", "Attention: cached tokens per sequence (decode: KV read).")
]
OpHeads = Annotated[int | None, _opt("--num-heads", "Attention: query heads per GPU.")]
OpKvHeads = Annotated[int | None, _opt("--num-kv-heads", "Attention: KV heads per GPU.")]
OpHeadDim = Annotated[int | None, _opt("--head-dim", "Attention: head dimension (128).")]
OpWindow = Annotated[int | None, _opt("--window", "Attention: sliding window (0: full).")]
OpGpus = Annotated[int | None, _opt("--num-gpus", "Collective: GPUs in the group.")]
OpBytes = Annotated[float | None, _opt("--bytes", "Collective: bytes of the full tensor.")]
OpTokens = Annotated[int | None, _opt("--tokens", "MoE: tokens entering the layer.")]
OpHidden = Annotated[int | None, _opt("--hidden", "MoE: model width.")]
OpInter = Annotated[int | None, _opt("--inter", "MoE: expert FFN width per rank.")]
OpTopk = Annotated[int | None, _opt("--topk", "MoE: experts per token.")]
OpExperts = Annotated[int | None, _opt("--experts", "MoE: routed experts.")]
OpZipf = Annotated[float | None, _opt("--zipf", "MoE: routing skew (Zipf exponent, 0).")]
OpStack = Annotated[
    str, _opt("--stack", "Kernel stack: vllm-0.6, vllm-0.24 (default), sglang-0.5.")
]


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
    """Price one op and print it (a table, or JSON with ``as_json``)."""
    names = {
        "m": "m",
        "n": "n",
        "k": "k",
        "seqs": "batch",
        "isl": "isl",
        "context": "context",
        "num_heads": "num_heads",
        "num_kv_heads": "num_kv_heads",
        "head_dim": "head_dim",
        "window": "window",
        "num_gpus": "num_gpus",
        "num_bytes": "num_bytes",
        "tokens": "num_tokens",
        "hidden": "hidden",
        "inter": "inter",
        "topk": "topk",
        "experts": "num_experts",
        "zipf": "zipf",
    }
    shape = {names[k]: v for k, v in values.items() if v is not None}
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
