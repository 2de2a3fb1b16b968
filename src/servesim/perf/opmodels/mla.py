"""Fitted MLA (DeepSeek-V2/V3 multi-head latent attention) kernel time, prefill and decode.

Mechanism (DeepSeek-V2 sec. 2.1.3; SGLang 0.5.14's ``flashattention`` MLA backend, FA3):
- **decode** runs the absorbed form: every query head attends over the cached latent, one
  ``kv_lora_rank + rope`` (512 + 64) vector per token shared by all heads. Per token and head
  QK^T costs 2 x 576 FLOPs and PV 2 x 512; the bytes are the latent once per token (not per
  head) plus each head's query and output. At 128 heads (TP 1) this is compute-bound (the
  SGLang H200 table: 256 seqs x 8k context, 128 heads, bf16, 0.99 ms = 590 TFLOP/s against
  2.4 TB/s of latent), at 16 heads (TP 8) memory-bound: the head count moves the roofline.
- **prefill** (context, no cached prefix in the tables) runs ordinary causal attention over
  the decompressed heads: QK^T over qk_nope + rope = 192 dims, PV over v = 128 dims.
Time = (floor + roofline) x a measured log-grid correction (``opmodels.grid``): the floor is
the smallest measured call (kernel launch and the split-KV combine), the roofline is
max(FLOPs / bf16 peak, bytes / HBM bandwidth) from the data sheet, and the grid over (sequences,
tokens per sequence, heads) stores what the roofline cannot know (tile and split-KV occupancy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servesim.perf.opmodels.grid import LogGrid
from servesim.perf.shapes import LayerShapes
from servesim.perf.types import BatchShape
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec

# DeepSeek-V3 / Kimi-K2 MLA widths (config.json: kv_lora_rank 512, qk_rope_head_dim 64,
# qk_nope_head_dim 128, v_head_dim 128): the aiconfigurator MLA tables are measured at these.
KV_LORA_RANK = 512
ROPE_DIM = 64
QK_NOPE_DIM = 128
V_HEAD_DIM = 128
ACT_BYTES = 2.0  # queries and outputs are bf16


def decode_bytes(
    num_seqs: float, context_tokens: float, heads: int, kv_bytes: float, kv_lora: int, rope: int
) -> float:
    """Bytes one MLA decode call moves: the latent KV once per cached token (shared by every
    head), plus each sequence's absorbed queries (latent + rope wide) and latent outputs."""
    latent = kv_lora + rope
    return context_tokens * latent * kv_bytes + num_seqs * heads * (latent + kv_lora) * ACT_BYTES


def decode_flops(context_tokens: float, heads: int, kv_lora: int, rope: int) -> float:
    """FLOPs of one absorbed MLA decode call: QK^T over the latent + rope, PV over the latent."""
    return 2.0 * context_tokens * heads * (kv_lora + rope + kv_lora)


def prefill_flops(pairs: float, heads: int, qk_dim: int, v_dim: int) -> float:
    """FLOPs of causal prefill over decompressed heads: 2 x qk_dim (QK^T) + 2 x v_dim (PV)."""
    return 2.0 * pairs * heads * (qk_dim + v_dim)


def prefill_bytes(num_tokens: float, heads: int, qk_dim: int, v_dim: int) -> float:
    """Bytes of causal prefill: per token and head q and k (qk_dim), v and the output (v_dim)."""
    return num_tokens * heads * (2 * qk_dim + 2 * v_dim) * ACT_BYTES


def _roofline(gpu: GPUSpec, flops: float, num_bytes: float) -> float:
    return max(flops / gpu.peak_flops(DType.BF16), num_bytes / gpu.hbm_bandwidth_bytes_per_s)


@dataclass(frozen=True, slots=True)
class MLAPhaseFit:
    """One (phase, KV dtype)'s fit: the floor (s) and the log-grid correction."""

    floor_s: float
    grid: LogGrid

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"floor_s": round(self.floor_s, 9), "grid": self.grid.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MLAPhaseFit:
        """Inverse of ``to_dict``."""
        return cls(float(data["floor_s"]), LogGrid.from_dict(data["grid"]))


