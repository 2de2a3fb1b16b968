"""Fit the collectives opmodel (custom all-reduce, NCCL) to aiconfigurator's comm tables.

Tables: ``<gpu>/comm/{vllm,sglang}/<ver>/custom_allreduce_perf.parquet`` (bf16 all-reduce,
graph-captured and eager) and ``<gpu>/comm/nccl/<ver>/nccl_perf.parquet`` (nccl-tests, half
and int8). ``message_size`` is in elements; nccl-tests' "size" (the collector's ``-b``) is bytes
= elements x element size, which is servesim's ``num_bytes`` convention (all-gather output,
reduce-scatter input, all-to-all send buffer of one GPU). The int8 rows of all-gather and
all-to-all line up with the half rows at equal bytes (checked on every GPU), so one fit per
(collective, group size) covers both; reductions are fitted per element width
(``nccl_implementation``).

Per (collective, implementation, num_gpus) the measured curve is cut into at most
``MAX_SEGMENTS`` regimes by dynamic programming (each regime an alpha-beta line fitted for
least absolute relative error); a regime costs ``SEGMENT_PENALTY`` in summed relative error, so a
switch is only introduced where the data show one. Reproduce the report with
``python -m servesim.perf.fitting.collectives``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from servesim.perf.fitting.heldout import Rows
from servesim.perf.fitting.tables import find_tables, read_columns, select
from servesim.perf.opmodels.collectives import (
    CollectiveFit,
    Segment,
    collective_s,
    fits_from_params,
    volume_factor,
)
from servesim.specs.gpu import GPUSpec

MAX_SEGMENTS = 4  # one-shot, two-shot, NCCL fallback (+ one protocol step); NCCL: LL/LL128/Simple
MIN_SIZES_PER_SEGMENT = 3  # a line through two sizes is a fit of noise, not a regime
SEGMENT_PENALTY = 0.3  # summed |relative error| a new regime must save (chosen once, all stacks)
_IRLS_STEPS = 12
#: Steepest regime a fit may take, as link bandwidth over bus bandwidth: every regime of the
#: shipped fits (380 segments: 4 GPUs, NCCL and both custom all-reduces, fitted on all sizes)
#: runs at >= 1/99 of its link (A100 NCCL all-gather at 2 GPUs, the LL protocol's rate). A
#: steeper line through three sizes is a single-size spike of the measurement, not a regime
#: (SGLang eager, H100, 4 GPUs, 2 KB: 70 us between 29.2 and 29.6; held out beside it, such a
#: line took 1 KB to 46 us).
MAX_LINK_OVER_BUS = 200.0

_NCCL_OPS = {
    "all_reduce": "all_reduce",
    "all_gather": "all_gather",
    "reduce_scatter": "reduce_scatter",
    "alltoall": "all_to_all",
}
REDUCTIONS = ("all_reduce",)  # see nccl_implementation
_ELEMENT_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "int8": 1, "float32": 4}
_DTYPE_LABEL = {"bfloat16": "bf16", "half": "half", "int8": "int8", "float32": "fp32"}
GPU_FOLDERS = {
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200-sxm",
    "a100_sxm": "a100-80gb",
    "l40s": "l40s",
}


def nccl_implementation(collective: str, element_bytes: float) -> str:
    """``nccl``, or ``nccl_int8`` for an 8-bit all-reduce (fitted apart from the 16-bit one).

    NCCL's NVLS (in-switch reduction on Hopper NVSwitch) has no 8-bit types
    (``ncclNvlsSupported``, NCCL src/include/device.h), so int8 runs the ring: H100, 8 GPUs,
    512 MB: half 445 GB/s bus bandwidth, int8 351 (at 2-4 GPUs int8 is 3-10% slower: per-element
    reduce). All-gather and all-to-all rows coincide at equal bytes; reduce-scatter shows no NVLS
    gap (336 / 328 GB/s) and fitted apart loses more held-out accuracy than it gains: one fit.
    """
    if element_bytes == 1 and collective in REDUCTIONS:
        return "nccl_int8"
    return "nccl"


def size_regime(num_bytes: float) -> str:
    """Report label of a message size."""
    if num_bytes < 64 * 1024:
        return "<64KB"
    if num_bytes < 1024**2:
        return "64KB-1MB"
    if num_bytes < 16 * 1024**2:
        return "1MB-16MB"
    return ">=16MB"


def _rows_from_columns(cols: dict[str, np.ndarray], is_nccl: bool) -> Rows:
    dtype_col = cols["nccl_dtype"] if is_nccl else cols["allreduce_dtype"]
    elem_bytes = np.array([_ELEMENT_BYTES[str(d)] for d in dtype_col], dtype=float)
    num_bytes = cols["message_size"].astype(float) * elem_bytes
    if is_nccl:
        collective = np.array([_NCCL_OPS[str(o)] for o in cols["op_name"]], dtype=object)
        impl = np.array(
            [nccl_implementation(c, b) for c, b in zip(collective, elem_bytes, strict=True)],
            dtype=object,
        )
        op = np.array([f"nccl_{c}" for c in collective], dtype=object)
    else:
        collective = np.array(["all_reduce"] * len(num_bytes), dtype=object)
        mode = np.array([str(b).rsplit("_", 1)[-1] for b in cols["backend"]], dtype=object)
        impl = np.array([f"custom_{m}" for m in mode], dtype=object)
        op = np.array([f"custom_all_reduce_{m}" for m in mode], dtype=object)
    return {
        "latency_s": cols["latency"].astype(float) * 1e-3,
        # zero-padded so the shape-wise folds (sorted by repr) deal sizes in numeric order
        "shape_key": np.array([f"{int(b):013d}" for b in num_bytes], dtype=object),
        "op": op,
        "dtype": np.array([_DTYPE_LABEL.get(str(d), str(d)) for d in dtype_col], dtype=object),
        "regime": np.array([size_regime(b) for b in num_bytes], dtype=object),
        "num_bytes": num_bytes,
        "num_gpus": cols["num_gpus"].astype(int),
        "collective": collective,
        "implementation": impl,
    }


def load_rows(root: Path, gpu_folder: str, framework: str, version: str) -> Rows | None:
    """Rows of the comm tables of one (GPU, framework, version) under ``root``; None when absent.

    aiconfigurator keeps the engine's custom all-reduce under ``comm/<engine>/`` and NCCL under
    ``comm/nccl/``; a user's tables (``bench/measure_tables.py``) hold NCCL under their own
    framework folder. Every comm table found there is read.
    """
    if not root.is_dir():
        return None
    refs = select(
        find_tables(root), gpu=gpu_folder, family="comm", framework=framework, version=version
    )
    parts = []
    for ref in refs:
        if ref.table not in ("nccl_perf", "custom_allreduce_perf"):
            continue
        rows = _rows_from_columns(read_columns(ref), ref.table == "nccl_perf")
        keep = rows["latency_s"] > 0
        parts.append({k: v[keep] for k, v in rows.items()})
    if not parts:
        return None
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _fit_line(bus_bytes: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """(alpha_s, s_per_bus_byte, summed |relative error|) of a non-negative line, IRLS for L1."""
    design = np.stack([1.0 / t, bus_bytes / t], axis=1)
    weights = np.ones_like(t)
    coef = np.zeros(2)
    for _ in range(_IRLS_STEPS):
        coef = _nonneg_lsq(design * weights[:, None], weights)
        resid = design @ coef - 1.0
        weights = 1.0 / np.sqrt(np.maximum(np.abs(resid), 0.01))
    resid = design @ coef - 1.0
    return float(coef[0]), float(coef[1]), float(np.sum(np.abs(resid)))


def _nonneg_lsq(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2-parameter least squares with both coefficients >= 0 (active set by hand)."""
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    if coef[0] >= 0 and coef[1] >= 0:
        return coef
    best, best_cost = np.zeros(2), math.inf
    for j in (0, 1):
        col = design[:, j]
        value = max(float(col @ target) / float(col @ col), 0.0)
        trial = np.zeros(2)
        trial[j] = value
        cost = float(np.sum((design @ trial - target) ** 2))
        if cost < best_cost:
            best, best_cost = trial, cost
    return best


