"""Rows of the GEMM fit: aiconfigurator's ``gemm_perf`` and ``quantize`` tables as arrays.

``load_rows`` reads one stack's GEMM rows (``gemm_dtype``, ``m``, ``n``, ``k``, ``latency`` in
ms) plus the activation quantisation rows its fp8 path uses (``quantize`` tables:
``computescale_perf`` + ``scale_matrix_perf`` summed per ``(m, k)``). The collectors store
computescale as the dynamic per-token kernel's time minus the static per-tensor one's
(aiconfigurator ``collector/{vllm,sglang}/collect_computescale.py``; SGLang's clips it at 0),
so the sum is the dynamic kernel's time.

A quantisation table whose floor is above the fp8 GEMM table's own floor cannot be what that
table's rows contain: SGLang's static reference is a chain of PyTorch elementwise kernels
(``x / scale``, clamp, cast; ~7.5 us) slower than its fused dynamic kernel, so its sum is that
chain; the same GPU's vLLM tables (fused CUDA kernels both) are used instead.

The eager-timing helpers (``row_floors``, ``eager_mask``) live here too: which rows of an
fp8_block table time the host rather than the GPU is a property of the rows.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from servesim.perf.fitting.heldout import Rows, concat, take
from servesim.perf.fitting.tables import find_tables, read_columns, select
from servesim.specs.gpu import GPUSpec

#: Table format label -> report label (other formats of the tables are not fitted).
DTYPE_LABELS = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8_block"}
#: Stacks with a gemm table: (gpu folder, catalog GPU, framework, version).
STACKS = (
    ("h100_sxm", "h100-sxm", "vllm", "0.24.0"),
    ("h100_sxm", "h100-sxm", "sglang", "0.5.14"),
    ("h200_sxm", "h200", "vllm", "0.24.0"),
    ("h200_sxm", "h200", "vllm", "0.22.0"),
    ("h200_sxm", "h200", "sglang", "0.5.14"),
    ("a100_sxm", "a100-80gb", "vllm", "0.14.0"),
    ("l40s", "l40s", "vllm", "0.24.0"),
)
#: SMs and L2 per catalog GPU (NVIDIA architecture whitepapers / data sheets), used only when
#: the catalog spec does not carry them: H100 SXM5 132 SMs 50 MB; H200 the same GH100
#: configuration; A100 SXM4 108 SMs 40 MB; L40S 142 SMs 96 MB.
DATASHEET_SMS_L2 = {
    "h100-sxm": (132, 50 * 2**20),
    "h200": (132, 50 * 2**20),
    "a100-80gb": (108, 40 * 2**20),
    "a100-40gb": (108, 40 * 2**20),
    "l40s": (142, 96 * 2**20),
}
SMALL_TOKENS = 256
#: A format needs this many (n, k) shapes to be fitted.
MIN_SHAPES = 4
#: An fp8_block table is eager-timed when its small-shape floor exceeds this ...
EAGER_FLOOR_S = 15e-6
#: ... and is then fitted on rows at least this many times that floor.
EAGER_MARGIN = 3.0


# ---- rows ---------------------------------------------------------------------------------
def load_rows(root: Path, gpu_folder: str, framework: str, version: str) -> Rows | None:
    """GEMM rows of one stack plus the quantisation rows its fp8 path uses (None: no table)."""
    refs = find_tables(root)
    found = select(refs, gpu=gpu_folder, family="gemm", framework=framework, version=version)
    found = [r for r in found if r.table == "gemm_perf"]
    if not found:
        return None
    cols = read_columns(found[0])
    keep = np.array([d in DTYPE_LABELS for d in cols["gemm_dtype"]])
    m = cols["m"][keep].astype(float)
    n = cols["n"][keep].astype(float)
    k = cols["k"][keep].astype(float)
    dtype = np.array([DTYPE_LABELS[d] for d in cols["gemm_dtype"][keep]], dtype=object)
    rows: Rows = {
        "latency_s": cols["latency"][keep].astype(float) * 1e-3,
        "m": m,
        "n": n,
        "k": k,
        "op": np.full(m.shape, "gemm", dtype=object),
        "dtype": dtype,
        "regime": _regimes(m),
        "kernel": np.asarray(cols["kernel_source"][keep], dtype=object),
        "shape_key": _shape_keys(n, k),
    }
    shapes = {d: len(set(zip(n[dtype == d], k[dtype == d], strict=True))) for d in set(dtype)}
    rows = take(rows, np.array([shapes[d] >= MIN_SHAPES for d in dtype]))
    rows = take(rows, rows["latency_s"] > 0)
    if not any(d in ("fp8", "fp8_block") for d in set(rows["dtype"])):
        return rows
    fp8 = rows["latency_s"][rows["dtype"] == "fp8"]
    gemm_floor = float(np.min(fp8)) if fp8.size else math.inf
    quant = _quant_rows(refs, gpu_folder, framework, version, gemm_floor)
    return concat([rows, quant]) if quant is not None else rows


def _quant_rows(
    refs: list, gpu: str, framework: str, version: str, gemm_floor: float
) -> Rows | None:
    """The quantisation rows of the stack, else of the same GPU's vLLM (see module doc)."""
    candidates = [(framework, version)]
    others = sorted(
        {(r.framework, r.version) for r in select(refs, gpu=gpu, family="quantize")},
        key=lambda fv: (fv[0] != "vllm", fv[0], [-int(p) for p in fv[1].split(".") if p.isdigit()]),
    )
    candidates += [fv for fv in others if fv not in candidates]
    for fw, ver in candidates:
        parts = select(refs, gpu=gpu, family="quantize", framework=fw, version=ver)
        tables = {r.table: r for r in parts}
        if "computescale_perf" not in tables or "scale_matrix_perf" not in tables:
            continue
        total: dict[tuple[float, float], float] = {}
        for name in ("computescale_perf", "scale_matrix_perf"):
            cols = read_columns(tables[name])
            for a, b, t in zip(cols["m"], cols["k"], cols["latency"], strict=True):
                total[(float(a), float(b))] = total.get((float(a), float(b)), 0.0) + float(t)
        keys = sorted(total)
        lat = np.array([total[x] for x in keys]) * 1e-3
        if lat.min() > gemm_floor:  # slower than the whole fp8 GEMM: not what its rows hold
            continue
        m = np.array([a for a, _ in keys])
        k = np.array([b for _, b in keys])
        zeros = np.zeros_like(m)
        return {
            "latency_s": lat,
            "m": m,
            "n": zeros,
            "k": k,
            "op": np.full(m.shape, "quantize", dtype=object),
            "dtype": np.full(m.shape, "fp8", dtype=object),
            "regime": _regimes(m),
            "kernel": np.full(m.shape, f"{fw} {ver} quantize", dtype=object),
            "shape_key": _shape_keys(zeros, k),
        }
    return None


