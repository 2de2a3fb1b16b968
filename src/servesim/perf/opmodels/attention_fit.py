"""Fitted attention kernel times (prefill and decode), per layer per GPU, from batch aggregates.

Mechanisms (evidence: aiconfigurator tables, ``servesim.perf.fitting.attention``):

* Prefill (FlashAttention-2/3, causal): one CTA per (sequence, query head or packed GQA group,
  query tile); a query tile visits the key tiles up to the diagonal (or inside the sliding
  window). Tiles and CTAs resident per SM are the kernel's (``attention_tiles``: FA3 128 x 128,
  128 x 160 for fp8, GQA packed, one per SM; FA2 64 x 64-256, one or two per SM by shared
  memory). Each visit costs one tile of MMA at
  ``mma_eff`` of the SM's share of the tensor peak, each CTA adds a fixed cost (FA3:
  ``fix_tiles`` tile-visits; FA2: ``fix_s`` seconds) for the Q load, softmax epilogue and O
  store: this is why efficiency grows with sequence length (H100 FA3: ~7% of peak at isl 128,
  ~65% at 16k). The CTAs spread over ``num_sms``, the resident ones sharing an SM's time, the
  SM's MMA rate bounding their tile visits; when there are few, the last query tile's chain
  bounds the time (critical path). Q/K/V/O traffic at ``mem_eff`` of HBM bandwidth overlaps with the
  MMA (p-norm), and a fixed launch floor ``floor_s`` sits under everything.
* Decode (split-KV paged attention): reads every sequence's K and V once. Small batches sit on
  an 11-13 us floor (H100 FA3); large KV streams at ``hbm_eff`` (81-94% measured) of HBM
  bandwidth. A per query-row cost (Q load, split combine, O store; ``row_flops`` flop-equivalents
  per head-dim element) dominates at large batch and short context. When one layer's KV fits
  in L2, back-to-back replays (how the tables were measured) read it at L2 bandwidth
  (``l2_bw_per_sm``); ``l2_warm=False`` turns that off for a serving step, where the other
  layers' weights evict the KV between visits. An fp8 KV cache adds work per KV byte on the
  SMs (FA3 runs fp8 attention as fp8 WGMMA, which needs V transposed in shared memory: FA3
  paper, Shah et al. 2024, sec. 3.3), so its stream is capped at ``kv_bw_per_sm`` per SM
  whatever the HBM allows. Evidence: at KV > L2 the H100 / H200 time ratio (same die, 1.43x
  HBM bandwidth) is 1.26 (vLLM) / 1.23 (SGLang) for bf16 but 1.04 / 1.10 for fp8. The HBM
  efficiency is the memory system's, so the fp8 fit takes the bf16 one's ``hbm_eff``.
  FlashAttention 2 (Ampere / Ada) packs a GQA group's query heads into one tile for decode
  (``seqlenq_ngroups_swapped`` in flash-attention csrc/flash_attn/flash_api.cpp) only without a
  sliding window; with one, every query head reads its KV head alone, as in MHA
  (``window_unpacks_gqa``). Evidence: L40S FA2 decode with a 128-token window takes 2.2x
  (<= 128 sequences) to 5.1x (more) the full-attention time at the same context, while its
  FlashInfer fp8 path and H100's FA3 measure 1.00-1.02x.
  Unpacked, the group's other heads re-read their KV head from L2; and FA2 sets up split-KV
  only on its packed path, so MHA and windowed decode run one CTA per (sequence, query head)
  at ``cta_bw`` each (``attention_stream``).

An optional ``LogGrid`` per phase corrects what the mechanism cannot know (kernel selection by
head_dim, split heuristics). Parameters transfer to another GPU of the same architecture through
its data-sheet peak, bandwidth, SM count and L2 size. Pure Python: nothing here imports numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servesim.perf.opmodels import attention_stream as stream
from servesim.perf.opmodels import attention_tiles as tiles
from servesim.perf.opmodels.grid import LogGrid, optional_grid
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec

# FA3's bf16 hdim-128 Hopper tile (flash-attention hopper/tile_size.h); the fitted fix_tiles
# and mma_eff absorb the other head sizes' tiles. Every kernel's tiles (fp8, FA2, FlashInfer):
# ``attention_tiles.prefill_tiles``.
TILE_M = 128
TILE_N = 128
# Data-sheet fallbacks while the catalog's SM / L2 fields are not filled in (0):
# H100/H200 SXM 132 SMs 50 MB L2, A100 108 SMs 40 MB, L40S 142 SMs 96 MB (NVIDIA data sheets).
_FALLBACK_SMS_L2 = {
    "h100-sxm": (132, 50 * 2**20),
    "h200-sxm": (132, 50 * 2**20),
    "a100-80gb": (108, 40 * 2**20),
    "a100-40gb": (108, 40 * 2**20),
    "l40s": (142, 96 * 2**20),
}
_L2_STEEPNESS = stream.L2_STEEPNESS  # the L2 hit fraction's steepness (``attention_stream``)


def gpu_sms_l2(gpu: GPUSpec) -> tuple[int, float]:
    """(num_sms, l2_cache_bytes) of ``gpu``: the catalog's, else the data-sheet fallback."""
    sms, l2 = _FALLBACK_SMS_L2.get(gpu.name, (132, 50 * 2**20))
    return (gpu.num_sms or sms, float(gpu.l2_cache_bytes or l2))