def _segment_group(
    bus_bytes: np.ndarray, t: np.ndarray, max_slope: float = math.inf
) -> list[tuple[int, int, float, float]]:
    """Best cut of one curve: (first, last) unique-size index and (alpha, slope) per regime.

    Regimes steeper than ``max_slope`` (seconds per bus byte) are not candidates, unless no
    cut exists without them.
    """
    sizes = np.unique(bus_bytes)
    m = len(sizes)
    index = np.searchsorted(sizes, bus_bytes)
    min_len = min(MIN_SIZES_PER_SEGMENT, m)
    lines: dict[tuple[int, int], tuple[float, float, float]] = {}
    for i in range(m):
        for j in range(i + min_len - 1, m):
            mask = (index >= i) & (index <= j)
            lines[(i, j)] = _fit_line(bus_bytes[mask], t[mask])
    steep = {key for key, line in lines.items() if line[1] > max_slope}
    cuts = _best_cuts(m, {k: v for k, v in lines.items() if k not in steep}) if steep else None
    if cuts is None:
        cuts = _best_cuts(m, lines)
        assert cuts is not None  # the one-regime line over every size is always a candidate
    return [(i, j, lines[(i, j)][0], lines[(i, j)][1]) for i, j in cuts]


def _best_cuts(
    m: int, lines: dict[tuple[int, int], tuple[float, float, float]]
) -> list[tuple[int, int]] | None:
    """The cut of sizes 0..m-1 into candidate ``lines`` of least cost (None: no cut)."""
    # best[k][j]: cost of covering sizes 0..j with k+1 regimes, and the cut that achieves it
    best: list[dict[int, tuple[float, list[tuple[int, int]]]]] = [{}]
    for j in range(m):
        if (0, j) in lines:
            best[0][j] = (lines[(0, j)][2], [(0, j)])
    for k in range(1, MAX_SEGMENTS):
        layer: dict[int, tuple[float, list[tuple[int, int]]]] = {}
        for j in range(m):
            for i in range(1, j + 1):
                if (i, j) not in lines or (i - 1) not in best[k - 1]:
                    continue
                cost = best[k - 1][i - 1][0] + lines[(i, j)][2]
                if j not in layer or cost < layer[j][0] - 1e-12:
                    layer[j] = (cost, [*best[k - 1][i - 1][1], (i, j)])
        best.append(layer)
    options = [
        (layer[m - 1][0] + SEGMENT_PENALTY * k, k, layer[m - 1][1])
        for k, layer in enumerate(best)
        if (m - 1) in layer
    ]
    if not options:
        return None
    return min(options, key=lambda o: (o[0], o[1]))[2]


