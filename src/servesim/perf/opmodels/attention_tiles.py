"""Prefill attention tiles and CTA residency per GPU, from the kernels' launch code.

FlashAttention 3 (Hopper): 128 query rows x 128 keys per tile at head_dim 128 (flash-attention
hopper/tile_size.h), one warp-specialised CTA per SM; the fitted per-CTA cost absorbs the
other head sizes' tiles. This is what the prefill model assumed for every GPU before.

FlashAttention 2 (Ampere, Ada) as vLLM calls it: vLLM passes a paged KV cache (a block table)
to ``mha_varlen_fwd``, which then always runs the split-KV kernel (``run_mha_fwd(params,
stream, paged_KV)`` forces ``run_mha_fwd_splitkv_dispatch``; vllm-project/flash-attention
csrc/flash_attn/flash_api.cpp). That kernel's tiles do not depend on the GPU: kBlockM = 64
query rows, kBlockN = 256 keys for head_dim <= 80, 128 up to 128, 64 above, 4 warps
(flash_fwd_launch_template.h, ``run_mha_fwd_splitkv_dispatch``). Its shared memory is the Q
tile plus a K and a V tile, (kBlockM + 2 kBlockN) x head_dim x 2 bytes (kernel_traits.h,
``kSmemSize`` without Q/K sharing): 72-96 KB. The SM's shared memory then decides how many
CTAs run at once: A100 (164 KB per SM) holds two below head_dim 256, Ada (L40S: 100 KB per
SM) one. Evidence from the tables: per SM, the short-sequence traffic-bound rows reach
7.3 GB/s on A100 and 3.6 on L40S (isl 64, >= 1024 heads x sequences; 2.0x), the long
many-head rows 2.6 against 3.5 us per 64x128 tile visit per SM (two CTAs sharing A100's SM,
one alone on L40S's: the per-visit time of one CTA is about the same, 5.2 against 3.5 us).
"""

from __future__ import annotations

import math

from servesim.specs.gpu import GPUSpec

#: Shared memory per SM (bytes) a CTA can use, from the architecture whitepapers / CUDA
#: programming guide (compute capability table): sm_80 (A100) 164 KB, sm_86 / sm_89 (A40, A10,
#: L4, L40S) 100 KB, sm_90 (H100, H200) 228 KB. By GPU name first (Ampere has both).
SMEM_PER_SM_BYTES: dict[str, int] = {
    "a100-40gb": 164 * 1024,
    "a100-80gb": 164 * 1024,
    "a100-pcie-80gb": 164 * 1024,
    "a40": 100 * 1024,
    "a10": 100 * 1024,
}
_SMEM_BY_ARCH = {"ampere": 164 * 1024, "ada": 100 * 1024, "hopper": 228 * 1024}
#: CUDA reserves 1 KB of shared memory per resident CTA (programming guide, "Shared Memory").
_SMEM_RESERVED_PER_CTA = 1024
#: FA2's split-KV kernel runs 4 warps of up to 255 registers: 128 x 255 of the 65536 per SM
#: (every architecture here) caps residency at two CTAs, whatever the shared memory allows.
_MAX_CTAS_BY_REGISTERS = 2
#: Architectures whose engines run FlashAttention 2 (vLLM / SGLang pick FA3 only on Hopper).
FA2_ARCHITECTURES = ("ampere", "ada")


def smem_per_sm(gpu: GPUSpec) -> int:
    """Shared memory per SM (bytes) of ``gpu``: by name, else by architecture (Hopper's)."""
    return SMEM_PER_SM_BYTES.get(gpu.name, _SMEM_BY_ARCH.get(gpu.architecture, 228 * 1024))


def runs_fa2(gpu: GPUSpec) -> bool:
    """Whether the engine's prefill kernel on ``gpu`` is FlashAttention 2 (Ampere, Ada)."""
    return gpu.architecture in FA2_ARCHITECTURES


def fa2_block_n(head_dim: float) -> int:
    """Keys per tile of FA2's split-KV kernel (kBlockN) at ``head_dim``."""
    if head_dim <= 80:
        return 256
    return 128 if head_dim <= 128 else 64


def flashinfer_tile_q(packed_rows: float, head_dim: float) -> int:
    """FlashInfer's query tile (``FA2DetermineCtaTileQ``, include/flashinfer/utils.cuh) for an
    average of ``packed_rows`` query rows per (sequence, KV head): 128 above 64 rows (head_dim
    below 256), 64 above 16, else 16 (sm_80 and newer)."""
    if packed_rows > 64 and head_dim < 256:
        return 128
    return 64 if packed_rows > 16 else 16


def prefill_tiles(
    gpu: GPUSpec, head_dim: float, fp8_kv: bool = False, group: float = 1.0, chunk: float = 1.0
) -> tuple[int, int, int, int]:
    """(query rows, keys, resident CTAs per SM, query heads packed per CTA) of one prefill tile
    on ``gpu`` at ``head_dim``, for chunks of ``chunk`` tokens and a GQA ``group``.

    FA3 (Hopper): 128 x 128, one CTA per SM, no packing. FA2 (Ampere, Ada): 64 x
    ``fa2_block_n``, as many CTAs per SM as the shared memory holds (one or two). An fp8 KV
    cache on Ampere / Ada runs FlashInfer (FA2 reads only 16-bit caches): it packs the GQA
    group into the query rows (one CTA per sequence x KV head x ``flashinfer_tile_q`` packed
    rows: ``packed_qo_len = qo_len * gqa_group_size`` in its scheduler.cuh). Its KV tile is
    not modelled (square tiles) and one CTA per SM is assumed. Evidence: L40S FlashInfer
    against FA2 at isl 16, head_dim 128 takes 0.43-0.62x the time at groups of 10-64 and
    1.3-1.8x at groups of 2-4 (packing fills the tile or leaves it a quarter full).
    """
    if not runs_fa2(gpu):
        return 128, 128, 1, 1
    if fp8_kv:
        pack = max(1, round(group))
        tile_q = flashinfer_tile_q(chunk * pack, head_dim)
        return tile_q, tile_q, 1, pack
    block_m, block_n = 64, fa2_block_n(head_dim)
    cta_bytes = (block_m + 2 * block_n) * head_dim * 2 + _SMEM_RESERVED_PER_CTA
    fits = int(smem_per_sm(gpu) // cta_bytes)
    return block_m, block_n, max(1, min(_MAX_CTAS_BY_REGISTERS, fits)), 1


def chain_key_tiles(num_q_tiles: int, ratio: int, window_tiles: int | None) -> int:
    """Key tiles the last query tile of a causal chunk visits (the longest CTA)."""
    full = math.ceil(num_q_tiles / ratio)
    return full if window_tiles is None else min(full, window_tiles)


def causal_tile_visits(num_q_tiles: int, ratio: int, window_tiles: int | None) -> int:
    """Key-tile visits of one sequence's query tiles under a causal (optionally sliding) mask.

    Key tiles are ``ratio`` query tiles wide (kBlockN / kBlockM, a whole number for every
    kernel here), so query tile j (1-based) sees ceil(j / ratio) key tiles, at most
    ``window_tiles`` under a window. Closed form of sum_j min(ceil(j / ratio), window_tiles).
    """

    def upto(j: int) -> int:  # sum of ceil(i / ratio) for i = 1..j
        whole, rest = divmod(j, ratio)
        return ratio * whole * (whole + 1) // 2 + rest * (whole + 1)

    if window_tiles is None:
        return upto(num_q_tiles)
    capped = min(num_q_tiles, window_tiles * ratio)
    return upto(capped) + (num_q_tiles - capped) * window_tiles
