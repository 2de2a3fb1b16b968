"""CLI commands for the perf area: ``servesim perf`` (one batch, op by op) and
``servesim calibration`` (the held-out error of the fitted curves)."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

import typer
from rich.table import Table

from servesim.cli import options as opts
from servesim.cli import perf_op as op_cli
from servesim.cli.common import console, err_console, print_json
from servesim.cli.params import Opt, with_options
from servesim.core import domains as dom
from servesim.core.errors import ConfigError
from servesim.perf.calibration import load_calibration
from servesim.perf.host import resolve_host_profile
from servesim.perf.kv_groups import batch_pages, kv_layout, vllm_block_size, window_memory_rows
from servesim.perf.kv_layout import KVLayout
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.stacks import resolve_kernel_stack
from servesim.perf.types import BatchShape, OpCost, ReplicaPlan, StageTimes
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.specs.dtypes import DType, serving_formats

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


PERF_OPTIONS: tuple[Opt, ...] = (
    Opt("model", str | None, opts.model()),
    Opt("gpu", str, opts.gpu(show_default=True), "h100-sxm"),
    Opt("batch", str, typer.Option(help=BATCH_HELP), "prefill=1x2048,decode=64x1500"),
    Opt("tp", int, opts.tp(show_default=True), 1),
    Opt("pp", int, opts.pp(show_default=True), 1),
    Opt("ep", int, typer.Option(help="Expert-parallel degree (MoE)."), 1),
    Opt("dtype", str, opts.dtype(show_default=True), "bf16"),
    Opt(
        "activation_dtype",
        str | None,
        typer.Option(
            help="GEMM compute dtype (default: fp8 for fp8 weights on FP8 GPUs, else bf16)."
        ),
    ),
    Opt("kv_dtype", str, opts.kv_dtype(show_default=True), "bf16"),
    Opt("gpu_memory_utilization", float, opts.gpu_memory_utilization(show_default=True), 0.9),
    Opt(
        "max_num_batched_tokens",
        int,
        opts.max_num_batched_tokens(show_default=True, help_text=_TOKEN_BUDGET),
        8192,
    ),
    Opt("block_size", int, typer.Option(help=dom.BLOCK_SIZE.help("KV block size in tokens.")), 16),
    Opt("cuda_graphs", bool, opts.cuda_graphs(show_default=True), True),
    Opt(
        "host_overhead",
        str,
        typer.Option(help="Host overhead profile: vllm-v0, vllm-v0-multistep, vllm-v1 or none."),
        "vllm-v0",
    ),
    Opt(
        "kernel_stack",
        str,
        typer.Option(
            help="Kernel stack: auto (the host profile's), vllm-0.6, vllm-0.24, sglang-0.5."
        ),
        "auto",
    ),
    Opt(
        "calibration",
        str | None,
        typer.Option(help="Calibration JSON (servesim calibrate); default packaged."),
    ),
    Opt("op", str | None, typer.Option(help=op_cli.OP_HELP)),
    *op_cli.OP_OPTIONS,
    Opt("as_json", bool, typer.Option("--json", help="Print deterministic JSON instead."), False),
)


@with_options(*PERF_OPTIONS)
def perf_command(**params: Any) -> None:
    """Predict one iteration of a batch op by op (or, with --op, one operator's time).

    With --op the answer names the calibration and kernel stack that priced it.
    """
    if params["op"] is not None:
        op_cli.run_op_query(
            values={name: params[name] for name in op_cli.SHAPE_OPTIONS},
            **{key: params[key] for key in _OP_QUERY_KEYS},
        )
        return
    if params["model"] is None:
        raise ConfigError("--model", None, "is required (or give --op to price one operator)")
    opts.check_flags(params)
    plan = _replica_plan(params)
    batch = params["batch"]
    shape = parse_batch(batch)
    perf = RooflinePerfModel(load_calibration(params["calibration"]))
    times = perf.iteration_time(plan, shape)
    ops = perf.explain(plan, shape)
    memory = _memory_rows(perf, plan, params)
    check_batch_fits(
        batch, plan.model.max_context_tokens, memory, kv_layout(plan, memory["block_size_tokens"])
    )
    if params["as_json"]:
        print_json(_as_json(perf, plan, shape, times, ops, memory))
        return
    console.print(_ops_table(ops, times.total_s))
    stages = ", ".join(f"{s * 1e3:.3f}" for s in times.stage_s)
    console.print(
        f"iteration total {times.total_s * 1e3:.3f} ms "
        f"(stages [{stages}] ms + host {times.overhead_s * 1e3:.3f} ms, "
        f"profile {plan.host_profile}, kernel stack {plan.kernel_stack})"
    )
    if not perf.is_calibrated(plan):
        err_console.print(
            f"warning: {plan.gpu.name} has no measured kernel tables: "
            "UNCALIBRATED roofline with default efficiencies"
        )
    console.print(_memory_table(memory))


# what ``perf --op`` passes on to ``run_op_query`` besides the shape
_OP_QUERY_KEYS = ("gpu", "op", "stack", "dtype", "kv_dtype", "ep", "as_json", "calibration")


def _replica_plan(params: dict[str, Any]) -> ReplicaPlan:
    """The deployment the flags describe (one replica)."""
    gpu_spec = get_gpu(params["gpu"])
    weights = DType.parse(params["dtype"])
    host_profile = resolve_host_profile(params["host_overhead"])
    return ReplicaPlan(
        model=resolve_model(params["model"]),
        gpu=gpu_spec,
        tp=params["tp"],
        pp=params["pp"],
        ep=params["ep"],
        weight_dtype=weights,
        activation_dtype=_activation_dtype(
            weights, gpu_spec.architecture, params["activation_dtype"]
        ),
        kv_dtype=DType.parse(params["kv_dtype"]),
        use_cuda_graphs=params["cuda_graphs"],
        host_profile=host_profile,
        kernel_stack=resolve_kernel_stack(params["kernel_stack"], host_profile),
    )


def _memory_rows(
    perf: RooflinePerfModel, plan: ReplicaPlan, params: dict[str, Any]
) -> dict[str, Any]:
    """The memory plan's figures, with the KV tokens it holds (and, for models with several
    KV groups, what a longest sequence costs)."""
    block_size = vllm_block_size(plan, params["block_size"])  # raised for state models
    memory = asdict(
        perf.memory_plan(
            plan,
            block_size_tokens=block_size,
            gpu_memory_utilization=params["gpu_memory_utilization"],
            max_num_batched_tokens=params["max_num_batched_tokens"],
        )
    )
    memory["max_kv_tokens"] = memory["num_kv_blocks"] * memory["block_size_tokens"]
    layout = kv_layout(plan, block_size)
    if not layout.plain:  # pages of several groups: what a longest sequence costs
        ctx = plan.model.max_context_tokens
        memory.update(window_memory_rows(layout, memory["num_kv_blocks"], ctx))
    return memory


def _as_json(
    perf: RooflinePerfModel,
    plan: ReplicaPlan,
    shape: BatchShape,
    times: StageTimes,
    ops: list[OpCost],
    memory: dict[str, Any],
) -> dict[str, Any]:
    """``perf --json``: the deployment, the batch, the times, each op and the memory plan."""
    return {
        "model": plan.model.name,
        "gpu": plan.gpu.name,
        "tp": plan.tp,
        "pp": plan.pp,
        "ep": plan.ep,
        "weight_dtype": plan.weight_dtype.value,
        "activation_dtype": plan.activation_dtype.value,
        "kv_dtype": plan.kv_dtype.value,
        "batch": asdict(shape),
        "calibrated": perf.is_calibrated(plan),
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


def graph_sources(perf: RooflinePerfModel, plan: ReplicaPlan) -> dict[str, str]:
    """Operator family -> which calibration prices it for this plan."""
    return perf.kernel_sources(plan)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the servesim app."""
    app.command("perf")(perf_command)
