"""Prefill attention tiles and CTA residency per GPU, from the kernels' launch code.

FlashAttention 3 (Hopper) as vLLM calls it: a paged KV cache of 16-token pages cannot be read
by TMA (``get_pagedkv_tma`` needs ``page_size % kBlockN == 0``; flash-attention
hopper/flash_api.cpp), so the paged-KV-non-TMA kernel runs, and it always packs the GQA group
into the query rows ("Always enable PackGQA for Sm8x or PagedKVNonTMA", ``get_pack_gqa``): one
CTA per (sequence, KV head, 128 packed rows). Tiles (hopper/tile_size.h,
``tile_size_fwd_sm90``): 128 x 128 at head_dim 128 for bf16 (causal), 128 x 160 for fp8
(``paged_kv_non_TMA ? 160 : 224``); the fitted per-CTA cost absorbs the other head sizes'
tiles. One warp-specialised CTA per SM. Evidence (H100 vLLM fp8 prefill, 4-fold shape-held-out,
before -> after packing + the 160-key tile): isl 513-4095 10.1 -> 9.3 %, window 10.1 -> 9.4 %;
either alone does not help (10.2-10.3 %).

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
from typing import NamedTuple

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


def fa3_block_n(head_dim: float, fp8_kv: bool) -> int:
    """Keys per tile (kBlockN) of FA3's paged-KV-non-TMA kernel: 160 for an fp8 cache at
    head_dim 97-128 (``tile_size_fwd_sm90``), else the 128 the fit was built on."""
    return 160 if fp8_kv and 96 < head_dim <= 128 else 128


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

    FA3 (Hopper): 128 x ``fa3_block_n``, one CTA per SM, the GQA group packed. FA2 (Ampere,
    Ada): 64 x ``fa2_block_n``, as many CTAs per SM as the shared memory holds (one or two).
    An fp8 KV cache on Ampere / Ada runs FlashInfer (FA2 reads only 16-bit caches): it packs
    the GQA group into the query rows (one CTA per sequence x KV head x ``flashinfer_tile_q`` packed
    rows: ``packed_qo_len = qo_len * gqa_group_size`` in its scheduler.cuh). Its KV tile is
    not modelled (square tiles) and one CTA per SM is assumed. Evidence: L40S FlashInfer
    against FA2 at isl 16, head_dim 128 takes 0.43-0.62x the time at groups of 10-64 and
    1.3-1.8x at groups of 2-4 (packing fills the tile or leaves it a quarter full).
    """
    if not runs_fa2(gpu):
        return 128, fa3_block_n(head_dim, fp8_kv), 1, max(1, round(group))
    if fp8_kv:
        pack = max(1, round(group))
        tile_q = flashinfer_tile_q(chunk * pack, head_dim)
        return tile_q, tile_q, 1, pack
    block_m, block_n = 64, fa2_block_n(head_dim)
    cta_bytes = (block_m + 2 * block_n) * head_dim * 2 + _SMEM_RESERVED_PER_CTA
    fits = int(smem_per_sm(gpu) // cta_bytes)
    return block_m, block_n, max(1, min(_MAX_CTAS_BY_REGISTERS, fits)), 1


def floor_sum(n: int, m: int, a: int, b: int) -> int:
    """sum_{i=0}^{n-1} floor((a i + b) / m) for n >= 0, m >= 1, a, b >= 0, in O(log m) steps
    (the Euclid-like reduction: swap the roles of a and m after taking out whole quotients)."""
    total = 0
    while True:
        if a >= m:
            total += (n - 1) * n // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            return total
        n, b = divmod(y_max, m)
        m, a = a, m


def chain_key_tiles(num_q_tiles: int, rows: int, keys: int, window_tiles: int | None) -> int:
    """Key tiles the last query tile of a causal chunk visits (the longest CTA)."""
    full = -(-num_q_tiles * rows // keys)
    return full if window_tiles is None else min(full, window_tiles)


def causal_tile_visits(num_q_tiles: int, rows: int, keys: int, window_tiles: int | None) -> int:
    """Key-tile visits of one sequence's query tiles under a causal (optionally sliding) mask.

    Query tile j (1-based) reaches token j x ``rows`` (its query tokens per tile: kBlockM over
    the heads packed in it), so it sees ceil(j rows / keys) key tiles of ``keys`` tokens, at most
    ``window_tiles`` under a window. FA3's fp8 tile (128 rows x 160 keys) makes the ratio not a
    whole number. Closed form of sum_j min(ceil(j rows / keys), window_tiles) by ``floor_sum``.
    """
    g = math.gcd(rows, keys)
    a, m = rows // g, keys // g

    def upto(j: int) -> int:  # sum of ceil(i a / m) = floor((i a + m - 1) / m) for i = 1..j
        return floor_sum(j, m, a, a + m - 1)

    if window_tiles is None:
        return upto(num_q_tiles)
    # ceil(j a / m) <= w exactly for j <= w m / a
    capped = min(num_q_tiles, window_tiles * m // a)
    return upto(capped) + (num_q_tiles - capped) * window_tiles


class PrefillTiling(NamedTuple):
    """One average chunk's tiles: the kernel's tile and residency, and the key-tile visits."""

    block_m: int  # query rows per tile
    block_n: int  # keys per tile
    resident: int  # CTAs resident per SM
    pack: int  # query heads packed per CTA (FlashInfer's GQA packing), else 1
    num_q_tiles: int  # query tiles of one (sequence, packed head group)
    visits: float  # key-tile visits of those query tiles (occupancy-scaled, >= pairs floor)
    chain: int  # key tiles of the longest CTA (the last query tile)
    occupancy: float  # fill of a tile by a chunk shorter than one


def prefill_tiling(
    gpu: GPUSpec,
    head_dim: int,
    kv_bytes: float,
    *,
    chunk: float,
    cached: float,
    group: float,
    num_pairs: float,
    num_seqs: int,
    window: int | None,
) -> PrefillTiling:
    """Tiles and causal key-tile visits of one average chunk of ``chunk`` query tokens after
    ``cached`` context tokens (``num_seqs`` chunks of ``num_pairs`` query-key pairs in all)."""
    block_m, block_n, resident, pack = prefill_tiles(gpu, head_dim, kv_bytes <= 1.0, group, chunk)
    # a packed CTA holds ``pack`` query heads' rows of each token: ``pack`` x the rows, and
    # query tile j (1-based) reaches token j * block_m / pack: j * block_m / (pack * block_n)
    # key tiles
    rows, keys = block_m, block_n * pack
    num_q_tiles = math.ceil(chunk * pack / block_m)
    # a query tile's keys under a window span window + its tokens
    window_tiles = None if not window else math.ceil((window + block_m / pack) / block_n)
    visible = cached if not window else min(cached, float(window))
    cache_tiles = math.ceil(visible / block_n)
    visits = causal_tile_visits(num_q_tiles, rows, keys, window_tiles)
    visits += num_q_tiles * cache_tiles
    # a chunk shorter than a tile fills it partly (FA pads rows and keys of the last tile)
    occupancy = min(1.0, chunk * pack / block_m) * min(1.0, (chunk + cached) / block_n)
    floor = num_pairs * pack / num_seqs / (block_m * block_n)
    chain = chain_key_tiles(num_q_tiles, rows, keys, window_tiles) + cache_tiles
    return PrefillTiling(
        block_m,
        block_n,
        resident,
        pack,
        num_q_tiles,
        max(visits * occupancy, floor),
        chain,
        occupancy,
    )
