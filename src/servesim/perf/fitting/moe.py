"""Fit the MoE layer opmodel (``servesim.perf.opmodels.moe_layer``) to aiconfigurator tables.

Rows are whole MoE layers on one rank of the EP group (``moe_perf.parquet``). The load of the
measured rank is recomputed from the collector's routing generator (aiconfigurator
``collector/*/collect_moe.py``, ``balanced_logits`` and ``power_law_logits_v3``):

* ``balanced``: token ``i`` picks experts ``(i + j * ceil(E / k)) % E`` (spread over the
  stride when fewer tokens than the stride); the measured rank owns experts ``[0, E / ep)``.
* ``power_law_<alpha>``: each expert's token count is drawn i.i.d. from a bounded Pareto of
  exponent alpha on ``[1, 0.8 T]`` (``[0.01, 2]`` when ``T k <= E``), scaled and rounded to
  sum ``T k``; the EP group with the largest sum is swapped to rank 0, so the measured rank is
  the busiest one. Experts are laid out in descending count order and reshaped to (topk, T),
  so an expert with more than T pairs repeats inside some tokens; ``torch.topk`` keeps it once
  (at most T pairs) and fills the freed slots with the lowest-index experts, i.e. rank 0's
  (``_skewed_local_counts``). The latency is the mean over 5 draws; we average 8 seeded ones.

Each row carries the measured rank's exact padded rows for every candidate M tile (balanced
routing splits evenly and pads far less than random routing would) and its busiest expert's
pairs; ``predict`` is a numpy mirror of ``moe_layer_s`` fed with them (tested equal). Formats
with fewer than ``MIN_SHAPES`` model shapes borrow the stack's bf16 structure.

Run ``python -m servesim.perf.fitting.moe_report`` for the held-out report; the collector's
routing statistics live in ``moe_loads``.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from servesim.perf.fitting.heldout import (
    Rows,
    fit_log_grid,
    take,
)
from servesim.perf.fitting.moe_arrays import formula as _formula
from servesim.perf.fitting.moe_arrays import grid_coords as _grid_coords
from servesim.perf.fitting.moe_arrays import grid_factors as _grid_factors
from servesim.perf.fitting.moe_collectors import (  # the loader and its constants, re-exported
    DTYPE_LABELS,
    GPU_OF_FOLDER,
    GROUP_LIMITED_SHAPES,
    NON_GATED_SHAPES,
    SMALL_TOKENS,
    load_rows,
    measured_router_s,
)
from servesim.perf.fitting.moe_kernels import (
    PORTABLE,
    with_kernels,
)
from servesim.perf.fitting.moe_loads import TILES
from servesim.perf.fitting.moe_params import (
    _LOWER,
    _UPPER,
    _X0,
    KLOOP_INDEX,
    L2_INDEX,
    TILE_WIDTH_INDEX,
    _pack,
    _unpack,
)
from servesim.perf.opmodels.moe_configs import VLLM_TRITON_KERNELS
from servesim.perf.opmodels.moe_layer import (
    ALIGN_ELEMS,
    MoELayerFit,
    compute_dtype_of,
    for_gpu,
    weight_bytes_of,
)
from servesim.perf.opmodels.moe_tiles import MARLIN_RULE
from servesim.specs.gpu import GPUSpec

__all__ = ["DTYPE_LABELS", "GROUP_LIMITED_SHAPES", "NON_GATED_SHAPES", "SMALL_TOKENS", "load_rows"]

#: Stacks with a moe table: (gpu folder, catalog GPU, framework, version).
STACKS = (
    ("h100_sxm", "h100-sxm", "vllm", "0.24.0"),
    ("h100_sxm", "h100-sxm", "sglang", "0.5.14"),
    ("h200_sxm", "h200-sxm", "vllm", "0.24.0"),
    ("h200_sxm", "h200-sxm", "vllm", "0.22.0"),
    ("h200_sxm", "h200-sxm", "sglang", "0.5.14"),
    ("a100_sxm", "a100-80gb", "vllm", "0.14.0"),
    ("l40s", "l40s", "vllm", "0.24.0"),
)
#: A format needs this many model shapes for the full fit; with fewer (vLLM's mxfp4 and int4
#: tables hold one or two) it borrows the structure of the stack's bf16 fit (``_fit_borrowed``).
MIN_SHAPES = 3
#: SGLang's Triton fused MoE kernel (the tables' ``kernel_source``).
SGLANG_TRITON = "sglang_fused_moe_triton"
#: The stack whose Triton fused MoE runs vLLM's old default tiles on Hopper: SGLang's
#: ``get_default_config`` is vLLM's before PR #34846 (``opmodels.moe_configs``), so its fitted tile
#: traffic rate prices a vLLM fit on rows of an older vLLM (``_with_old_default_rate``).
OLD_DEFAULTS_STAND_IN = ("sglang", "0.5.14")
#: triton_kernels' matmul_ogs kernel (vLLM's gpt-oss MXFP4 path: the tables' ``kernel_source``
#: ``vllm_gptossmxfp4moe_triton_oaitritonmxfp4expertsmonolithic``), whose M tile follows the
#: tokens per local expert (``opmodels.moe_tiles.ogs_block_m``).
OGS_KERNEL_TAG = "oaitritonmxfp4"
#: Candidate ``cta_row_s`` (seconds per matmul_ogs tile row; 0.7 us read off the H100 steps).
CTA_ROW_LADDER = (0.0, 0.25e-6, 0.5e-6, 0.75e-6, 1.0e-6, 1.5e-6, 2.0e-6)
#: Candidate ``ep_fixed_s`` (its EP > 1 routing kernels; one-token rows: ~68 us at EP >= 4
#: against ~45 us at EP 1 on H100).
EP_FIXED_LADDER = (0.0, 10e-6, 20e-6, 30e-6)
#: FlashInfer's CUTLASS fused-MoE kernels (the tables' ``kernel_source``) and their K tile in
#: elements (128 bytes of fp8; ``opmodels.moe_tiles.math_width``).
CUTLASS_TAG = "flashinfer_cutlass"
TILE_K_ELEMS = 128
#: Budget of least-squares evaluations per solve (converged fits take 10-25).
MAX_EVALS = 60
# correction grid axes (log2): tokens, pairs per touched expert, rank load imbalance, expert
# concentration (busiest expert over the mean: 1 balanced, 3-10 under the collector's power law)
GRID_AXES = (
    (0.0, 2.0, 4.0, 6.0, 8.0, 11.0, 14.0),
    (0.0, 3.0, 6.0, 9.0, 12.0),
    (-1.0, 0.0, 1.0, 2.0),
    (0.0, 1.0, 2.0, 4.0),
)


def _default_config_kernel(rows: Rows) -> bool:
    """Whether some rows ran ``get_default_config``'s tiles (``moe_collectors`` column
    ``default_tiles``: SGLang's Triton fused MoE everywhere, vLLM's where ``opmodels.moe_configs``
    finds no tuned config file for the rank's expert count and width), priced by
    ``opmodels.moe_tiles.tile_traffic_bytes``."""
    flags = rows.get("default_tiles")
    if flags is None:  # rows built without the column: SGLang's kernel only, as before it
        kernels = rows.get("kernel")
        sglang = kernels is not None and bool(kernels.size)
        return sglang and all(k == SGLANG_TRITON for k in kernels)
    return bool(np.any(np.asarray(flags) > 0.0))


def _solve(rows: Rows, gpu: GPUSpec, base: MoELayerFit, free: np.ndarray, x0: np.ndarray):
    """Robust least squares on log time over the ``free`` entries of the parameter vector."""
    from scipy.optimize import least_squares

    log_actual = np.log(rows["latency_s"])

    def residual(z: np.ndarray) -> np.ndarray:
        x = x0.copy()
        x[free] = z
        return np.log(_formula(_unpack(x, base), gpu, rows)) - log_actual

    result = least_squares(
        residual,
        x0[free],
        bounds=(_LOWER[free], _UPPER[free]),
        loss="soft_l1",
        f_scale=0.1,
        max_nfev=MAX_EVALS,  # a few slow fits (H200 vLLM 0.22 fp8: 835 evaluations) crawl
        ftol=1e-6,
    )
    x = x0.copy()
    x[free] = result.x
    return _unpack(x, base), float(result.cost)


def _free_mask(rows: Rows, names: tuple[int, ...] = tuple(range(10))) -> np.ndarray:
    free = np.zeros(len(_X0), dtype=bool)
    free[list(names)] = True
    free[11] = _default_config_kernel(rows)
    free[KLOOP_INDEX] = free[11]  # the default tiles' serial K loop (``moe_tiles.kloop_steps``)
    # the tables' L2 condition (``opmodels.moe_l2``): every full fit learns its gain and size
    free[L2_INDEX : L2_INDEX + 2] = True
    free[TILE_WIDTH_INDEX] = _learns_tile_width(rows)
    # the router's launches are told from the fused kernel's fixed cost only where some rows
    # timed the router and others did not (SGLang: EP 1 against EP > 1)
    timed = rows.get("router_timed")
    free[12] = timed is not None and 0.0 < float(np.mean(timed)) < 1.0
    if not (rows["inter"] % ALIGN_ELEMS != 0).any():
        free[7:9] = False  # no misaligned width to learn from: the factor stays 1
    return free


def _learns_tile_width(rows: Rows) -> bool:
    """Whether the fit learns the narrowest width the kernel's tiles compute
    (``opmodels.moe_tiles.math_width``): FlashInfer's CUTLASS grouped GEMM (128-byte K tiles),
    measured at some width under one such tile. Triton's tiles follow the shape's config and
    show no such floor (vLLM bf16 H200: widths 48 / 96 / 192 take 1.47 / 1.79 / 2.06 ms), and
    a table without narrow widths cannot tell one (it stays 0)."""
    kernels = rows.get("kernel")
    cutlass = kernels is not None and any(CUTLASS_TAG in str(k) for k in set(kernels))
    return cutlass and bool((rows["inter"] < TILE_K_ELEMS).any())


def _runs_marlin(rows: Rows) -> bool:
    """Whether the table times a Marlin MoE kernel (vLLM's ``fused_marlin_moe``, SGLang's
    Marlin runner): weight-only formats dequantised under the weight stream, their M block by
    ``opmodels.moe_tiles.marlin_block_m``."""
    kernels = rows.get("kernel")
    return kernels is not None and bool(kernels.size) and "marlin" in str(kernels[0])


def _x0_for(rows: Rows) -> np.ndarray:
    x0 = _X0.copy()
    free = _free_mask(rows)
    if not free[TILE_WIDTH_INDEX]:
        x0[TILE_WIDTH_INDEX] = _LOWER[TILE_WIDTH_INDEX]  # pinned at the bound: no tile width
    if not free[12]:
        x0[12] = _LOWER[12]  # pinned at the bound: router_fixed_s 0 (held in fixed_s)
    if not free[KLOOP_INDEX]:
        x0[KLOOP_INDEX] = _LOWER[KLOOP_INDEX]  # no default tiles: no K-loop term
    if not (rows["inter"] % ALIGN_ELEMS != 0).any():
        x0[7] = _UPPER[7]  # logistic(6) ~ 1, floor 1: no penalty without misaligned rows
        x0[8] = _LOWER[8]
    return x0


def fit_dtype(rows: Rows, gpu: GPUSpec, label: str) -> MoELayerFit:
    """Mechanism parameters: the M tile range chosen on every 8th row, refitted on all rows
    from that start; then the log-grid correction."""
    base_label = label.removesuffix(PORTABLE)
    wbytes, cdtype = weight_bytes_of(base_label), compute_dtype_of(base_label, gpu)
    sub = take(rows, np.arange(rows["latency_s"].size) % 8 == 0)
    free, x0 = _free_mask(rows), _x0_for(rows)
    traffic = 1.0 if free[11] else 0.0
    router = 0.0 if free[12] else measured_router_s(rows["kernel"], gpu)
    best: tuple[float, MoELayerFit] | None = None
    # fixed tiles, and the whole range grown with the pairs per expert (``tile_for``); a Marlin
    # kernel's block is its own rule (``opmodels.moe_tiles.marlin_block_m``)
    rule = MARLIN_RULE if _runs_marlin(rows) else ""
    ranges = ((TILES[0], TILES[0]),) if rule else (*((t, t) for t in TILES), (TILES[0], TILES[-1]))
    for lo, hi in ranges:
        base = MoELayerFit(wbytes, cdtype, 0.0, 0.0, 0.0, 1.0, 1.0, float(hi), 1.0)
        base = replace(
            base,
            tile_min=0.0 if lo == hi else float(lo),
            tile_rule=rule,
            traffic_eff=traffic,
            router_fixed_s=router,
        )
        fitted, cost = _solve(sub, gpu, base, free, x0)
        if best is None or cost < best[0] - 1e-9:
            best = (cost, fitted)
    assert best is not None
    base, _ = _solve(rows, gpu, best[1], free, _pack(best[1]))
    if not free[7]:
        base = replace(base, misalign_eff=1.0, misalign_floor=0.0)
    ratio = np.log(rows["latency_s"]) - np.log(_formula(base, gpu, rows))
    grid = fit_log_grid(_grid_coords(rows), ratio, GRID_AXES, ridge=0.3)
    return replace(base, correction=grid)


def _fit_borrowed(rows: Rows, gpu: GPUSpec, label: str, donor: MoELayerFit) -> MoELayerFit:
    """A format with too few shapes: the donor's (bf16's) streaming, tile, overlap, per-expert
    and busiest-expert terms, with its own fixed cost, weight-read (its L2 gain too) and math
    efficiencies and the share of other ranks' pairs its kernel streams (a different kernel:
    vLLM's gpt-oss MXFP4 Triton kernel gathers only the rank's pairs). The width-alignment
    penalty is not borrowed: these kernels (vLLM's gpt-oss mxfp4, Marlin) pad widths themselves.
    The correction grid is its own: the kernel configs step with the token count and the
    routing, not the shape (H100 vLLM MXFP4, each gpt-oss shape predicted from the other: tokens
    <= 256 balanced 29.1/+13.0 -> 24.1/+2.7, skewed 24.0/+4.0 -> 13.8/+1.7, > 256 balanced
    16.8/+6.1 -> 16.4/-1.2, skewed 17.4/-5.4 -> 14.6/-0.0; MAPE / median %)."""
    base = replace(
        donor,
        weight_bytes=weight_bytes_of(label.removesuffix(PORTABLE)),
        compute_dtype=compute_dtype_of(label.removesuffix(PORTABLE), gpu),
        misalign_eff=1.0,
        misalign_floor=0.0,
        tile_width=0.0,
        tile_rule=MARLIN_RULE if _runs_marlin(rows) else "",
        traffic_eff=donor.traffic_eff if _default_config_kernel(rows) else 0.0,
        kloop_s=donor.kloop_s if _default_config_kernel(rows) else 0.0,  # the same tiles' term
        correction=None,
    )
    free = np.zeros(len(_X0), dtype=bool)
    # its own L2 gain (``opmodels.moe_l2``; SGLang H100 MXFP4 <= 256 balanced: 15.6 -> 13.5%)
    free[[0, 3, 4, L2_INDEX, L2_INDEX + 1]] = True
    free[10] = bool((rows["ep"] > 1).any())  # only EP rows tell the streaming scope
    # Marlin's weight-only kernels dequantise and multiply under the weight stream: their own
    # overlap, not the bf16 Triton kernel's (H100 vLLM int4, in sample: p 1.17 -> 21 at the
    # bound; <= 256 tokens balanced 18.7 -> 14.3%, skewed 13.7 -> 10.6%)
    kernels = rows.get("kernel")
    free[5] = _runs_marlin(rows)
    x0 = _pack(base)
    if free[10]:
        x0[10] = np.log(0.5)  # inside the bounds: at 0 the scope is pinned to 1 (no gradient)
    # matmul_ogs's one-CTA floor (``moe_tiles.cta_floor_s``): its rate per tile row, chosen from
    # a fixed ladder by the training rows' cost (0: no floor, every other kernel)
    ogs = kernels is not None and OGS_KERNEL_TAG in str(kernels[0])
    ladder = [(c, e) for c in CTA_ROW_LADDER for e in EP_FIXED_LADDER] if ogs else [(0.0, 0.0)]
    fits = [
        _solve(rows, gpu, replace(base, cta_row_s=c, ep_fixed_s=e), free, x0) for c, e in ladder
    ]
    # the donor's tile range and the rule stay (the fit vector keeps them); no width penalty
    fitted = replace(min(fits, key=lambda pair: pair[1])[0], misalign_eff=1.0, misalign_floor=0.0)
    ratio = np.log(rows["latency_s"]) - np.log(_formula(fitted, gpu, rows))
    grid = fit_log_grid(_grid_coords(rows), ratio, GRID_AXES, ridge=0.3)
    return replace(fitted, correction=grid)


def fit(rows: Rows, gpu: GPUSpec) -> dict:
    """JSON-ready ``{dtype label: MoELayerFit dict}`` for one (GPU, kernel stack); each fit names
    its GPU and kernel, and an arch-bound kernel's fit nests its format's portable one
    (``moe_kernels.with_kernels``)."""
    fits: dict[str, MoELayerFit] = {}
    labels = sorted(set(rows["dtype"]))
    shapes = {d: len(set(rows["shape_key"][rows["dtype"] == d])) for d in labels}
    for label in labels:
        if shapes[label] >= MIN_SHAPES:
            fits[label] = fit_dtype(take(rows, rows["dtype"] == label), gpu, label)
    donor = fits.get("bf16")
    for label in labels:
        if label not in fits and donor is not None:
            fits[label] = _fit_borrowed(take(rows, rows["dtype"] == label), gpu, label, donor)
    fits = _with_old_default_rate(with_kernels(fits, rows, gpu), gpu)
    return {label: fits[label].to_dict() for label in sorted(fits) if PORTABLE not in label}


def _with_old_default_rate(fits: dict[str, MoELayerFit], gpu: GPUSpec) -> dict[str, MoELayerFit]:
    """vLLM's bf16 Triton fit whose own table ran no old default tiles (vLLM 0.22 / 0.24 run the
    new defaults) takes those tiles' terms from the same GPU's SGLang fit
    (``OLD_DEFAULTS_STAND_IN``), whose kernel runs the same old ``get_default_config``: their
    operand-traffic rate, their serial K loop (``kloop_s``) and the overlap they were fitted in
    (``tiles_overlap_p``: SGLang H100 1.48, where vLLM's tuned kernels fit 1.18). It so prices an
    older vLLM's untuned shapes (A100 vLLM 0.14 from H100: 25.0 / -21.0% -> 18.5 / -3.1%, MAPE /
    median, with the rate alone). The run time (vllm-0.24) never runs them
    (``opmodels.moe_configs.runs_default_tiles``): only such tables read the terms."""
    layer = fits.get("bf16")
    if layer is None or layer.traffic_eff > 0.0 or layer.kernel not in VLLM_TRITON_KERNELS:
        return fits
    stand_in = _stand_in_tile_fit(gpu.name)
    if stand_in is None or stand_in.traffic_eff <= 0.0:
        return fits
    return {
        **fits,
        "bf16": replace(
            layer,
            traffic_eff=stand_in.traffic_eff,
            kloop_s=stand_in.kloop_s,
            tiles_overlap_p=stand_in.overlap_p,
        ),
    }


@functools.lru_cache(maxsize=8)
def _stand_in_tile_fit(gpu_name: str) -> MoELayerFit | None:
    """The SGLang bf16 fit on ``gpu_name`` (None: no such table, or no data)."""
    from servesim.core.paths import shared_data_dir
    from servesim.perf.fitting.tables import aic_root
    from servesim.specs.catalog.gpus import get_gpu

    data = shared_data_dir()
    folder = next((f for f, g in GPU_OF_FOLDER.items() if g == gpu_name), None)
    rows = (
        None
        if data is None or folder is None
        else load_rows(aic_root(data), folder, *OLD_DEFAULTS_STAND_IN)
    )
    if rows is None or not (rows["dtype"] == "bf16").any():
        return None
    return fit_dtype(take(rows, rows["dtype"] == "bf16"), get_gpu(gpu_name), "bf16")


def predict(params: dict, gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """Seconds per row: the numpy mirror of ``moe_layer_s`` with the rows' exact padding
    (tested equal to the runtime function); formats absent from ``params``: NaN."""
    out = np.full(rows["latency_s"].shape, np.nan)
    layers = {label: MoELayerFit.from_dict(data) for label, data in params.items()}
    for label, layer in list(layers.items()):
        if layer.portable is not None:
            layers.setdefault(label + PORTABLE, layer.portable)
    for label, layer in layers.items():
        mask = rows["dtype"] == label
        if not mask.any():
            continue
        layer = for_gpu(layer, gpu)
        sub = take(rows, mask)
        times = _formula(layer, gpu, sub)
        if layer.correction is not None:
            coords = _grid_coords(sub)[:, : len(layer.correction.axes)]
            times = times * _grid_factors(layer.correction, coords)
        out[mask] = times
    return out