def _pnorm(a: float, b: float, p: float) -> float:
    """Smooth max of two overlapping times: p=1 serial, p -> inf perfect overlap."""
    top = max(a, b)
    if top <= 0.0:
        return 0.0
    return top * ((a / top) ** p + (b / top) ** p) ** (1.0 / p)


@dataclass(frozen=True, slots=True)
class PrefillAttentionFit:
    """Prefill attention parameters for one (GPU architecture, kernel stack, KV dtype).

    Attributes:
        floor_s: launch / graph-replay floor under every call.
        mma_eff: fraction of the per-SM tensor peak one full tile visit reaches.
        fix_tiles: fixed cost per CTA (Q load, epilogue) in tile-visit units (FA3).
        fix_s: fixed cost per CTA in seconds (FA2: its split-KV kernel's per-CTA setup and
            paged Q/K/V loads are latency, the same on A100 and L40S, ``attention_tiles``).
        mem_eff: fraction of HBM bandwidth the Q/K/V/O traffic reaches.
        overlap_p: p-norm exponent joining the MMA and memory times.
        grid: optional correction over (head_dim, GQA group, query tokens per sequence,
            seqs x q heads).
    """

    floor_s: float
    mma_eff: float
    fix_tiles: float
    mem_eff: float
    overlap_p: float
    fix_s: float = 0.0
    grid: LogGrid | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (6 significant digits)."""
        out: dict[str, Any] = {
            "floor_s": float(f"{self.floor_s:.6g}"),
            "mma_eff": float(f"{self.mma_eff:.6g}"),
            "fix_tiles": float(f"{self.fix_tiles:.6g}"),
            "fix_s": float(f"{self.fix_s:.6g}"),
            "mem_eff": float(f"{self.mem_eff:.6g}"),
            "overlap_p": float(f"{self.overlap_p:.6g}"),
        }
        if self.grid is not None:
            out["grid"] = self.grid.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrefillAttentionFit:
        """Inverse of ``to_dict``."""
        return cls(
            floor_s=float(data["floor_s"]),
            mma_eff=float(data["mma_eff"]),
            fix_tiles=float(data["fix_tiles"]),
            mem_eff=float(data["mem_eff"]),
            overlap_p=float(data["overlap_p"]),
            fix_s=float(data.get("fix_s", 0.0)),
            grid=optional_grid(data.get("grid")),
        )


@dataclass(frozen=True, slots=True)
class DecodeAttentionFit:
    """Decode attention parameters for one (GPU architecture, kernel stack, KV dtype).

    Attributes:
        floor_s: launch floor (11-13 us on H100 FA3 at batch 1-7).
        hbm_eff: fraction of HBM bandwidth a large KV read reaches.
        l2_bw_per_sm: L2 read bandwidth per SM (bytes/s) when one layer's KV is L2-resident.
        l2_frac: fraction of the L2 capacity a resident KV can use.
        row_flops: cost of one query row element (seq x q head x head_dim) in flop-equivalents
            of the dense bf16 tensor peak.
        kv_row_flops: the same per (seq x KV head x head_dim): FA3 packs a GQA group into one
            CTA's rows, so part of the per-row cost is paid once per KV head.
        overlap_p: p-norm exponent joining the KV stream and the per-row cost.
        kv_bw_per_sm: SM-side cap on the KV stream (bytes/s per SM); 0: none (bf16 KV).
        window_unpacks_gqa: the kernel drops GQA packing under a sliding window (FA2).
        cta_bw: bytes/s one CTA streams where the kernel runs without split-KV, one CTA per
            (sequence, query head): FA2 for MHA or under a window (``attention_stream``);
            0: the kernel splits.
        grid: optional correction over (head_dim, GQA group, KV tokens per sequence,
            seqs x KV heads).
    """

    floor_s: float
    hbm_eff: float
    l2_bw_per_sm: float
    l2_frac: float
    row_flops: float
    kv_row_flops: float
    overlap_p: float
    kv_bw_per_sm: float = 0.0
    window_unpacks_gqa: bool = False
    cta_bw: float = 0.0
    grid: LogGrid | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (6 significant digits)."""
        out: dict[str, Any] = {
            "floor_s": float(f"{self.floor_s:.6g}"),
            "hbm_eff": float(f"{self.hbm_eff:.6g}"),
            "kv_bw_per_sm": float(f"{self.kv_bw_per_sm:.6g}"),
            "l2_bw_per_sm": float(f"{self.l2_bw_per_sm:.6g}"),
            "l2_frac": float(f"{self.l2_frac:.6g}"),
            "row_flops": float(f"{self.row_flops:.6g}"),
            "kv_row_flops": float(f"{self.kv_row_flops:.6g}"),
            "overlap_p": float(f"{self.overlap_p:.6g}"),
            "window_unpacks_gqa": self.window_unpacks_gqa,
            "cta_bw": float(f"{self.cta_bw:.6g}"),
        }
        if self.grid is not None:
            out["grid"] = self.grid.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecodeAttentionFit:
        """Inverse of ``to_dict``."""
        return cls(
            floor_s=float(data["floor_s"]),
            hbm_eff=float(data["hbm_eff"]),
            l2_bw_per_sm=float(data["l2_bw_per_sm"]),
            l2_frac=float(data["l2_frac"]),
            row_flops=float(data["row_flops"]),
            kv_row_flops=float(data["kv_row_flops"]),
            overlap_p=float(data["overlap_p"]),
            kv_bw_per_sm=float(data.get("kv_bw_per_sm", 0.0)),
            window_unpacks_gqa=bool(data.get("window_unpacks_gqa", False)),
            cta_bw=float(data.get("cta_bw", 0.0)),
            grid=optional_grid(data.get("grid")),
        )


