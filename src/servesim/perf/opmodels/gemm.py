"""Time of one dense GEMM (``m`` tokens by a ``k`` x ``n`` weight), pure Python.

The formula (fitted per GPU, kernel stack and kernel format by ``servesim.perf.fitting.gemm``
on aiconfigurator's ``gemm_perf`` and ``quantize`` tables) adds these mechanisms, each seen in
those tables:

* a floor per call (CUDA-graph replay of one kernel: ~2.5 us on H100);
* memory time: weight ``k n w`` + activation ``m k a`` + output ``m n o`` bytes at a fraction
  of the data-sheet bandwidth, plus a fixed memory latency, so small transfers reach a small
  fraction of HBM bandwidth (H100 bf16 at one token: 35% at 8 MB, 87% at 128 MB); data that
  fits the L2 cache is replayed from L2, a little faster. That gain is the tables' condition:
  aiconfigurator replays one captured kernel on one weight back to back with no L2 flush
  (``collector/helper.py`` ``benchmark_with_power``), so a small weight is read from L2 after
  the first replay. A serving step runs every layer between two calls of the same GEMM, so its
  weight has left the L2: ``l2_warm=False`` (what ``KernelSet`` prices) streams the weight
  from HBM and keeps the gain for the activation and output only, as decode attention does
  for its KV (``attention_fit.decode_attention_s``);
* a serial K loop: one output tile's reduction over ``k`` is a chain of dependent steps
  (~1-5 ns per element of ``k`` until split-K caps it), which is what a thin ``n`` costs;
* compute time with tile and wave quantisation: ``ceil(m / tile_m) * ceil(n / tile_n)``
  tiles spread over the GPU's SMs; a fraction ``wave_waste`` of the idle tail of the last
  wave is lost (cuBLAS bf16: ~0, its stream-K hides it; CUTLASS fp8: more); the tile shape
  follows the token count (the kernel dispatch of the stack: fp8 picks 64-row tiles up to 64
  tokens and 128-row tiles later), and each token bucket may carry its own time scale;
* memory, K loop and compute OVERLAP: combined by a p-norm (``overlap`` 1 would be a plain
  sum, large values a max); the fits land near 1.5-2.5;
* a cost per token (fp8 W8A8 of vLLM: ~6 ns per row whatever ``n`` and ``k``);
* for fp8 formats, the activation quantisation kernel (bf16 -> fp8 with a dynamic scale) as
  its own term (``QuantFit``, fitted on the ``quantize`` tables): the fp8 GEMM rows of the
  tables include it, which is why a small fp8 GEMM is slower than a bf16 one.

Rates are fractions of the target GPU's data-sheet peak (``bf16`` peak for bf16, ``fp8`` peak
for fp8 and fp8_block) and bandwidth, with its own SM count and L2 size, so one fit prices
another GPU of the same architecture. An optional log-grid correction over ``(m, n, k)``
captures kernel selection the mechanisms cannot know.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servesim.core.errors import ConfigError
from servesim.perf.opmodels.deepgemm import single_wave_config
from servesim.perf.opmodels.grid import LogGrid, optional_grid
from servesim.perf.opmodels.quantize import (  # noqa: F401  (names kept importable here)
    HOPPER_RESIDENCY,
    QUANT_BLOCK_THREADS,
    QUANT_WORKING_BYTES,
    REF_L2_BYTES,
    REF_QUANT_BLOCKS,
    SM_RESIDENCY,
    SM_RESIDENCY_BY_GPU,
    QuantFit,
    quant_blocks_per_sm,
    round_6g,
    sm_residency,
)
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec

#: Kernel format label -> data-sheet peak it runs at.
PEAK_DTYPE: dict[str, DType] = {
    "bf16": DType.BF16,
    "fp8": DType.FP8,
    "fp8_block": DType.FP8,
    "fp4": DType.FP4,  # NVFP4 W4A4, derived from fp8 (opmodels/fp4.py), never fitted
    "mxfp4_w4a4": DType.FP4,  # MXFP4 W4A4, likewise
}
#: Kernel format label -> (weight, input activation, output) bytes per element.
ELEMENT_BYTES: dict[str, tuple[float, float, float]] = {
    "bf16": (2.0, 2.0, 2.0),
    "fp8": (1.0, 1.0, 2.0),
    "fp8_block": (1.0, 1.0, 2.0),
}


@dataclass(frozen=True, slots=True)
class GemmFit:
    """Fitted constants of one GEMM kernel format on one (GPU, kernel stack).

    Attributes:
        dtype: kernel format label: ``bf16``, ``fp8`` (per-tensor W8A8) or ``fp8_block``.
        weight_bytes, act_bytes, out_bytes: bytes per weight, input and output element.
        floor_s: fixed cost per call (graph replay of the kernel).
        mem_eff: fraction of the data-sheet HBM bandwidth a large transfer reaches.
        mem_latency_s: fixed memory latency: time = (bytes / bandwidth + latency) / mem_eff.
        l2_gain: bandwidth gain when the whole working set fits in L2 (replayed from it).
        l2_frac: fraction of the L2 size at which the gain is half gone.
        kloop_s: seconds per element of ``k`` of one tile's serial reduction ...
        kloop_sat: ... until ``k`` ~ this (split-K spreads longer reductions).
        compute_eff: fraction of the data-sheet peak a large, well-tiled GEMM reaches.
        k_half: thin reductions lose efficiency: compute time x (1 + k_half / k).
        wave_waste: fraction of the idle tail of the last wave that is lost (0: stream-K).
        overlap: p-norm exponent combining memory, K loop and compute (1: serial sum).
        row_s: seconds per token outside the overlap (epilogue work per row).
        buckets: ``(max tokens, tile_m, tile_n, time scale)`` in ascending token order; the
            first bucket with ``m <= max tokens`` applies (the last one's bound is infinite).
        quant: the activation quantisation term (fp8 formats), or None.
        eager_floor_s: fp8_block tables timed WITHOUT CUDA graphs hide every kernel under
            this host-side floor; recorded for scoring against them, never added here.
        single_wave_scales: ``(block_m, block_n, time scale)`` of a DeepGEMM kernel (fp8_block
            of SGLang): a shape whose configuration, as DeepGEMM's heuristic picks it
            (``opmodels.deepgemm``), runs in one wave takes that configuration's measured
            scale on the GEMM kernel's time (not on the quantisation kernel's); empty: none.
        ref_num_sms, ref_l2_bytes: SMs and L2 of the GPU the fit was measured on, used for a
            GPU spec without those figures.
        correction: optional log-grid correction over (m, n, k), or None.
        notes: how the fit was made (which rows, which terms were borrowed).
    """

    dtype: str
    weight_bytes: float
    act_bytes: float
    out_bytes: float
    floor_s: float
    mem_eff: float
    mem_latency_s: float
    l2_gain: float
    l2_frac: float
    kloop_s: float
    kloop_sat: float
    compute_eff: float
    k_half: float
    wave_waste: float
    overlap: float
    row_s: float
    buckets: tuple[tuple[float, int, int, float], ...]
    quant: QuantFit | None = None
    eager_floor_s: float = 0.0
    single_wave_scales: tuple[tuple[int, int, float], ...] = ()
    ref_num_sms: int = 132
    ref_l2_bytes: float = 50 * 2**20
    correction: LogGrid | None = None
    notes: str = ""
    _fast: tuple = field(default=(), init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.dtype not in PEAK_DTYPE:
            raise ValueError(f"unknown GEMM format {self.dtype!r} (known: {sorted(PEAK_DTYPE)})")
        if not self.buckets:
            raise ValueError("a GEMM fit needs at least one token bucket")
        # precomputed views of the buckets and the grid, so one call stays a few microseconds
        bounds = tuple(b[0] for b in self.buckets[:-1])
        tiles = tuple((float(b[1]), float(b[2]), float(b[3])) for b in self.buckets)
        grid = _FastGrid(self.correction) if self.correction is not None else None
        waves = {(int(b[0]), int(b[1])): float(b[2]) for b in self.single_wave_scales}
        object.__setattr__(self, "_fast", (bounds, tiles, grid, waves))

    @property
    def peak_dtype(self) -> DType:
        """The data-sheet peak this format runs at."""
        return PEAK_DTYPE[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (a few hundred bytes plus the grid)."""
        out: dict[str, Any] = {
            "dtype": self.dtype,
            "weight_bytes": self.weight_bytes,
            "act_bytes": self.act_bytes,
            "out_bytes": self.out_bytes,
        }
        for name in _FLOAT_FIELDS:
            out[name] = round_6g(getattr(self, name))
        out["buckets"] = [
            [None if math.isinf(b[0]) else b[0], int(b[1]), int(b[2]), round_6g(b[3])]
            for b in self.buckets
        ]
        out["quant"] = self.quant.to_dict() if self.quant is not None else None
        out["eager_floor_s"] = round_6g(self.eager_floor_s)
        out["single_wave_scales"] = [[b[0], b[1], round_6g(b[2])] for b in self.single_wave_scales]
        out["ref_num_sms"] = int(self.ref_num_sms)
        out["ref_l2_bytes"] = float(self.ref_l2_bytes)
        out["correction"] = self.correction.to_dict() if self.correction is not None else None
        out["notes"] = self.notes
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GemmFit:
        """Inverse of ``to_dict``."""
        buckets = tuple(
            (math.inf if b[0] is None else float(b[0]), int(b[1]), int(b[2]), float(b[3]))
            for b in data["buckets"]
        )
        quant = data.get("quant")
        return cls(
            dtype=str(data["dtype"]),
            weight_bytes=float(data["weight_bytes"]),
            act_bytes=float(data["act_bytes"]),
            out_bytes=float(data["out_bytes"]),
            **{name: float(data[name]) for name in _FLOAT_FIELDS},
            buckets=buckets,
            quant=QuantFit.from_dict(quant) if quant else None,
            eager_floor_s=float(data.get("eager_floor_s", 0.0)),
            single_wave_scales=tuple(
                (int(b[0]), int(b[1]), float(b[2])) for b in data.get("single_wave_scales") or ()
            ),
            ref_num_sms=int(data.get("ref_num_sms", 132)),
            ref_l2_bytes=float(data.get("ref_l2_bytes", 50 * 2**20)),
            correction=optional_grid(data.get("correction")),
            notes=str(data.get("notes", "")),
        )


