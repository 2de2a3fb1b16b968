"""Attention kernel cost per layer per GPU, closed-form on the ``BatchShape`` aggregates.

Prefill (FlashAttention, causal): a chunk of c tokens over k cached tokens does c*k + c(c+1)/2
query-key pairs; each pair costs 2*d FLOPs for QK^T and 2*d_v for PV per query head. Decode
(paged attention) reads every sequence's K and V once: memory-bound. MLA decode uses the
absorbed-weights form (DeepSeek-V2 sec. 2.1.3): attention runs on the cached latent
(kv_lora_rank + rope dims) shared by all heads; prefill uses the expanded per-head form.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.perf.calibration import AttentionCurve
from servesim.perf.kernels import decode_attention_eff, prefill_attention_eff
from servesim.perf.shapes import LayerShapes
from servesim.perf.types import BatchShape

# Decode attention does little arithmetic per byte; its compute ceiling rarely binds, but a
# GQA group of 8 heads reading one KV head lifts intensity, so keep a finite compute term.
DECODE_COMPUTE_EFF = 0.5
# FlashAttention streams K/V tiles close to bandwidth when memory-bound.
PREFILL_MEM_EFF = 0.8


@dataclass(frozen=True, slots=True)
class AttnCost:
    """FLOPs, bytes and time of one attention kernel call in one layer on one GPU."""

    flops: float
    num_bytes: float
    time_s: float
    bound: str


ZERO = AttnCost(0.0, 0.0, 0.0, "compute")


def _finish(
    flops: float,
    num_bytes: float,
    peak: float,
    eff_c: float,
    bw: float,
    eff_m: float,
    launch_s: float,
) -> AttnCost:
    t_c = flops / (peak * eff_c)
    t_m = num_bytes / (bw * eff_m)
    if t_c >= t_m:
        return AttnCost(flops, num_bytes, launch_s + t_c, "compute")
    return AttnCost(flops, num_bytes, launch_s + t_m, "memory")


def prefill_attention(
    s: LayerShapes,
    batch: BatchShape,
    curve: AttentionCurve,
    window: int | None,
    kv_bytes: float,
    peak: float,
    bw: float,
) -> AttnCost:
    """One layer's prefill attention over all chunks of the batch."""
    tokens = batch.num_prefill_tokens
    if tokens == 0:
        return ZERO
    pairs = batch.prefill_chunk_x_context + (batch.prefill_chunk_sq + tokens) / 2.0
    if window is not None:
        pairs = min(pairs, float(tokens) * window)  # each query sees at most `window` keys
    heads = s.num_q_heads
    if s.is_mla:
        # expanded form: QK over nope+rope dims, PV over v dims, per head
        flops = 2.0 * pairs * heads * (s.head_dim + s.v_head_dim)
        kv_width = heads * (s.head_dim + s.v_head_dim)
    else:
        flops = 4.0 * pairs * heads * s.head_dim
        kv_width = 2 * s.num_kv_heads * s.head_dim
    # cached context tokens read once per chunk: sum(k_i) ~= sum(c_i k_i) / mean chunk
    mean_chunk = tokens / max(1, batch.num_prefill_seqs)
    cached = batch.prefill_chunk_x_context / mean_chunk
    num_bytes = tokens * (2 * heads * s.head_dim + kv_width) * 2.0 + cached * kv_width * kv_bytes
    # effective length: keys per query x 2 (== chunk length for a prefill from scratch)
    eff = prefill_attention_eff(curve, 2.0 * pairs / tokens)
    return _finish(flops, num_bytes, peak, eff, bw, PREFILL_MEM_EFF, curve.launch_s)


def decode_attention(
    s: LayerShapes,
    batch: BatchShape,
    curve: AttentionCurve,
    window: int | None,
    kv_bytes: float,
    peak: float,
    bw: float,
) -> AttnCost:
    """One layer's decode attention: every decode sequence reads its whole (windowed) KV."""
    seqs = batch.num_decode_seqs
    # no keys: a hybrid step whose host CPU attends every decode (engine.hybrid)
    if seqs == 0 or batch.decode_context_tokens == 0:
        return ZERO
    context = float(batch.decode_context_tokens)
    if window is not None and batch.max_decode_context_tokens > window:
        context = min(context, float(seqs) * window)
    heads = s.num_q_heads
    if s.is_mla:
        latent = s.kv_lora_rank + s.qk_rope_dim
        flops = 2.0 * context * heads * (latent + s.kv_lora_rank)
        kv_read = context * latent * kv_bytes
        q_bytes = seqs * heads * (latent + s.kv_lora_rank) * 2.0
    else:
        flops = 4.0 * context * heads * s.head_dim
        kv_read = context * 2 * s.num_kv_heads * s.head_dim * kv_bytes
        q_bytes = seqs * heads * s.head_dim * 2 * 2.0
    eff = decode_attention_eff(curve, context / seqs)
    return _finish(flops, kv_read + q_bytes, peak, DECODE_COMPUTE_EFF, bw, eff, curve.launch_s)
