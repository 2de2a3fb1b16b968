"""CLI commands for the perf area: ``servesim perf`` (one batch, op by op) and
``servesim calibration`` (the held-out error of the fitted curves)."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from servesim.cli import options as opts
from servesim.cli import perf_op as op_cli
from servesim.cli.common import console, err_console, print_json
from servesim.core import domains as dom
from servesim.core.errors import ConfigError
from servesim.perf.calibration import load_calibration
from servesim.perf.host import resolve_host_profile
from servesim.perf.kv_groups import batch_pages, kv_layout, window_memory_rows
from servesim.perf.kv_layout import KVLayout
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.stacks import resolve_kernel_stack
from servesim.perf.types import BatchShape, OpCost, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.specs.dtypes import DType, serving_formats

JsonOption = Annotated[bool, typer.Option("--json", help="Print deterministic JSON instead.")]
_TOKEN_BUDGET = "Token budget per iteration (sizes the activation reserve)."
_ITEM = re.compile(r"^(prefill|decode)=(\d+)x(\d+)(?:\+(\d+))?$")
BATCH_HELP = (
    "Comma-separated items: prefill=NxCHUNK[+CONTEXT] (N chunks of CHUNK new tokens over "
    "CONTEXT cached tokens) and decode=NxCONTEXT (N sequences attending CONTEXT tokens)."
)


def parse_batch(text: str) -> BatchShape:
    """Parse ``"prefill=1x2048,decode=64x1500"`` into a ``BatchShape``."""
    return BatchShape.from_lists(*parse_batch_items(text))


def parse_batch_items(text: str) -> tuple[list[tuple[int, int]], list[int]]:
    """``--batch`` as (prefill (chunk, cached context) items, decode contexts)."""
    prefill: list[tuple[int, int]] = []
    decode: list[int] = []
    for raw in text.split(","):
        item = raw.strip().replace(" ", "")
        match = _ITEM.match(item)
        if match is None:
            raise ConfigError(
                "batch", raw, "expected prefill=NxCHUNK[+CONTEXT] or decode=NxCONTEXT"
            )
        kind, count, size, extra = match.groups()
        if int(count) < 1 or int(size) < 1:
            raise ConfigError("--batch", raw.strip(), "N and the token count must be >= 1")
        if kind == "prefill":
            prefill.extend([(int(size), int(extra or 0))] * int(count))
        else:
            if extra:
                raise ConfigError(
                    "batch", raw, "decode items take no +CONTEXT (use decode=NxCONTEXT)"
                )
            decode.extend([int(size)] * int(count))
    return prefill, decode


def check_batch_fits(
    text: str, max_context_tokens: int, memory: dict[str, Any], layout: KVLayout | None = None
) -> None:
    """Refuse a batch no replica could hold: a sequence beyond the model's context window, or
    more KV blocks than the memory plan has (pages of ``layout``'s groups when given)."""
    prefill, decode = parse_batch_items(text)
    contexts = [chunk + cached for chunk, cached in prefill] + decode
    longest = max(contexts, default=0)
    if longest > max_context_tokens:
        raise ConfigError(
            "--batch",
            text,
            f"a sequence of {longest:,} tokens exceeds the model's {max_context_tokens:,}-token "
            "context window",
        )
    block = int(memory["block_size_tokens"])
    # a decode step writes one more token after the CONTEXT it attends
    needed = sum(-(-n // block) for n in contexts) + sum(1 for n in decode if n % block == 0)
    if layout is not None and not layout.plain:
        needed = batch_pages(layout, prefill, decode)
    if needed > memory["num_kv_blocks"]:
        raise ConfigError(
            "--batch",
            text,
            f"needs {needed * block:,} KV tokens ({needed:,} blocks) but the memory plan holds "
            f"{memory['max_kv_tokens']:,}",
        )


def _activation_dtype(weights: DType, architecture: str, given: str | None) -> DType:
    if given is not None:
        return DType.parse(given)
    return serving_formats(weights, architecture=architecture)[1]


def _ops_table(ops: list[OpCost], total_s: float) -> Table:
    table = Table(title="Iteration, op by op (per GPU; time summed over the count)")
    for header in ("op", "scope", "count", "GFLOP", "MB", "bound", "time ms", "share"):
        table.add_column(header, justify="left" if header in ("op", "scope", "bound") else "right")
    for op in ops:
        table.add_row(
            op.name,
            op.scope,
            str(op.count),
            f"{op.flops / 1e9:,.2f}",
            f"{op.num_bytes / 1e6:,.2f}",
            op.bound,
            f"{op.time_s * 1e3:.3f}",
            f"{100 * op.time_s / total_s:.1f}%" if total_s else "-",
        )
    return table


def _memory_table(memory: dict[str, Any]) -> Table:
    table = Table(title="Memory plan (one GPU of the binding stage)", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value", justify="right")
    for key, value in memory.items():
        shown = (
            f"{value / 1024**3:.2f} GiB"
            if key.endswith("_bytes") and key != "kv_bytes_per_token"
            else str(value)
            if isinstance(value, str)
            else f"{value:,}"
        )
        table.add_row(key, shown)
    return table


def perf_command(
    model: Annotated[str | None, opts.model()] = None,
    gpu: Annotated[str, opts.gpu(show_default=True)] = "h100-sxm",
    batch: Annotated[str, typer.Option(help=BATCH_HELP)] = "prefill=1x2048,decode=64x1500",
    tp: Annotated[int, opts.tp(show_default=True)] = 1,
    pp: Annotated[int, opts.pp(show_default=True)] = 1,
    ep: Annotated[int, typer.Option(help="Expert-parallel degree (MoE).")] = 1,
    dtype: Annotated[str, opts.dtype(show_default=True)] = "bf16",
    activation_dtype: Annotated[
        str | None,
        typer.Option(
            help="GEMM compute dtype (default: fp8 for fp8 weights on FP8 GPUs, else bf16)."
        ),
    ] = None,
    kv_dtype: Annotated[str, opts.kv_dtype(show_default=True)] = "bf16",
    gpu_memory_utilization: Annotated[float, opts.gpu_memory_utilization(show_default=True)] = 0.9,
    max_num_batched_tokens: Annotated[
        int, opts.max_num_batched_tokens(show_default=True, help_text=_TOKEN_BUDGET)
    ] = 8192,
    block_size: Annotated[
        int, typer.Option(help=dom.BLOCK_SIZE.help("KV block size in tokens."))
    ] = 16,
    cuda_graphs: Annotated[bool, opts.cuda_graphs(show_default=True)] = True,
    host_overhead: Annotated[
        str,
        typer.Option(help="Host overhead profile: vllm-v0, vllm-v0-multistep, vllm-v1 or none."),
    ] = "vllm-v0",
    kernel_stack: Annotated[
        str,
        typer.Option(
            help="Kernel stack: auto (the host profile's), vllm-0.6, vllm-0.24, sglang-0.5."
        ),
    ] = "auto",
    calibration: Annotated[
        str | None, typer.Option(help="Calibration JSON (servesim calibrate); default packaged.")
    ] = None,
    op: Annotated[str | None, typer.Option(help=op_cli.OP_HELP)] = None,
    stack: op_cli.OpStack = "vllm-0.24",
    m: op_cli.OpM = None,
    n: op_cli.OpN = None,
    k: op_cli.OpK = None,
    seqs: op_cli.OpSeqs = None,
    isl: op_cli.OpIsl = None,
    context: op_cli.OpContext = None,
    num_heads: op_cli.OpHeads = None,
    num_kv_heads: op_cli.OpKvHeads = None,
    head_dim: op_cli.OpHeadDim = None,
    window: op_cli.OpWindow = None,
    num_gpus: op_cli.OpGpus = None,
    num_bytes: op_cli.OpBytes = None,
    tokens: op_cli.OpTokens = None,
    hidden: op_cli.OpHidden = None,
    inter: op_cli.OpInter = None,
    topk: op_cli.OpTopk = None,
    experts: op_cli.OpExperts = None,
    zipf: op_cli.OpZipf = None,
    as_json: JsonOption = False,
) -> None:
    """Predict one iteration of a batch op by op (or, with --op, one operator's time).

    With --op the answer names the calibration and kernel stack that priced it.
    """
    if op is not None:
        values = {
            "m": m, "n": n, "k": k, "seqs": seqs, "isl": isl, "context": context,
            "num_heads": num_heads, "num_kv_heads": num_kv_heads, "head_dim": head_dim,
            "window": window, "num_gpus": num_gpus, "num_bytes": num_bytes, "tokens": tokens,
            "hidden": hidden, "inter": inter, "topk": topk, "experts": experts, "zipf": zipf,
        }  # fmt: skip
        op_cli.run_op_query(
            gpu=gpu, op=op, stack=stack, dtype=dtype, kv_dtype=kv_dtype, ep=ep,
            as_json=as_json, values=values, calibration=calibration,
        )  # fmt: skip
        return
    if model is None:
        raise ConfigError("--model", None, "is required (or give --op to price one operator)")
    opts.check_flags(dict(locals()))
    gpu_spec = get_gpu(gpu)
    weights = DType.parse(dtype)
    plan = ReplicaPlan(
        model=resolve_model(model),
        gpu=gpu_spec,
        tp=tp,
        pp=pp,
        ep=ep,
        weight_dtype=weights,
        activation_dtype=_activation_dtype(weights, gpu_spec.architecture, activation_dtype),
        kv_dtype=DType.parse(kv_dtype),
        use_cuda_graphs=cuda_graphs,
        host_profile=resolve_host_profile(host_overhead),
        kernel_stack=resolve_kernel_stack(kernel_stack, resolve_host_profile(host_overhead)),
    )
    shape = parse_batch(batch)
    perf = RooflinePerfModel(load_calibration(calibration))
    times = perf.iteration_time(plan, shape)
    ops = perf.explain(plan, shape)
    memory = asdict(
        perf.memory_plan(
            plan,
            block_size_tokens=block_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_batched_tokens=max_num_batched_tokens,
        )
    )
    memory["max_kv_tokens"] = memory["num_kv_blocks"] * memory["block_size_tokens"]
    layout = kv_layout(plan, block_size)
    if not layout.plain:  # pages of several groups: what a longest sequence costs
        ctx = plan.model.max_context_tokens
        memory.update(window_memory_rows(layout, memory["num_kv_blocks"], ctx))
    check_batch_fits(batch, plan.model.max_context_tokens, memory, layout)
    calibrated = perf.is_calibrated(plan)
    if as_json:
        print_json(
            {
                "model": plan.model.name,
                "gpu": plan.gpu.name,
                "tp": tp,
                "pp": pp,
                "ep": ep,
                "weight_dtype": plan.weight_dtype.value,
                "activation_dtype": plan.activation_dtype.value,
                "kv_dtype": plan.kv_dtype.value,
                "batch": asdict(shape),
                "calibrated": calibrated,
                "host_profile": plan.host_profile,
                "kernel_stack": plan.kernel_stack,
                "kernels": graph_sources(perf, plan),
                "total_s": times.total_s,
                "stage_s": list(times.stage_s),
                "overhead_s": times.overhead_s,
                "flops": times.flops,
                "hbm_bytes": times.hbm_bytes,
                "ops": [asdict(op) for op in ops],
                "memory": memory,
            }
        )
        return
    console.print(_ops_table(ops, times.total_s))
    stages = ", ".join(f"{s * 1e3:.3f}" for s in times.stage_s)
    console.print(
        f"iteration total {times.total_s * 1e3:.3f} ms "
        f"(stages [{stages}] ms + host {times.overhead_s * 1e3:.3f} ms, "
        f"profile {plan.host_profile}, kernel stack {plan.kernel_stack})"
    )
    if not calibrated:
        err_console.print(
            f"warning: {plan.gpu.name} has no measured kernel tables: "
            "UNCALIBRATED roofline with default efficiencies"
        )
    console.print(_memory_table(memory))


def graph_sources(perf: RooflinePerfModel, plan: ReplicaPlan) -> dict[str, str]:
    """Operator family -> which calibration prices it for this plan."""
    return perf.kernel_sources(plan)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the servesim app."""
    app.command("perf")(perf_command)