_FLOAT_FIELDS = (
    "floor_s",
    "mem_eff",
    "mem_latency_s",
    "l2_gain",
    "l2_frac",
    "kloop_s",
    "kloop_sat",
    "compute_eff",
    "k_half",
    "wave_waste",
    "overlap",
    "row_s",
)


#: Architectures whose cuBLAS bf16 GEMMs are persistent, tile-scheduled kernels that hide the
#: idle tail of the last wave (CUTLASS 3 sm90 warp-specialized persistent / stream-K schedulers;
#: the Hopper fits' wave_waste is 0.000-0.009 on H100 and H200, both stacks).
TAIL_HIDING_ARCHS = frozenset({"hopper", "blackwell"})
#: NVIDIA architectures whose cuBLAS bf16 GEMMs launch one CTA per output tile (mma.sync).
PER_TILE_ARCHS = frozenset({"ampere", "ada", "turing"})


def bf16_wave_waste(source_arch: str, target_arch: str) -> float | None:
    """A bf16 fit's wave waste carried from a ``source_arch`` GPU to a ``target_arch`` one when
    the tail rule changes it, else None (same kernel family, or a family the rule does not know:
    an unknown or non-NVIDIA architecture).

    cuBLAS on sm_80 / sm_89 launches one CTA per tile (mma.sync kernels, no persistent
    scheduler), so the last wave's idle SMs are lost in full (1); a Hopper donor's ~0 would
    price A100 and L40S large-m GEMMs fast. Leaving A100 out (bf16 m > 256): 12.5/-5.7 ->
    12.1/+1.2; L40S 25.8/-11.9 -> 24.6/-7.5 (the own fits land at 0.18 / 0.24 with their own
    tile layouts). The reverse (a pre-Hopper donor for a Hopper target) takes 0.
    """
    if source_arch in TAIL_HIDING_ARCHS and target_arch in PER_TILE_ARCHS:
        return 1.0
    if source_arch in PER_TILE_ARCHS and target_arch in TAIL_HIDING_ARCHS:
        return 0.0
    return None


