"""Time of one MoE layer's expert computation on one EP rank (routing to combine), pure Python.

The formula (fitted per GPU, kernel stack and weight format by ``servesim.perf.fitting.moe``
on aiconfigurator's ``moe_perf`` tables) adds these mechanisms seen in those tables:

* the router's top-k over the whole batch's logits (``moe_router``), its own term charged at
  every EP size (every rank routes every token), apart from
* a fixed cost per layer call of the fused kernel (align/sort, several kernel launches inside
  one graph): about 30 us on H100 even for one token;
* streaming of every token-expert pair of the WHOLE batch, local expert or not: the fused
  kernels sort, scatter and gather all ``num_tokens * topk`` pairs and write their (zero)
  outputs before the combine, so this cost does not shrink with EP (H100 bf16, 16384 tokens,
  EP 128: 1.96 ms for 4 local experts whose weights take 30 us to read). Kernels that route
  inside and gather only the rank's own pairs (vLLM's gpt-oss MXFP4 Triton kernel: H100,
  16384 tokens, EP 128, 204 us against 3.2 ms at EP 1) stream a fraction ``stream_global``
  of the other ranks' pairs (1 for the fused bf16/fp8 kernels);
* the weights of every touched local expert are read once (``experts_touched``): few tokens
  touch many experts, each with a sliver of work, so decode is memory-bound; plus a small
  per-touched-expert cost (problem setup of the grouped GEMM: ~1.7 us per expert for
  FlashInfer's CUTLASS fp8 path on H100, ~0.1 us for vLLM's Triton kernel);
* the grouped GEMM FLOPs of the rank's own pairs (``assignments``), each expert's rows padded
  to the kernel's M tile (``padded_rows``: the expectation under random routing, or the exact
  padding when the caller knows the routing), plus a fitted multiple of the busiest expert's
  pairs (its tiles finish last), at a fitted fraction of the data-sheet peak;
* per-rank widths that are not a multiple of 16 elements (Nemotron's 1856 / 8 = 232) lose the
  tuned kernel and run as a wider, never-below-a-floor width (``body_width``);
* SGLang's Triton kernel without a tuned config runs default tiles whose operand traffic bounds
  the GEMMs (``moe_tiles.tile_traffic_bytes``, at a fitted multiple of the HBM bandwidth).
* touched weights that fit in L2 are read from it in the tables' replays (``moe_l2``), not in
  a serving step (``l2_warm``);
* vLLM's gpt-oss MXFP4 kernel (triton_kernels ``matmul_ogs``) sizes its M tile by tokens per
  local expert, so with few local experts the layer takes one CTA's serial pass over that tile
  (``cta_floor_s``, a floor), and at EP > 1 it rebuilds the routing (``ep_fixed_s``).

Weight reads and the GEMM math overlap (a p-norm between a plain sum, p = 1, and perfect
overlap, p -> inf); the fixed and streaming costs are serial. Rates are fractions of the
target GPU's data-sheet peak and bandwidth, so the same parameters price another GPU of the
same architecture. An optional log-grid correction captures kernel selection the mechanism
cannot know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servesim.perf.opmodels.grid import LogGrid, optional_grid
from servesim.perf.opmodels.moe_carry import _clock_ratio, for_gpu
from servesim.perf.opmodels.moe_configs import runs_default_tiles
from servesim.perf.opmodels.moe_l2 import l2_read_gain, touched_weight_bytes
from servesim.perf.opmodels.moe_router import (
    correction_coords,
    expected_max_pairs,
    padded_rows,
    router_s,
)
from servesim.perf.opmodels.moe_tiles import (  # the format and width helpers, re-exported
    ALIGN_ELEMS,
    body_width,
    compute_dtype_of,
    cta_floor_s,
    default_block_k,
    default_tiles,
    kloop_steps,
    math_width,
    streamed_pairs,
    tile_for,
    tile_traffic_bytes,
    weight_bytes_of,
)
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec

__all__ = [
    "ALIGN_ELEMS",
    "_clock_ratio",
    "body_width",
    "compute_dtype_of",
    "expected_max_pairs",
    "for_gpu",
    "math_width",
    "padded_rows",
    "streamed_pairs",
    "tile_for",
    "weight_bytes_of",
]

#: Gated expert MLP: gate, up and down matrices; a non-gated one (Nemotron-3's squared ReLU)
#: has two.
NUM_MATRICES = 3


@dataclass(frozen=True, slots=True)
class MoELayerFit:
    """Fitted constants of one weight format on one (GPU, kernel stack).

    Attributes:
        weight_bytes: bytes per weight element including block scales (bf16 2, fp8 1,
            4-bit formats 0.5 plus their scales).
        compute_dtype: data-sheet peak the GEMM math runs at (``bf16`` or ``fp8``).
        fixed_s: per-call cost of the fused kernel independent of tokens (launches, sort); it
            holds the router's launches too where the tables cannot tell them apart (every row
            timed the router, or none did: ``router_fixed_s`` 0).
        stream_hidden: bytes moved per token-expert pair and hidden element, in units of the
            data-sheet bandwidth (permute, scatter, combine of the whole batch).
        stream_inter: same per pair and per-rank expert width element (intermediate caches).
        mem_eff: fraction of the data-sheet bandwidth reached reading expert weights.
        compute_eff: fraction of the data-sheet peak reached by the grouped GEMMs.
        tile_rows: M tile each touched expert's rows are padded to.
        overlap_p: p-norm exponent combining weight reads and math (1: serial).
        stream_global: fraction of the other EP ranks' pairs the kernel streams (1: the
            whole batch, as vLLM's and SGLang's fused kernels do; 0: only the rank's own).
        traffic_eff: rate of the default-config tiles' operand traffic (``default_tiles``,
            ``tile_traffic_bytes``) as a multiple of the HBM bandwidth; 0: no such term (kernels
            other than SGLang's Triton fused MoE).
        router_fixed_s: launch cost (seconds) of the router's top-k kernels, fitted where a
            table times the router in some rows only (SGLang: EP 1); see ``moe_router``.
        cta_row_s: seconds per row of ``matmul_ogs``'s M tile (``moe_tiles.ogs_floor_rows``) in one
            CTA's serial pass through both expert GEMMs, a floor under the layer (0: no floor;
            only vLLM's gpt-oss MXFP4 kernel fits one, ``fitting.moe._fit_borrowed``).
        ep_fixed_s: extra per-call cost at EP > 1 (0: none): vLLM's gpt-oss MXFP4 experts with
            an expert map remap the ids and rebuild the routing (``OAITritonExperts.apply``:
            ``expert_map[topk_ids]``, ``make_routing_data``'s bitmatrix kernels).
        l2_gain: the tables' L2 condition (``moe_l2``): gain of the expert-weight read when
            the replays leave the touched weights in L2 (0: none; a serving step gets none).
        l2_frac: fraction of the GPU's L2 size at which half of that gain is gone.
        kloop_s: seconds per serial K step of one default-tile CTA (``moe_tiles.kloop_steps``;
            0: none): at few tokens the grid is under one wave and a CTA's K loop is the floor.
        tile_width: the narrowest expert width the kernel's tiles compute (``math_width``; 0:
            none, the width's own math).
        tile_rule: how the kernel picks its M tile ("": ``tile_min`` / ``tile_rows``;
            "marlin": ``moe_tiles.marlin_block_m``, vLLM's and SGLang's Marlin MoE).
        tiles_overlap_p: the body's p-norm where the default tiles run, when it is not
            ``overlap_p`` (0: the same): a vLLM fit of tuned kernels pricing its untuned shapes
            by SGLang's default-tile terms takes their overlap with them.
        correction: optional log-grid correction over ``correction_coords``, or None.
        fit_gpu: catalog name of the GPU the fit was measured on ("" : unknown, no transfer).
        kernel: the measured kernel (the table's ``kernel_source``).
        archs: architectures vLLM runs the kernel on (empty: any; FlashInfer's CUTLASS fp8
            grouped GEMM: Hopper only, ``fitting.moe_kernels.ARCH_BOUND_KERNELS``).
        portable: the same format measured with a kernel that runs everywhere (vLLM's Triton
            fused MoE, Marlin), used on Ampere / Ada outside ``archs``; or None.
        blackwell: the stand-in on Blackwell outside ``archs``, where vLLM runs another kernel
            (FlashInfer TRTLLM-gen fp8, ``moe_kernels.blackwell_stand_in``); or None.
    """

    weight_bytes: float
    compute_dtype: str
    fixed_s: float
    stream_hidden: float
    stream_inter: float
    mem_eff: float
    compute_eff: float
    tile_rows: float
    overlap_p: float
    expert_s: float = 0.0
    misalign_eff: float = 1.0
    misalign_floor: float = 0.0
    hot_weight: float = 0.0
    tile_min: float = 0.0
    stream_global: float = 1.0
    traffic_eff: float = 0.0
    router_fixed_s: float = 0.0
    cta_row_s: float = 0.0
    ep_fixed_s: float = 0.0
    l2_gain: float = 0.0
    l2_frac: float = 1.0
    kloop_s: float = 0.0
    tiles_overlap_p: float = 0.0
    tile_width: float = 0.0
    tile_rule: str = ""
    correction: LogGrid | None = None
    fit_gpu: str = ""
    kernel: str = ""
    archs: tuple[str, ...] = ()
    portable: MoELayerFit | None = None
    blackwell: MoELayerFit | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (6 significant digits: byte-identical refits)."""
        out: dict[str, Any] = {
            "weight_bytes": self.weight_bytes,
            "compute_dtype": self.compute_dtype,
        }
        for name in (*_REQUIRED_FLOATS, *_OPTIONAL_FLOATS):
            out[name] = float(f"{getattr(self, name):.6g}")
        out["correction"] = self.correction.to_dict() if self.correction else None
        out["fit_gpu"] = self.fit_gpu
        out["kernel"] = self.kernel
        out["archs"] = list(self.archs)
        if self.tile_rule:  # absent elsewhere: older files stay equal
            out["tile_rule"] = self.tile_rule
        out["portable"] = self.portable.to_dict() if self.portable is not None else None
        if self.blackwell is not None:  # absent, not null, elsewhere: older files stay equal
            out["blackwell"] = self.blackwell.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MoELayerFit:
        """Inverse of ``to_dict``; a field an older file lacks takes its default."""
        return cls(
            weight_bytes=float(data["weight_bytes"]),
            compute_dtype=str(data["compute_dtype"]),
            **{name: float(data[name]) for name in _REQUIRED_FLOATS},
            **{name: float(data.get(name, dflt)) for name, dflt in _OPTIONAL_FLOATS.items()},
            correction=optional_grid(data.get("correction")),
            fit_gpu=str(data.get("fit_gpu", "")),
            kernel=str(data.get("kernel", "")),
            archs=tuple(str(a) for a in data.get("archs", ())),
            tile_rule=str(data.get("tile_rule", "")),
            portable=cls.from_dict(data["portable"]) if data.get("portable") else None,
            blackwell=cls.from_dict(data["blackwell"]) if data.get("blackwell") else None,
        )


#: Scalar fields every stored fit has, and those added later (name -> default when absent).
_REQUIRED_FLOATS = (
    "fixed_s",
    "stream_hidden",
    "stream_inter",
    "mem_eff",
    "compute_eff",
    "tile_rows",
    "overlap_p",
)
_OPTIONAL_FLOATS = {
    "expert_s": 0.0,
    "misalign_eff": 1.0,
    "misalign_floor": 0.0,
    "hot_weight": 0.0,
    "tile_min": 0.0,
    "stream_global": 1.0,
    "traffic_eff": 0.0,
    "router_fixed_s": 0.0,
    "cta_row_s": 0.0,
    "ep_fixed_s": 0.0,
    "l2_gain": 0.0,
    "l2_frac": 1.0,
    "kloop_s": 0.0,
    "tiles_overlap_p": 0.0,
    "tile_width": 0.0,
}


def _stream_s(
    fit: MoELayerFit, gpu: GPUSpec, routed: float, assignments: float, hidden: int, inter: int
) -> float:
    """The gather / scatter streaming of the pairs the rank's kernels move (``streamed_pairs``
    of the ``routed`` token-expert pairs), each ``hidden`` and ``inter`` wide."""
    pairs = streamed_pairs(fit, routed, assignments)
    per_pair = fit.stream_hidden * hidden + fit.stream_inter * inter
    return pairs * per_pair / gpu.hbm_bandwidth_bytes_per_s


def moe_layer_s(
    fit: MoELayerFit,
    gpu: GPUSpec,
    *,
    num_tokens: float,
    hidden: int,
    inter: int,
    topk: int,
    num_experts: int,
    ep: int,
    assignments: float,
    experts_touched: float,
    num_matrices: int = NUM_MATRICES,
    padded: Mapping[int, float] | None = None,
    max_pairs: float | None = None,
    l2_warm: bool = True,
) -> float:
    """Seconds for one MoE layer's experts on the busiest EP rank.

    Args:
        fit: the fitted constants of the weight format and kernel stack.
        gpu: the target GPU (its data-sheet peak and bandwidth scale the rates).
        num_tokens: tokens entering the layer (all of them are routed and permuted).
        hidden: model hidden size; inter: per-rank expert FFN width (``expert_ffn / moe_tp``).
        topk: experts per token; num_experts: routed experts (all ranks); ep: EP group size.
        assignments: expected token-expert pairs computed on the rank.
        experts_touched: expected distinct local experts whose weights the rank reads.
        num_matrices: expert weight matrices (3 gated, 2 non-gated).
        padded: rows after per-expert padding to each M tile, when the routing is known
            exactly (the measured tables); None: ``padded_rows`` (random routing).
        max_pairs: the rank's busiest expert's pairs, if known; None: ``expected_max_pairs``.
        l2_warm: True: the kernel tables' condition (replays read weights that fit in L2 from
            it, ``moe_l2``); False: a serving step's layer, its weights streamed from HBM.
    """
    if num_tokens <= 0:
        return 0.0
    fit = for_gpu(fit, gpu)
    stream_s = _stream_s(fit, gpu, num_tokens * topk, assignments, hidden, inter)
    max_pairs = expected_max_pairs(assignments, experts_touched) if max_pairs is None else max_pairs
    shape = _Shape(num_tokens, hidden, inter, num_experts / max(ep, 1), num_matrices, topk)
    body_s = _body_s(fit, gpu, shape, assignments, experts_touched, padded, max_pairs, l2_warm)
    route_s = router_s(fit.router_fixed_s, num_tokens)  # every rank, every EP (``moe_router``)
    fixed = fit.fixed_s + (fit.ep_fixed_s if ep > 1 else 0.0) + route_s
    total = fixed + stream_s + fit.expert_s * experts_touched + body_s
    if fit.cta_row_s > 0.0:
        total = max(total, fixed + cta_floor_s(fit, num_tokens, num_experts, ep))
    if fit.correction is not None:
        coords = correction_coords(num_tokens, topk, ep, assignments, experts_touched, max_pairs)
        total *= fit.correction.factor(*coords[: len(fit.correction.axes)])
    return total


@dataclass(frozen=True)
class _Shape:
    """The layer shape the grouped GEMMs see on one rank."""

    num_tokens: float
    hidden: int
    inter: int
    local_experts: float
    num_matrices: int
    topk: int


def _rows_at(
    assignments: float, experts_touched: float, tile: float, padded: Mapping[int, float] | None
) -> float:
    """Grouped-GEMM rows after padding each expert's pairs to ``tile``: the exact count when
    the caller knows the routing, else ``padded_rows`` (random routing)."""
    if padded is None:
        return padded_rows(assignments, experts_touched, tile)
    return padded[int(tile)]


def _body_s(
    fit: MoELayerFit,
    gpu: GPUSpec,
    shape: _Shape,
    assignments: float,
    experts_touched: float,
    padded: Mapping[int, float] | None,
    max_pairs: float,
    l2_warm: bool = True,
) -> float:
    """Seconds of the expert GEMMs: weight reads, MMAs and tile operand traffic, overlapped."""
    bandwidth = gpu.hbm_bandwidth_bytes_per_s
    peak = gpu.peak_flops(DType.parse(fit.compute_dtype))
    width = body_width(fit, shape.inter)
    matrix_elems = float(shape.num_matrices * shape.hidden * width)
    read_s = experts_touched * matrix_elems * fit.weight_bytes / (bandwidth * fit.mem_eff)
    if l2_warm:  # the tables' replays read weights that fit in L2 from it (``moe_l2``)
        touched = touched_weight_bytes(
            experts_touched, shape.num_matrices, shape.hidden, shape.inter, fit.weight_bytes
        )
        read_s /= l2_read_gain(fit.l2_gain, fit.l2_frac, touched, gpu.l2_cache_bytes)
    density = shape.num_tokens * shape.topk / max(shape.local_experts, 1.0)  # Marlin's rule
    tile = tile_for(fit, assignments / max(experts_touched, 1.0), density)
    # the busiest expert's rows run on few CTAs at the end of the grouped GEMM (H100 vLLM fp8,
    # > 256 tokens: log(measured / formula) -0.11 when the busiest expert holds < 2x the mean
    # pairs, +0.16 at 16-64x): priced as extra rows
    rows = _rows_at(assignments, experts_touched, tile, padded) + fit.hot_weight * max_pairs
    math_elems = shape.num_matrices * shape.hidden * math_width(fit, width)
    math_s = 2.0 * rows * math_elems / (peak * fit.compute_eff)
    traffic_s = kloop_s = 0.0
    p = fit.overlap_p
    if fit.traffic_eff > 0.0 and _runs_default_tiles(fit, gpu, shape):
        p = fit.tiles_overlap_p or p
        tiles = default_tiles(fit.compute_dtype, shape.num_tokens, shape.local_experts)
        at_tile = _rows_at(assignments, experts_touched, tiles[0], padded)
        moved = tile_traffic_bytes(
            at_tile, tiles, shape.hidden, width, fit.weight_bytes, shape.num_matrices
        )
        traffic_s = moved / (bandwidth * fit.traffic_eff)
        block_k = default_block_k(fit.compute_dtype, shape.num_tokens, shape.local_experts)
        kloop_s = fit.kloop_s * kloop_steps(shape.hidden, width, block_k)
    # weight reads, MMAs, tile operand loads and the serial K loop overlap by the same p-norm
    body = read_s**p + math_s**p + traffic_s**p + kloop_s**p
    return body ** (1.0 / p) if read_s + math_s > 0 else 0.0


def _runs_default_tiles(fit: MoELayerFit, gpu: GPUSpec, shape: _Shape) -> bool:
    """Whether the kernel runs ``get_default_config``'s tiles for this shape on ``gpu``
    (``moe_configs``: vLLM's Triton kernel where no tuned file exists); a fit that names no
    kernel keeps its traffic term everywhere."""
    if not fit.kernel:
        return True
    label = "bf16" if fit.weight_bytes == 2.0 else fit.compute_dtype
    return runs_default_tiles(fit.kernel, gpu.name, label, shape.local_experts, shape.inter)
