"""Measure kernel tables on your own GPU, in the layout of NVIDIA aiconfigurator's tables.

Writes ``OUT/<gpu>/<family>/torch/<torch version>/<table>.parquet`` (+ collection_meta.yaml)
with the reference columns and units (latency in ms, message sizes in elements), which
``servesim calibrate --tables OUT`` and ``servesim.perf.fitting.tables`` read. Ops (see
measure_tables_torch.py): bf16 ``torch.nn.functional.linear`` and fp8 ``torch._scaled_mm``
with dynamic per-tensor activation quantisation; FlashAttention / SDPA-flash prefill and
decode; NCCL all-reduce. Timing as aiconfigurator: warm up, capture in a CUDA graph, replay,
CUDA-event time / replays (eager fallback recorded in ``kernel_source``).

Usage::

    python bench/measure_tables.py --out tables --quick            # ~2 min on one GPU
    python bench/measure_tables.py --out tables                    # the full grid (hours)
    torchrun --nproc-per-node 8 bench/measure_tables.py --out tables --families comm
    python bench/measure_tables.py --out tables --dry-run          # plan only, no torch

Under torchrun the all-reduce groups of 2, 4, ... GPUs are measured first by every rank;
rank 0 then measures the single-GPU families while the other ranks exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType

from measure_tables_io import Stamp, TableTarget, write_collection_meta, write_table
from measure_tables_plan import (
    FAMILIES,
    FAMILY_TABLES,
    FULL,
    QUICK,
    Grid,
    comm_cases,
    context_cases,
    gemm_cases,
    generation_cases,
)

logger = logging.getLogger("measure_tables")
FRAMEWORK = "torch"
ABORT_AFTER_FAILURES = 20  # this many failed cases in a row from the start: stop
# device-name patterns -> the aiconfigurator folder names servesim's stacks already know
_KNOWN_GPUS = (
    (r"H100.*(SXM|HBM3)", "h100_sxm"),
    (r"H200", "h200_sxm"),
    (r"A100.*SXM", "a100_sxm"),
    (r"L40S", "l40s"),
)


def gpu_folder(device_name: str) -> str:
    """The GPU folder for a device name: a known folder, else a lowercase slug."""
    for pattern, folder in _KNOWN_GPUS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return folder
    slug = re.sub(r"[^a-z0-9]+", "_", device_name.lower()).strip("_")
    return slug.removeprefix("nvidia_") or "unknown_gpu"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="root folder of the tables")
    parser.add_argument("--gpu-name", help="GPU folder name (default: from the device name)")
    parser.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help=f"comma-separated subset of {','.join(FAMILIES)}",
    )
    parser.add_argument("--quick", action="store_true", help="small grid (~2 min on one GPU)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the planned shapes and files; needs no torch"
    )
    parser.add_argument(
        "--list-shapes", action="store_true", help="with --dry-run: print every planned shape"
    )
    parser.add_argument(
        "--no-graph", action="store_true", help="time eagerly (rows get kernel_source '..._eager')"
    )
    args = parser.parse_args(argv)
    args.families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    return args


def planned_cases(family: str, grid: Grid, world_size: int, dtypes: tuple[str, ...]) -> list:
    """The cases of one family."""
    if family == "gemm":
        return gemm_cases(grid, dtypes)
    if family == "attention":
        return context_cases(grid) + generation_cases(grid)
    return comm_cases(grid, world_size)


def _axes(family: str, grid: Grid) -> list[str]:
    """The grid axes of one family, for the dry-run listing."""
    if family == "gemm":
        return [f"m: {list(grid.gemm_m)}", f"n = k: {list(grid.gemm_nk)}"]
    if family == "attention":
        return [
            f"(num_heads, num_kv_heads, head_dim): {len(grid.attn_heads)} configs, "
            f"e.g. {list(grid.attn_heads[:4])}",
            f"context batch: {list(grid.context_batch)}, isl: {list(grid.context_seq)} "
            f"(batch x isl <= {grid.max_context_tokens}, half for MHA)",
            f"generation batch: {list(grid.generation_batch)}, KV tokens: "
            f"{list(grid.generation_seq)} (K+V <= {grid.max_kv_bytes >> 30} GiB)",
        ]
    return [f"message_size (bf16 elements): {list(grid.comm_sizes)}"]


def print_plan(args: argparse.Namespace, grid: Grid) -> None:
    """``--dry-run``: the planned tables, their shapes and files, without torch."""
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        version = "TORCH_VERSION"
    gpu = args.gpu_name or "GPU_FOLDER"
    world_size = max(int(os.environ.get("WORLD_SIZE", "8")), 2)
    print(f"plan ({'quick' if args.quick else 'full'} grid), framework {FRAMEWORK} {version}")
    for family in args.families:
        cases = planned_cases(family, grid, world_size, ("bfloat16", "fp8"))
        print(f"\n{family}: {len(cases)} shapes")
        for line in _axes(family, grid):
            print(f"  {line}")
        if family == "gemm":
            print("  fp8 rows only where the GPU has fp8 (compute capability >= 8.9)")
        if family == "comm":
            print(
                f"  groups of {sorted({c.num_gpus for c in cases})} GPUs with "
                f"{world_size} ranks (torchrun; skipped on one GPU)"
            )
        for table in FAMILY_TABLES[family]:
            target = TableTarget(gpu, family, FRAMEWORK, version, table)
            print(f"  -> {target.path(args.out)}")
        if args.list_shapes:
            for case in cases:
                print(f"    {case}")


def _collect(family: str, rows: Iterator, tables: dict[str, list[dict]], num_cases: int) -> bool:
    """Gather one family's rows into ``tables``; False if interrupted (Ctrl-C).

    A skipped case yields a None row. Raises RuntimeError when the first
    ``ABORT_AFTER_FAILURES`` cases all failed: a broken setup, not a few refused shapes.
    """
    start_s = time.monotonic()
    num_measured = 0
    try:
        for index, (table, row) in enumerate(rows, start=1):
            if row is not None:
                tables[table].append(row)
                num_measured += 1
            if num_measured == 0 and index >= ABORT_AFTER_FAILURES:
                raise RuntimeError(f"{family}: the first {index} cases all failed (see warnings)")
            if index % 100 == 0 or index == num_cases:
                elapsed_s = time.monotonic() - start_s
                logger.info("%s: %d/%d cases, %.0f s", family, index, num_cases, elapsed_s)
    except KeyboardInterrupt:
        logger.warning("%s interrupted: writing the rows measured so far (partial)", family)
        return False
    return True


def write_family(
    args: argparse.Namespace, family: str, stamp: Stamp, tables: dict, notes: dict, done: bool
) -> None:
    """Write one family's tables and its collection_meta.yaml."""
    statuses = {}
    for table, rows in tables.items():
        if not rows:
            logger.warning("%s: no rows measured, not written", table)
            continue
        target = TableTarget(args.gpu_name, family, FRAMEWORK, stamp.version, table)
        path = write_table(rows, target, args.out)
        statuses[table] = "complete" if done else "partial"
        print(f"wrote {len(rows)} rows to {path}")
    if statuses:
        folder = TableTarget(args.gpu_name, family, FRAMEWORK, stamp.version, "").folder(args.out)
        write_collection_meta(folder, FRAMEWORK, stamp.version, statuses, notes)