def gemm_time_s(
    fit: GemmFit, gpu: GPUSpec, m: float, n: int, k: int, l2_warm: bool = True
) -> float:
    """Seconds for one GEMM of ``m`` tokens by a ``k`` x ``n`` weight on ``gpu``.

    ``l2_warm`` True reproduces the kernel tables (back-to-back replays leave a small weight in
    L2); False is a serving step's GEMM, whose weight is read from HBM (module docstring).

    Raises:
        ConfigError: the GPU has no data-sheet peak for the fit's format (fp8 on an A100).
    """
    if m <= 0 or n <= 0 or k <= 0:
        return 0.0
    peak = gpu.peak_flops_per_s.get(fit.peak_dtype)
    if not peak:
        raise ConfigError("dtype", fit.dtype, f"{gpu.name} has no {fit.peak_dtype.value} peak")
    bw, res = gpu.hbm_bandwidth_bytes_per_s, sm_residency(gpu)
    return _time(fit, peak, bw, gpu.num_sms, gpu.l2_cache_bytes, m, n, k, res, l2_warm)


def _cold_weight_mem_s(fit: GemmFit, bw: float, l2: float, weight: float, nbytes: float) -> float:
    """Memory time when the weight streams from HBM: the weight and the fixed latency at the
    large-transfer rate; the activation and output (left in L2 by the kernels around it) keep
    the L2 gain of the whole working set, as in the tables (the streaming weight passes through
    the same L2), so a serving GEMM is never priced faster than its table row."""
    x = nbytes / (fit.l2_frac * l2)
    warm = (nbytes - weight) / bw / (1.0 + fit.l2_gain / (1.0 + x**4))
    return (weight / bw + fit.mem_latency_s + warm) / fit.mem_eff


