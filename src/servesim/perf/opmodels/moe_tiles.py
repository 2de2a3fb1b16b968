"""SGLang's default fused-MoE tiles, their operand traffic, the same-die streaming rule, and
the weight formats' bytes and compute dtype.

Split from ``moe_layer`` (which prices the layer with them): the tiles SGLang's Triton fused MoE
runs without a tuned config (``fused_moe_triton_config.get_default_config``), the bytes those
tiles stream into shared memory, and the factor that keeps the streaming kernels' absolute rate
between GPUs of one die.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec

if TYPE_CHECKING:
    from servesim.perf.opmodels.moe_layer import MoELayerFit

#: Activations move in bf16 between the grouped GEMMs.
ACT_BYTES = 2.0


def default_tiles(compute_dtype: str, tokens_in: float, local_experts: float) -> tuple[int, int]:
    """(BLOCK_SIZE_M, BLOCK_SIZE_N) of SGLang's ``get_default_config`` (fused_moe_triton_config),
    which the Triton fused MoE runs when no tuned config file matches the rank's expert count and
    width: block-scaled fp8 64 x 128 (N is the 128 scale block); otherwise 64 x 64, or 16 x 32
    when the layer's tokens do not exceed its local experts (``M <= E``)."""
    if compute_dtype == "fp8":
        return 64, 128
    return (16, 32) if tokens_in <= local_experts else (64, 64)


def tile_traffic_bytes(
    rows_padded: float,
    tiles: tuple[int, int],
    hidden: float,
    width: float,
    weight_bytes: float,
    num_matrices: int,
) -> float:
    """Operand bytes the two grouped GEMMs stream into shared memory: every (M tile, N tile) CTA
    loads its BLOCK_M rows of activations and BLOCK_N columns of weights over the whole K, so the
    activations are re-read once per N tile and the weights once per M tile. With 64 x 64 tiles
    that is 32 FLOP per byte, which on H100 (989 TFLOP/s bf16) outruns the cache hierarchy: H100
    SGLang bf16, hidden 4096, width 14336, 8 experts, 16384 tokens runs at 20% of peak where the
    tuned width 7168 runs at 55%. Gate-up GEMM: N = (matrices - 1) x width, K = hidden; down:
    N = hidden, K = width."""
    block_m, block_n = tiles
    per_k = block_m * ACT_BYTES + block_n * weight_bytes
    m_tiles = rows_padded / block_m
    up = math.ceil((num_matrices - 1) * width / block_n) * hidden
    down = math.ceil(hidden / block_n) * width
    return m_tiles * per_k * (up + down)


def default_block_k(compute_dtype: str, tokens_in: float, local_experts: float) -> int:
    """BLOCK_SIZE_K of SGLang's ``get_default_config`` (the tiles of ``default_tiles``): the
    block-scaled fp8 scale block 128; bf16 64 when ``M <= E``, else 32."""
    if compute_dtype == "fp8":
        return 128
    return 64 if tokens_in <= local_experts else 32


def kloop_steps(hidden: float, width: float, block_k: int) -> int:
    """Serial K steps one CTA takes through the two grouped GEMMs (gate-up: K = hidden; down:
    K = the per-rank width), each a dependent load-and-MMA step of ``block_k`` elements."""
    return math.ceil(hidden / block_k) + math.ceil(width / block_k)


def same_die_stream_ratio(source_name: str, target: GPUSpec) -> float:
    """Factor on the streaming rates (units of the target's HBM bandwidth) carrying a fit to
    another GPU of the same die: the permute, gather and combine kernels are bound on the SMs
    (address generation, small scattered rows), not on HBM, so they keep the donor's absolute
    rate. Evidence: H100 and H200 (same GH100 SMs and clocks, 1.43x the HBM bandwidth) time the
    same MoE layers at a median ratio of 1.10-1.17 above 2048 tokens (vLLM bf16 / fp8 /
    fp8_block, SGLang bf16 / fp8_block), where streaming dominates. Other architectures: 1."""
    from servesim.core.errors import UnknownNameError
    from servesim.specs.catalog.gpus import get_gpu

    try:
        source = get_gpu(source_name)
    except UnknownNameError:  # a fit named after a GPU outside the catalog: no rule
        return 1.0
    if source.architecture != target.architecture:
        return 1.0
    return target.hbm_bandwidth_bytes_per_s / source.hbm_bandwidth_bytes_per_s