def _regimes(m: np.ndarray) -> np.ndarray:
    return np.where(m <= SMALL_TOKENS, f"m<={SMALL_TOKENS}", f"m>{SMALL_TOKENS}").astype(object)


def _shape_keys(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    keys = np.empty(n.shape, dtype=object)
    keys[:] = [(int(a), int(b)) for a, b in zip(n, k, strict=True)]
    return keys


def with_datasheet(gpu: GPUSpec) -> GPUSpec:
    """``gpu`` with its SM count and L2 filled from ``DATASHEET_SMS_L2`` when it lacks them."""
    if gpu.num_sms and gpu.l2_cache_bytes:
        return gpu
    sms, l2 = DATASHEET_SMS_L2.get(gpu.name, (0, 0))
    return dataclasses.replace(
        gpu, num_sms=gpu.num_sms or sms, l2_cache_bytes=gpu.l2_cache_bytes or l2
    )


def row_floors(rows: Rows) -> np.ndarray:
    """Per row, the floor of its kernel: median latency of that kernel's rows with a small
    weight (``n k <= 2**20``) and ``m <= 4096``, whose GPU work is a few microseconds."""
    out = np.zeros(rows["latency_s"].shape)
    for kernel in set(rows["kernel"]):
        own = rows["kernel"] == kernel
        small = own & (rows["n"] * rows["k"] <= 2**20) & (rows["m"] <= 4096)
        pool = rows["latency_s"][small] if small.any() else rows["latency_s"][own]
        out[own] = float(np.median(pool))
    return out


def eager_floor_s(rows: Rows) -> float:
    """The table's typical kernel floor (median over its rows of their kernel's floor)."""
    return float(np.median(row_floors(rows))) if rows["latency_s"].size else 0.0


# ---- scoring ---------------------------------------------------------------------------------
def eager_mask(rows: Rows) -> np.ndarray:
    """fp8_block rows of an eager-timed table within ``EAGER_MARGIN`` of their kernel's floor
    (left out of the scores: the table times the host there, not the GPU)."""
    out = np.zeros(rows["latency_s"].shape, dtype=bool)
    block = (rows["op"] == "gemm") & (rows["dtype"] == "fp8_block")
    if not block.any():
        return out
    part = take(rows, block)
    floors = row_floors(part)
    if np.median(floors) < EAGER_FLOOR_S:
        return out
    out[block] = part["latency_s"] < EAGER_MARGIN * floors
    return out
