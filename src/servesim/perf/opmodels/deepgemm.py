"""DeepGEMM's block-size choice on Hopper (SM90, fp8 1D2D kernel), pure Python.

SGLang's fp8_block GEMM is DeepGEMM's ``gemm_nt_f8f8bf16`` (per-token-group activation scales,
128 x 128 weight scales). DeepGEMM picks ``block_m`` and ``block_n`` per ``(m, n)`` on the host,
modelled here from ``csrc/jit_kernels/heuristics/common.hpp`` (``get_best_config``) and
``sm90.hpp`` of sgl-project/DeepGEMM:

* candidates: ``block_m`` in {64, 128, 256} (plus 16 / 32 for m <= 16 / 32), ``block_n`` in
  16, 32, ..., 256; the SM90 1D2D kernel keeps ``block_n`` > 128 only at 144, 160 and 192
  (too many weight scales per block or register spills otherwise), and one side is <= 128;
* the choice: fewest waves ``ceil(tiles / SMs)``, then the fullest last wave, then on a tie
  the smaller block of the same other side, else the larger ``block_n`` (not beyond m, n);
* the kernel is persistent: one CTA per SM, CTA ``i`` takes tiles ``i, i + SMs, ...``
  (``deep_gemm/include/deep_gemm/common/scheduler.cuh``).

``servesim.perf.opmodels.gemm`` uses it for the per-configuration single-wave scales of a
DeepGEMM fit (``GemmFit.single_wave_scales``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

#: SM90 1D2D kernel: the block_n values above 128 it accepts (sm90.hpp, ``is_block_size_legal``).
WIDE_BLOCK_N = (144, 160, 192)


@dataclass(frozen=True, slots=True)
class BlockConfig:
    """One DeepGEMM block configuration for an ``(m, n)`` problem.

    Attributes:
        block_m, block_n: the output tile.
        tiles: ``ceil(m / block_m) * ceil(n / block_n)``.
        waves: ``ceil(tiles / SMs)``: rounds of the persistent CTAs.
        last_wave_sms: SMs busy in the last wave (``SMs`` when it is full).
    """

    block_m: int
    block_n: int
    tiles: int
    waves: int
    last_wave_sms: int


def tile_waves(m: int, n: int, block_m: int, block_n: int, num_sms: int) -> BlockConfig:
    """Tiles, waves and last-wave SMs of ``(m, n)`` in ``block_m`` x ``block_n`` tiles."""
    if min(m, n, block_m, block_n, num_sms) <= 0:
        raise ValueError(f"m, n, blocks and SMs must be positive, got {(m, n, block_m, block_n)}")
    tiles = math.ceil(m / block_m) * math.ceil(n / block_n)
    last = tiles % num_sms
    return BlockConfig(block_m, block_n, tiles, math.ceil(tiles / num_sms), last or num_sms)


def _legal(block_m: int, block_n: int) -> bool:
    if block_n > 128 and block_n not in WIDE_BLOCK_N:
        return False
    return block_m <= 128 or block_n <= 128


#: Legal block_n candidates per block_m (16, 32, ..., 256 filtered by ``_legal``).
_BLOCK_NS = {
    bm: tuple(bn for bn in range(16, 257, 16) if _legal(bm, bn)) for bm in (16, 32, 64, 128, 256)
}


def _better(
    new: tuple[int, int, int, int], best: tuple[int, int, int, int], m: int, n: int
) -> bool:
    """DeepGEMM's order on (waves, last-wave SMs, block_m, block_n): fewer waves, a fuller last
    wave, then its tie rules."""
    waves, last, bm, bn = new
    best_waves, best_last, best_bm, best_bn = best
    if waves != best_waves:
        return waves < best_waves
    if last != best_last:
        return last > best_last
    if (bm == best_bm and bn < best_bn) or (bn == best_bn and bm < best_bm):
        return True
    return bm != best_bm and bn > best_bn and bn <= n and bm <= m


def block_config(m: int, n: int, num_sms: int = 132) -> BlockConfig:
    """The block configuration DeepGEMM's SM90 heuristic picks for an fp8 1D2D GEMM."""
    if min(m, n, num_sms) <= 0:
        raise ValueError(f"m, n and SMs must be positive, got {(m, n, num_sms)}")
    block_ms = [64, 128, 256] + [b for b in (16, 32) if m <= b]
    best: tuple[int, int, int, int] | None = None
    for block_m in block_ms:
        m_blocks = -(-m // block_m)
        for block_n in _BLOCK_NS[block_m]:
            tiles = m_blocks * -(-n // block_n)
            cand = (-(-tiles // num_sms), tiles % num_sms or num_sms, block_m, block_n)
            if best is None or _better(cand, best, m, n):
                best = cand
    assert best is not None  # 64 x 16 is always legal
    return tile_waves(m, n, best[2], best[3], num_sms)


@lru_cache(maxsize=1 << 16)
def single_wave_config(m: int, n: int, num_sms: int) -> tuple[int, int] | None:
    """(block_m, block_n) of the picked configuration when it runs in one wave, else None
    (cached: the runtime asks once per distinct token count and weight)."""
    c = block_config(m, n, num_sms)
    return (c.block_m, c.block_n) if c.waves == 1 else None