def weight_bytes_of(dtype_label: str) -> float:
    """Bytes per weight element of a table's format label, scales included.

    fp8 block scales (one fp32 per 128x128) and int4 group scales (bf16 per 128) add <2%;
    MXFP4 stores one e8m0 scale byte per 32 elements.
    """
    return {
        "bf16": 2.0,
        "fp8": 1.0,
        "fp8_block": 1.0 + 4.0 / (128 * 128),
        "mxfp4": 0.5 + 1.0 / 32,
        "int4": 0.5 + 2.0 / 128,
    }[dtype_label]


def compute_dtype_of(dtype_label: str, gpu: GPUSpec) -> str:
    """Peak the grouped GEMMs run at: fp8 math for fp8 formats where the GPU has it, else bf16
    (4-bit weight-only kernels dequantise to bf16 before the MMA)."""
    if dtype_label in ("fp8", "fp8_block") and DType.FP8 in gpu.peak_flops_per_s:
        return "fp8"
    return "bf16"


def ogs_block_m(num_tokens: float, local_experts: float) -> int:
    """M tile of triton_kernels' ``matmul_ogs`` (vLLM's gpt-oss MXFP4 path), from its own rule
    (``opt_flags.make_default_opt_flags_nvidia``): with ragged routing and at most 64 tokens per
    expert, block_m = clamp(next_pow2(2 x tokens per expert), 16, 64) ("likely memory bound; set
    the block size higher to minimize loading weights more than once"), else clamp(next_pow2(
    tokens per expert), 16, 128). Tokens per expert are the layer's tokens over the rank's local
    experts: the H100 / H200 tables step at the same tokens per LOCAL expert in both gpt-oss
    shapes (one local expert 74 -> 85 -> 111 us at 8 -> 16 -> 32 tokens; two at 16 -> 32 -> 48;
    four at 32 -> 48 and 64 -> 80), whatever the rank's pairs (one pair at 16 and at 32 tokens)."""
    per_expert = max(1, int(num_tokens // max(local_experts, 1.0)))
    if per_expert <= 64:
        return max(16, min(1 << math.ceil(math.log2(2 * per_expert)), 64))
    return max(16, min(1 << math.ceil(math.log2(per_expert)), 128))


#: Tile rows past which the one-CTA pass stops growing: the tables' time is flat where the rule
#: gives block_m 128 (more than 64 tokens per local expert; H100 gpt-oss-20b at EP 32, one local
#: expert: 110-113 us from 32 to 1024 tokens; gpt-oss-120b at EP 32, four local experts: 119 /
#: 118 us at block_m 64 / 128). Why is not sourced (num_warps is fixed by the Hopper MX-scale
#: layout, so a 128-row tile is not one CTA's serial work as 64 rows are).
OGS_FLOOR_MAX_ROWS = 64


def ogs_floor_rows(num_tokens: float, local_experts: float) -> int:
    """Tile rows one ``matmul_ogs`` CTA runs serially: ``ogs_block_m``, at most
    ``OGS_FLOOR_MAX_ROWS``."""
    return min(ogs_block_m(num_tokens, local_experts), OGS_FLOOR_MAX_ROWS)


def cta_floor_s(fit: MoELayerFit, num_tokens: float, num_experts: int, ep: int) -> float:
    """The layer's floor from one CTA's serial pass through triton_kernels' ``matmul_ogs`` GEMMs.

    The kernel sizes its M tile by tokens per local expert (``moe_tiles.ogs_block_m``), not by
    the pairs the rank really computes, and runs one CTA per (M tile, N tile, K split): with few
    local experts that grid is under one wave and the layer takes one CTA's time, which grows
    with the padded tile. Evidence (H100 vLLM 0.24, gpt-oss-120b, one local expert at EP 128,
    one real pair at both 16 and 32 tokens): 74 / 85 / 111 us at block_m 16 / 32 / 64, i.e.
    ~0.7 us per tile row, where the padded rows' math at the whole GPU's rate is ~4 us; the same
    steps at two and four local experts. The rate per row is fitted (``cta_row_s``), like
    FlashAttention 2's rate per CTA; the tables' two shapes share hidden and width (2880), so the
    pass is priced per row, not per row and K element.
    """
    local = num_experts / max(ep, 1)
    return fit.cta_row_s * ogs_floor_rows(num_tokens, local)


#: Per-rank widths that are a multiple of this many elements run at full speed.
ALIGN_ELEMS = 16
#: ``MoELayerFit.tile_rule`` of the Marlin kernels (``marlin_block_m``), and the M blocks of
#: vLLM's ``fused_marlin_moe`` (SGLang's Marlin MoE runner takes the same rule).
MARLIN_RULE = "marlin"
MARLIN_BLOCKS = (8, 16, 32, 48, 64)


def streamed_pairs(fit: MoELayerFit, batch_pairs: float, assignments: float) -> float:
    """Token-expert pairs the rank streams: its own, plus ``stream_global`` of the others'."""
    if fit.stream_global >= 1.0:
        return batch_pairs
    return assignments + fit.stream_global * max(batch_pairs - assignments, 0.0)


def marlin_block_m(density: float) -> int:
    """The M block ``fused_marlin_moe`` sorts each expert's pairs into: the first of 8, 16, 32,
    48, 64 under which ``tokens x topk / local experts`` fills less than 0.9 of a block, else
    64 (vLLM ``fused_moe/fused_marlin_moe.py``: ``M * topk / E / block_size_m < 0.9``, ``E``
    the rank's experts, ``M * topk`` all the batch's pairs)."""
    for block in MARLIN_BLOCKS:
        if density / block < 0.9:
            return block
    return MARLIN_BLOCKS[-1]


def tile_for(fit: MoELayerFit, pairs_per_expert: float, density: float = 0.0) -> float:
    """M tile the kernel runs: Marlin's density rule (``tile_rule`` "marlin",
    ``marlin_block_m`` of ``density``, tokens x topk / local experts); otherwise the power of
    two covering the pairs per touched expert, between ``tile_min`` and ``tile_rows`` (vLLM's
    tuned Triton configs and FlashInfer's autotuned tactics grow BLOCK_M with the tokens;
    ``tile_min`` 0 means one fixed tile)."""
    if fit.tile_rule == MARLIN_RULE:
        return float(marlin_block_m(density))
    if fit.tile_min <= 0.0:
        return fit.tile_rows
    cover = 2.0 ** math.ceil(math.log2(max(pairs_per_expert, 1.0)))
    return min(fit.tile_rows, max(fit.tile_min, cover))


def body_width(fit: MoELayerFit, inter: float) -> float:
    """Expert width the grouped GEMMs effectively run at.

    Per-rank widths not a multiple of ``ALIGN_ELEMS`` lose the tuned, vectorised kernel (H100
    vLLM bf16, hidden 2688, 128 experts, 64 tokens: widths 58 / 116 / 232 take 250 / 272 /
    361 us where the aligned 464 takes 252 us): they run as a width ``1 / misalign_eff``
    times wider, and never below ``misalign_floor`` elements.
    """
    if inter % ALIGN_ELEMS == 0:
        return float(inter)
    return max(fit.misalign_floor, inter / fit.misalign_eff)


def math_width(fit: MoELayerFit, width: float) -> float:
    """Expert width the grouped GEMMs' math runs at: ``width`` (``body_width``), never below the
    kernel's narrowest tile (``tile_width``; 0: none). A tile computes whole: FlashInfer's
    CUTLASS grouped GEMM walks the down projection's K (the expert width) in 128-byte K tiles
    and pads the gated up projection's N (twice the width) to its CTA tile, so a narrower
    per-rank width costs the tile's math. H200 vLLM 0.24 fp8, hidden 4096, 128 experts, top 8,
    16384 tokens: widths 48 / 96 / 192 / 384 take 3.38 / 3.47 / 4.22 / 5.69 ms, flat below
    ~128 and ~10 us per width element above. The fits land at 186 (H100) and 232 (H200), more
    than one K tile: the floor also holds the up projection's N tile; rounding widths up to
    multiples of a fitted tile instead lands at ~128 (the K tile itself) but predicts held-out
    shapes worse (H200 > 256 tokens balanced 16.0 against 15.6%). The weights are read at
    their own width (tiles past the matrix edge load nothing)."""
    return max(width, fit.tile_width)