def fit_group(
    collective: str,
    implementation: str,
    num_gpus: int,
    num_bytes: np.ndarray,
    t: np.ndarray,
    gpu: GPUSpec,
) -> CollectiveFit:
    """Regimes of one (collective, implementation, group size) on ``gpu``."""
    volume = volume_factor(collective, num_gpus)
    order = np.lexsort((t, num_bytes))
    num_bytes, t = num_bytes[order], t[order]
    sizes = np.unique(num_bytes)
    link_bw = gpu.intra_node_link.bandwidth_bytes_per_s
    cuts = _segment_group(volume * num_bytes, t, MAX_LINK_OVER_BUS / link_bw)
    segments = tuple(Segment(alpha, slope * link_bw) for _, _, alpha, slope in cuts)
    edges = tuple((float(sizes[j]), float(sizes[j + 1])) for _, j, _, _ in cuts[:-1])
    return CollectiveFit(
        collective,
        implementation,
        int(num_gpus),
        segments,
        edges,
        gpu.intra_node_link.latency_s,
    )


def fit(rows: Rows, gpu: GPUSpec) -> dict[str, Any]:
    """JSON-ready parameters: one fit per (collective, implementation, num_gpus) in ``rows``."""
    keys = sorted(
        set(zip(rows["collective"], rows["implementation"], rows["num_gpus"], strict=True)),
        key=repr,
    )
    fits = []
    for coll, impl, n in keys:
        mask = (rows["collective"] == coll) & (rows["implementation"] == impl)
        mask &= rows["num_gpus"] == n
        fits.append(
            fit_group(
                coll, impl, int(n), rows["num_bytes"][mask], rows["latency_s"][mask], gpu
            ).to_dict()
        )
    return {"gpu": gpu.name, "link": gpu.intra_node_link.name, "fits": fits}


def predict(params: dict[str, Any], gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """Seconds per row through the runtime opmodel."""
    fits = fits_from_params(params)
    return np.array(
        [
            collective_s(fits[(str(c), str(i), int(n))], gpu, float(b))
            for c, i, n, b in zip(
                rows["collective"],
                rows["implementation"],
                rows["num_gpus"],
                rows["num_bytes"],
                strict=True,
            )
        ]
    )


def main() -> None:
    """Print the held-out and leave-one-GPU-out tables (``fitting.collectives_report``)."""
    from servesim.perf.fitting.collectives_report import main as report_main

    report_main()


if __name__ == "__main__":
    main()