def _measure_comm(
    mt: ModuleType, grid: Grid, stamp: Stamp, timer: object, device: object
) -> tuple[dict[str, list[dict]], bool]:
    """All-reduce over every group size of this torchrun world; (tables, finished)."""
    import torch.distributed as dist

    dist.init_process_group("nccl")
    cases = comm_cases(grid, dist.get_world_size())
    tables: dict[str, list[dict]] = {"nccl_perf": []}
    done = _collect("comm", mt.measure_comm(cases, stamp, timer, device), tables, len(cases))
    dist.destroy_process_group()
    return tables, done


def measure(args: argparse.Namespace, grid: Grid) -> int:
    """Measure the chosen families on this machine's GPU(s); 130 if interrupted."""
    try:
        import torch
    except ImportError:
        print("measuring needs PyTorch with CUDA (--dry-run needs neither)", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("no CUDA GPU visible to PyTorch", file=sys.stderr)
        return 2
    import measure_tables_torch as mt  # torch only here: --dry-run and the tests need none

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(device)
    facts = mt.device_facts(device)
    args.gpu_name = args.gpu_name or gpu_folder(facts["device"])
    stamp = Stamp(FRAMEWORK, torch.__version__, facts["device"])
    notes = {**facts, "command": " ".join(sys.argv), "written_by": "bench/measure_tables.py"}
    timer = mt.CudaTimer(use_graphs=not args.no_graph)
    # comm first: every rank takes part; rank 0 alone goes on with the single-GPU families
    for family in sorted(args.families, key=lambda f: f != "comm"):
        if family == "comm" and world_size < 2:
            print("comm: skipped, one GPU (launch with torchrun --nproc-per-node N, N >= 2)")
            continue
        if family == "comm":
            tables, done = _measure_comm(mt, grid, stamp, timer, device)
        elif rank != 0:
            continue
        else:
            dtypes = ("bfloat16", "fp8") if mt.supports_fp8(device) else ("bfloat16",)
            cases = planned_cases(family, grid, world_size, dtypes)
            measure_family = mt.measure_gemm if family == "gemm" else mt.measure_attention
            tables = {table: [] for table in FAMILY_TABLES[family]}
            done = _collect(family, measure_family(cases, stamp, timer, device), tables, len(cases))
        if rank == 0:
            write_family(args, family, stamp, tables, notes, done)
        if not done:
            return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: plan (``--dry-run``) or measure."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    grid = QUICK if args.quick else FULL
    if args.dry_run:
        print_plan(args, grid)
        return 0
    return measure(args, grid)


if __name__ == "__main__":
    sys.exit(main())