def window_unpacks_gqa(architecture: str, fp8_kv: bool) -> bool:
    """Whether the engine's decode kernel on ``architecture`` drops GQA packing under a sliding
    window: FlashAttention 2 (Ampere, Ada) does; an fp8 KV cache there runs FlashInfer (FA2
    reads only 16-bit caches), which packs, as FA3 on Hopper does."""
    return architecture in ("ampere", "ada") and not fp8_kv


def kv_stream_bytes_per_s(fit: DecodeAttentionFit, gpu: GPUSpec, num_sms: int) -> float:
    """The rate a KV larger than L2 streams at: HBM at ``hbm_eff``, capped on the SMs."""
    rate = gpu.hbm_bandwidth_bytes_per_s * fit.hbm_eff
    if fit.kv_bw_per_sm > 0.0:
        rate = min(rate, num_sms * fit.kv_bw_per_sm)
    return rate


@dataclass(frozen=True, slots=True)
class AttentionFits:
    """Both phases for one (GPU, kernel stack), keyed by KV dtype label (``bf16``, ``fp8``)."""

    prefill: Mapping[str, PrefillAttentionFit]
    decode: Mapping[str, DecodeAttentionFit]

    def prefill_for(self, kv_bytes: float) -> PrefillAttentionFit:
        """The prefill fit of the KV dtype ``kv_bytes`` wide (the other one if not measured)."""
        return _pick(self.prefill, kv_bytes)

    def decode_for(self, kv_bytes: float) -> DecodeAttentionFit:
        """The decode fit of the KV dtype ``kv_bytes`` wide (the other one if not measured)."""
        return _pick(self.decode, kv_bytes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"prefill": {dtype: ...}, "decode": {dtype: ...}}``."""
        return {
            "prefill": {k: v.to_dict() for k, v in sorted(self.prefill.items())},
            "decode": {k: v.to_dict() for k, v in sorted(self.decode.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttentionFits:
        """Inverse of ``to_dict``."""
        return cls(
            prefill={k: PrefillAttentionFit.from_dict(v) for k, v in data["prefill"].items()},
            decode={k: DecodeAttentionFit.from_dict(v) for k, v in data["decode"].items()},
        )


def _pick(fits: Mapping[str, Any], kv_bytes: float) -> Any:
    want = "fp8" if kv_bytes <= 1.0 else "bf16"
    if want in fits:
        return fits[want]
    return next(iter(fits.values()))


def causal_tile_visits(num_q_tiles: int, window_tiles: int | None) -> int:
    """Key-tile visits of one sequence's square query tiles under a causal (optionally
    sliding) mask: query tile j sees key tiles 0..j, or at most ``window_tiles`` of them."""
    return tiles.causal_tile_visits(num_q_tiles, 1, 1, window_tiles)


def _prefill_compute_s(
    fit: PrefillAttentionFit, gpu: GPUSpec, t: tiles.PrefillTiling, head_dim: int, heads: float
) -> float:
    """MMA-side seconds of ``heads`` CTA rows (sequences x packed head groups) of tiling ``t``."""
    num_sms, _ = gpu_sms_l2(gpu)
    peak = gpu.peak_flops(DType.BF16)
    tile_s = 4.0 * t.block_m * t.block_n * head_dim * num_sms / (peak * fit.mma_eff)
    cta_fix_s = fit.fix_tiles * tile_s + fit.fix_s
    # every CTA's serial time (fixed cost, then its tile visits) is shared by the CTAs resident
    # on an SM at once; the MMA rate of the SM bounds the tile visits whatever the residency
    serial_s = heads * (t.num_q_tiles * cta_fix_s + t.visits * tile_s)
    work_s = max(serial_s / t.resident, heads * t.visits * tile_s) / num_sms
    return max(work_s, (cta_fix_s + t.chain * tile_s) * t.occupancy)


def prefill_attention_s(
    fit: PrefillAttentionFit,
    gpu: GPUSpec,
    *,
    num_seqs: int,
    num_tokens: int,
    num_pairs: float,
    cached_tokens: int,
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
    kv_bytes: float,
    window: int | None,
) -> float:
    """Seconds of one layer's prefill attention over a batch of causal chunks, on one GPU.

    Args:
        num_seqs: sequences with a prefill chunk this step.
        num_tokens: query tokens of all chunks.
        num_pairs: query-key pairs (sum of c*k + c(c+1)/2): a floor on the tiled MMA work.
        cached_tokens: cached context tokens read by the chunks (sum of k).
        num_q_heads, num_kv_heads, head_dim: this GPU's head shard.
        kv_bytes: bytes per KV cache element (2 bf16, 1 fp8).
        window: sliding window in tokens, or None for full attention.
    """
    if num_tokens <= 0 or num_seqs <= 0:
        return 0.0
    chunk = num_tokens / num_seqs
    group = num_q_heads / num_kv_heads
    t = tiles.prefill_tiling(
        gpu,
        head_dim,
        kv_bytes,
        chunk=chunk,
        cached=cached_tokens / num_seqs,
        group=group,
        num_pairs=num_pairs,
        num_seqs=num_seqs,
        window=window,
    )
    compute_s = _prefill_compute_s(fit, gpu, t, head_dim, num_seqs * num_q_heads / t.pack)
    kv_tokens = num_tokens + cached_tokens
    num_bytes = 4.0 * num_tokens * num_q_heads * head_dim
    num_bytes += kv_tokens * 2.0 * num_kv_heads * head_dim * kv_bytes
    memory_s = num_bytes / (gpu.hbm_bandwidth_bytes_per_s * fit.mem_eff)
    time_s = fit.floor_s + _pnorm(compute_s, memory_s, fit.overlap_p)
    if fit.grid is not None:
        time_s *= fit.grid.factor(head_dim, group, max(chunk, 1.0), num_seqs * num_q_heads)
    return time_s


def decode_attention_s(
    fit: DecodeAttentionFit,
    gpu: GPUSpec,
    *,
    num_seqs: int,
    context_tokens: int,
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
    kv_bytes: float,
    window: int | None,
    l2_warm: bool = True,
) -> float:
    """Seconds of one layer's decode attention (one new token per sequence), on one GPU.

    Args:
        num_seqs: decoding sequences.
        context_tokens: KV tokens read, summed over sequences (the window caps each one).
        num_q_heads, num_kv_heads, head_dim: this GPU's head shard.
        kv_bytes: bytes per KV cache element (2 bf16, 1 fp8).
        window: sliding window in tokens, or None for full attention.
        l2_warm: True reproduces the kernel tables (back-to-back replays keep a small KV in
            L2); pass False for a serving step, where other layers evict it.
    """
    if num_seqs <= 0:
        return 0.0
    context = float(context_tokens)
    kv_heads = num_kv_heads
    if window:
        context = min(context, float(num_seqs) * window)
        if fit.window_unpacks_gqa:
            num_kv_heads = num_q_heads  # each query head streams its KV head on its own
    kv_read = context * 2.0 * num_kv_heads * head_dim * kv_bytes
    unique = context * 2.0 * kv_heads * head_dim * kv_bytes
    head_bytes = context * 2.0 * head_dim * kv_bytes  # one KV head over the batch
    num_sms, l2_bytes = gpu_sms_l2(gpu)
    hbm_rate = kv_stream_bytes_per_s(fit, gpu, num_sms)
    if fit.cta_bw > 0.0 and (ctas := stream.unsplit_ctas(num_seqs, num_q_heads, kv_heads, window)):
        hbm_rate = min(hbm_rate, ctas * fit.cta_bw)
    rates = (hbm_rate, fit.l2_bw_per_sm * num_sms)
    kv_s = stream.kv_stream_s(kv_read, unique, head_bytes, rates, fit.l2_frac * l2_bytes, l2_warm)
    row_flops = num_q_heads * fit.row_flops + num_kv_heads * fit.kv_row_flops
    rows_s = num_seqs * head_dim * row_flops / gpu.peak_flops(DType.BF16)
    time_s = fit.floor_s + _pnorm(kv_s, rows_s, fit.overlap_p)
    if fit.grid is not None:
        per_seq = max(context / num_seqs, 1.0)
        group = num_q_heads / num_kv_heads
        time_s *= fit.grid.factor(head_dim, group, per_seq, num_seqs * num_kv_heads)
    return time_s