@dataclass(frozen=True, slots=True)
class MLAFits:
    """Every fitted (phase, KV dtype) of one stack and GPU, keyed ``"decode_bf16"`` etc."""

    phases: dict[str, MLAPhaseFit]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MLAFits:
        """From the calibration's ``mla`` section."""
        return cls({k: MLAPhaseFit.from_dict(v) for k, v in data.items()})

    def get(self, phase: str, kv_bytes: float) -> MLAPhaseFit | None:
        """The fit of ``phase`` for a KV cache of ``kv_bytes`` per element (None: not measured)."""
        return self.phases.get(f"{phase}_{'fp8' if kv_bytes < 2.0 else 'bf16'}")


def mla_decode_s(
    fit: MLAPhaseFit,
    gpu: GPUSpec,
    *,
    num_seqs: int,
    context_tokens: float,
    heads: int,
    kv_bytes: float,
    kv_lora: int = KV_LORA_RANK,
    rope: int = ROPE_DIM,
) -> float:
    """Seconds of one layer's MLA decode call: ``num_seqs`` sequences reading
    ``context_tokens`` cached tokens in all, ``heads`` query heads on this GPU."""
    if num_seqs <= 0 or context_tokens <= 0:
        return 0.0
    flops = decode_flops(context_tokens, heads, kv_lora, rope)
    num_bytes = decode_bytes(num_seqs, context_tokens, heads, kv_bytes, kv_lora, rope)
    base = fit.floor_s + _roofline(gpu, flops, num_bytes)
    return base * fit.grid.factor(num_seqs, context_tokens / num_seqs, heads)


def mla_prefill_s(
    fit: MLAPhaseFit,
    gpu: GPUSpec,
    *,
    num_seqs: int,
    num_tokens: float,
    pairs: float,
    heads: int,
    qk_dim: int = QK_NOPE_DIM + ROPE_DIM,
    v_dim: int = V_HEAD_DIM,
) -> float:
    """Seconds of one layer's MLA prefill call: ``num_tokens`` new tokens of ``num_seqs``
    sequences doing ``pairs`` causal query-key pairs, ``heads`` heads on this GPU."""
    if num_seqs <= 0 or num_tokens <= 0:
        return 0.0
    flops = prefill_flops(pairs, heads, qk_dim, v_dim)
    base = fit.floor_s + _roofline(gpu, flops, prefill_bytes(num_tokens, heads, qk_dim, v_dim))
    return base * fit.grid.factor(num_seqs, num_tokens / num_seqs, heads)


def mla_attention_times(
    fits: MLAFits, gpu: GPUSpec, shapes: LayerShapes, batch: BatchShape, kv_bytes: float
) -> tuple[float | None, float | None]:
    """One layer's (prefill, decode) MLA seconds for ``batch`` from ``fits`` (None: that phase
    has no work or its KV format was not measured, so the caller keeps its analytic time)."""
    pre = dec = None
    fit = fits.get("prefill", kv_bytes)
    if fit is not None and batch.num_prefill_tokens:
        pre = mla_prefill_s(
            fit,
            gpu,
            num_seqs=batch.num_prefill_seqs,
            num_tokens=batch.num_prefill_tokens,
            # a chunk of c tokens over k cached ones: c*k + c(c+1)/2 causal pairs
            pairs=batch.prefill_chunk_x_context
            + (batch.prefill_chunk_sq + batch.num_prefill_tokens) / 2.0,
            heads=shapes.num_q_heads,
            qk_dim=shapes.qk_nope_dim + shapes.qk_rope_dim,
            v_dim=shapes.v_head_dim,
        )
    fit = fits.get("decode", kv_bytes)
    if fit is not None and batch.num_decode_seqs and batch.decode_context_tokens:
        dec = mla_decode_s(
            fit,
            gpu,
            num_seqs=batch.num_decode_seqs,
            context_tokens=batch.decode_context_tokens,
            heads=shapes.num_q_heads,
            kv_bytes=kv_bytes,
            kv_lora=shapes.kv_lora_rank,
            rope=shapes.qk_rope_dim,
        )
    return pre, dec