def _time(
    fit: GemmFit,
    peak: float,
    bw: float,
    num_sms: int,
    l2_bytes: float,
    m: float,
    n: int,
    k: int,
    residency: tuple[int, int] = HOPPER_RESIDENCY,
    l2_warm: bool = True,
) -> float:
    """The formula of ``gemm_time_s`` on raw GPU figures (the fits call it per row)."""
    bounds, tiles, grid, waves_scale = fit._fast
    sms = num_sms or fit.ref_num_sms
    l2 = l2_bytes or fit.ref_l2_bytes
    i = 0
    for bound in bounds:
        if m <= bound:
            break
        i += 1
    tile_m, tile_n, scale = tiles[i]
    # memory: bytes at a fraction of HBM bandwidth behind a fixed latency; L2 replays faster
    nbytes = k * n * fit.weight_bytes + m * k * fit.act_bytes + m * n * fit.out_bytes
    if l2_warm:
        x = nbytes / (fit.l2_frac * l2)
        gain = 1.0 + fit.l2_gain / (1.0 + x**4)
        t_mem = (nbytes / bw + fit.mem_latency_s) / (fit.mem_eff * gain)
    else:
        t_mem = _cold_weight_mem_s(fit, bw, l2, k * n * fit.weight_bytes, nbytes)
    # serial reduction of one tile over k
    t_k = fit.kloop_s * k / (1.0 + k / fit.kloop_sat)
    # compute: whole tiles over the SMs, part of the last wave's idle tail lost
    waves = math.ceil(m / tile_m) * math.ceil(n / tile_n) / sms
    if waves > 1.0:
        waves += fit.wave_waste * (math.ceil(waves) - waves)
    t_c = 2.0 * tile_m * tile_n * sms * waves * (k + fit.k_half) / (peak * fit.compute_eff)
    p = fit.overlap
    body = (t_c**p + t_mem**p + t_k**p) ** (1.0 / p)
    t = fit.floor_s + scale * body + fit.row_s * m
    if waves_scale:
        t *= waves_scale.get(single_wave_config(math.ceil(m), n, sms), 1.0)  # type: ignore[arg-type]
    if fit.quant is not None:
        t += fit.quant.time_s(m, k, bw, residency, l2)
    if grid is not None:
        t *= grid.factor(m, n, k)
    return t


class _FastGrid:
    """Trilinear interpolation of a 3-axis ``LogGrid`` (same answer, fewer steps)."""

    __slots__ = ("axes", "strides", "values")

    def __init__(self, grid: LogGrid) -> None:
        if len(grid.axes) != 3 or any(len(a) < 2 for a in grid.axes):
            raise ValueError("a GEMM correction grid has 3 axes of 2 or more points")
        self.axes = grid.axes
        self.values = grid.values
        n1, n2 = len(grid.axes[1]), len(grid.axes[2])
        self.strides = (n1 * n2, n2, 1)

    def factor(self, m: float, n: float, k: float) -> float:
        (a0, a1, a2), v = self.axes, self.values
        i0, w0 = _locate(a0, math.log2(m))
        i1, w1 = _locate(a1, math.log2(n))
        i2, w2 = _locate(a2, math.log2(k))
        s0, s1, _ = self.strides
        b = i0 * s0 + i1 * s1 + i2
        u2 = 1.0 - w2
        c00 = v[b] * u2 + v[b + 1] * w2
        c01 = v[b + s1] * u2 + v[b + s1 + 1] * w2
        b += s0
        c10 = v[b] * u2 + v[b + 1] * w2
        c11 = v[b + s1] * u2 + v[b + s1 + 1] * w2
        c0 = c00 + (c01 - c00) * w1
        c1 = c10 + (c11 - c10) * w1
        return math.exp(c0 + (c1 - c0) * w0)


def _locate(axis: tuple[float, ...], x: float) -> tuple[int, float]:
    """(lower index, weight of the upper point) of ``x`` on ``axis``; the edges hold."""
    if x <= axis[0]:
        return 0, 0.0
    last = len(axis) - 1
    if x >= axis[last]:
        return last - 1, 1.0
    lo = bisect_right(axis, x) - 1
    return lo, (x - axis[lo]) / (axis[lo + 1] - axis[lo])
