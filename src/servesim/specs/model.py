"""``ModelSpec``: the architecture figures of a transformer LLM that cost and memory depend on.

The field names below are the contract other packages (perf, engine) rely on; derived figures
(parameter counts, weight bytes, KV bytes per token, FLOPs per token) are methods here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servesim.core.errors import ConfigError
from servesim.specs.dtypes import DType
from servesim.specs.hf_config import parse_hf_config
from servesim.specs.layers import (
    GROWING_KINDS,
    LAYER_KINDS,
    STATE_BYTES,
    LinearAttentionSpec,
    SparseAttentionSpec,
    attended_tokens,
)
from servesim.specs.model_attention import (
    attention_flops_per_token,
    checkpoint_weight_bytes,
    linear_attention_flops_per_token,
    matmul_params_per_token,
    mla_params,
)
from servesim.specs.model_checks import spec_summary, validate_spec
from servesim.specs.quant import QuantSpec


@dataclass(frozen=True, slots=True)
class MoESpec:
    """Mixture-of-experts layout of the FFN blocks."""

    num_experts: int  # routed experts per MoE layer
    num_experts_per_token: int  # top-k
    expert_ffn_size: int  # intermediate size of one routed expert
    num_shared_experts: int = 0  # always-active experts (DeepSeek, Qwen2-MoE)
    shared_expert_ffn_size: int = 0  # intermediate size of ONE shared expert
    moe_layer_indices: tuple[int, ...] = ()  # which layers are MoE; others use the dense FFN
    has_shared_expert_gate: bool = False  # Qwen2-MoE gates its shared expert with a sigmoid
    has_expert_bias: bool = False  # gpt-oss: biases on gate_up/down of each expert and router


@dataclass(frozen=True, slots=True)
class MLASpec:
    """Multi-head latent attention dimensions (DeepSeek-V2/V3)."""

    kv_lora_rank: int  # compressed KV latent width (cached per token, with the rope part)
    qk_rope_head_dim: int  # decoupled rotary key width (cached per token, shared by heads)
    qk_nope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None = None  # None: queries are projected directly from hidden


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Architecture of a decoder-only transformer.

    Attributes:
        name: catalog key or the HF ``_name_or_path``.
        family: architecture family (``llama``, ``mixtral``, ``qwen2``, ``deepseek_v3``, ...).
        num_layers: transformer blocks.
        hidden_size: model width.
        num_attention_heads: query heads.
        num_kv_heads: key/value heads (GQA/MQA when fewer than query heads).
        head_dim: width of one attention head.
        ffn_size: intermediate size of the dense MLP (used by non-MoE layers).
        vocab_size: vocabulary entries.
        max_context_tokens: the model's context window.
        tied_embeddings: LM head shares the input embedding matrix.
        is_gated_mlp: SwiGLU-style gate+up (three matrices) vs a plain two-matrix MLP.
        norm: ``rmsnorm`` or ``layernorm`` (layernorm carries a bias too).
        has_qkv_bias: bias on the QKV projection (Qwen2, Phi).
        has_mlp_bias: bias on MLP and output projection (Phi).
        parallel_attn_mlp: attention and MLP read the same normed input (Phi-2).
        sliding_window: attention window in tokens, when the model uses one on all layers.
        moe: MoE layout, when the model is a mixture of experts.
        mla: latent-attention dims, when the model uses MLA.
        source: where the figures came from (HF repo or file path).
        has_qk_norm: per-head RMSNorm on q and k (Qwen3).
        has_lm_head_bias: bias on the LM head (Phi-2).
        rotary_fraction: share of each head's width that is rotated (Phi-2: 0.4); no cost.
        layer_types: attention kind of each layer (``layers.LAYER_KINDS``) when the model
            mixes kinds; empty: every layer is ``sliding`` when ``sliding_window`` is set,
            ``sparse`` with ``sparse_attention``, else ``full``.
        attention_chunk_tokens: chunk of chunked local attention (Llama 4: 8192).
        linear_attention: gated DeltaNet dimensions of the ``linear`` layers (Qwen3-Next).
        sparse_attention: the indexer of ``sparse`` layers (DeepSeek-V3.2).
        has_attention_sinks: a learned sink logit per head (gpt-oss); one parameter per head.
        has_attn_output_gate: q_proj also produces a sigmoid output gate (Qwen3-Next).
        quantization: the checkpoint's ``quantization_config`` (formats per module group).
    """

    name: str
    family: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    max_context_tokens: int
    tied_embeddings: bool = False
    is_gated_mlp: bool = True
    norm: str = "rmsnorm"
    has_qkv_bias: bool = False
    has_mlp_bias: bool = False
    parallel_attn_mlp: bool = False
    sliding_window: int | None = None
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    source: str = field(default="", compare=False)
    has_qk_norm: bool = False
    has_lm_head_bias: bool = False
    rotary_fraction: float = 1.0
    layer_types: tuple[str, ...] = ()
    attention_chunk_tokens: int | None = None
    linear_attention: LinearAttentionSpec | None = None
    sparse_attention: SparseAttentionSpec | None = None
    has_attention_sinks: bool = False
    has_attn_output_gate: bool = False
    quantization: QuantSpec | None = None

    def __post_init__(self) -> None:
        validate_spec(self)

    @classmethod
    def from_hf_config(cls, cfg: Mapping[str, Any], name: str, source: str = "") -> ModelSpec:
        """Build a spec from a Hugging Face ``config.json`` dict.

        Args:
            cfg: the parsed config (``model_type`` picks the family's spelling; an unknown
                ``model_type`` is read as Llama-style when the needed fields are present).
            name: catalog name or the user's label for the model.
            source: where the config came from (HF repo id or file path).

        Raises:
            ConfigError: a needed field is missing or is not a positive integer.
        """
        fields = parse_hf_config(cfg, name)
        nested = {
            "moe": MoESpec,
            "mla": MLASpec,
            "linear_attention": LinearAttentionSpec,
            "sparse_attention": SparseAttentionSpec,
            "quantization": QuantSpec,
        }
        for key, kind in nested.items():
            value = fields.pop(key, None)
            fields[key] = kind(**value) if value else None
        return cls(name=name, source=source, **fields)

    # ---- layout -------------------------------------------------------------------------

    def is_moe_layer(self, layer: int) -> bool:
        """True when layer ``layer`` (0-based) has a mixture-of-experts FFN."""
        if not 0 <= layer < self.num_layers:
            raise ConfigError("layer", layer, f"must be in [0, {self.num_layers})")
        return self.moe is not None and layer in self.moe.moe_layer_indices

    @property
    def num_moe_layers(self) -> int:
        """Layers with a mixture-of-experts FFN."""
        return len(self.moe.moe_layer_indices) if self.moe else 0

    @property
    def num_dense_layers(self) -> int:
        """Layers with the plain dense FFN."""
        return self.num_layers - self.num_moe_layers

    def layer_kind(self, layer: int) -> str:
        """Attention kind of layer ``layer`` (0-based): ``full``, ``sliding``, ``linear``..."""
        if self.layer_types:
            return self.layer_types[layer]
        if self.sparse_attention is not None:
            return "sparse"
        return "sliding" if self.sliding_window is not None else "full"

    def layer_kind_counts(self) -> dict[str, int]:
        """Layers of each attention kind, in ``LAYER_KINDS`` order (kinds present only)."""
        kinds = [self.layer_kind(i) for i in range(self.num_layers)]
        return {k: kinds.count(k) for k in LAYER_KINDS if k in kinds}

    def attention_window(self, kind: str) -> int | None:
        """Keys a query of ``kind`` attends to at most (None: the whole context)."""
        if kind == "sliding":
            return self.sliding_window
        if kind == "chunked":
            return self.attention_chunk_tokens
        if kind == "sparse" and self.sparse_attention is not None:
            return self.sparse_attention.index_topk
        return None

    # ---- parameter counts ---------------------------------------------------------------

    def attention_params_per_layer(self, kind: str = "full") -> int:
        """Weights (and biases, q/k norms, sinks, indexer) of one attention block of ``kind``."""
        h = self.hidden_size
        if kind == "linear" and self.linear_attention is not None:
            return self.linear_attention.params(h)
        sparse = self.sparse_attention
        indexer = sparse.params(h, self.mla.q_lora_rank or h) if sparse and self.mla else 0
        if self.mla is not None:
            return mla_params(self, self.mla) + (indexer if kind == "sparse" else 0)
        q_width = self.num_attention_heads * self.head_dim
        kv_width = self.num_kv_heads * self.head_dim
        gate = q_width if self.has_attn_output_gate else 0
        count = h * (q_width + gate) + 2 * h * kv_width + q_width * h
        count += self.num_attention_heads if self.has_attention_sinks else 0
        if self.has_qkv_bias:
            count += q_width + 2 * kv_width
        if self.has_mlp_bias:  # Phi-2's attention output ("dense") carries a bias too
            count += h
        if self.has_qk_norm:
            count += 2 * self.head_dim
        return count

    def dense_ffn_params(self) -> int:
        """Weights of the dense MLP of one non-MoE layer."""
        num_mats = 3 if self.is_gated_mlp else 2
        count = num_mats * self.hidden_size * self.ffn_size
        if self.has_mlp_bias:
            count += (num_mats - 1) * self.ffn_size + self.hidden_size
        return count

    def moe_ffn_params(self, *, active_only: bool = False) -> int:
        """Weights of one MoE layer's FFN: router, experts (top-k when ``active_only``), shared."""
        if self.moe is None:
            return 0
        moe = self.moe
        h = self.hidden_size
        num_routed = moe.num_experts_per_token if active_only else moe.num_experts
        count = h * moe.num_experts  # router: every token is scored against every expert
        count += num_routed * 3 * h * moe.expert_ffn_size
        count += moe.num_shared_experts * 3 * h * moe.shared_expert_ffn_size
        if moe.has_shared_expert_gate:
            count += h
        if moe.has_expert_bias:  # gate_up (2 x ffn) and down (h) per expert, router per expert
            count += num_routed * (2 * moe.expert_ffn_size + h) + moe.num_experts
        return count

    def norm_params_per_layer(self) -> int:
        """Norm weights of one block (two norms, one when attention and MLP run in parallel)."""
        per_norm = self.hidden_size * (2 if self.norm == "layernorm" else 1)
        return per_norm * (1 if self.parallel_attn_mlp else 2)

    def embedding_params(self) -> int:
        """Input embedding, LM head (unless tied) and the final norm."""
        h = self.hidden_size
        count = self.vocab_size * h
        if not self.tied_embeddings:
            count += self.vocab_size * h
        if self.has_lm_head_bias:
            count += self.vocab_size
        return count + h * (2 if self.norm == "layernorm" else 1)

    def num_params(self) -> int:
        """Total parameters (all experts, embeddings included)."""
        return self._count(active_only=False)

    def num_active_params(self) -> int:
        """Parameters one token touches: dense parts, top-k routed and shared experts."""
        return self._count(active_only=True)

    def layer_params(self, layer: int) -> int:
        """All weights of block ``layer`` (0-based; all experts), e.g. to split pipeline stages."""
        ffn = self.moe_ffn_params() if self.is_moe_layer(layer) else self.dense_ffn_params()
        attn = self.attention_params_per_layer(self.layer_kind(layer))
        return attn + self.norm_params_per_layer() + ffn

    def attention_params(self) -> int:
        """Attention weights of all layers (each layer by its kind)."""
        counts = self.layer_kind_counts()
        return sum(n * self.attention_params_per_layer(k) for k, n in counts.items())

    def checkpoint_weight_bytes(self, dtype: DType | str = DType.BF16) -> int:
        """Bytes of all weights as the checkpoint stores them: each module group in its
        ``quantization`` format (scales included), the rest in ``dtype``; embeddings, LM head,
        norms, biases and routers in 16-bit."""
        return checkpoint_weight_bytes(self, DType.parse(dtype))

    def _count(self, *, active_only: bool) -> int:
        per_layer = self.norm_params_per_layer()
        count = self.embedding_params() + self.num_layers * per_layer + self.attention_params()
        count += self.num_dense_layers * self.dense_ffn_params()
        count += self.num_moe_layers * self.moe_ffn_params(active_only=active_only)
        return count

    # ---- bytes and FLOPs ----------------------------------------------------------------

    def weight_bytes(self, dtype: DType | str = DType.BF16) -> int:
        """Bytes of all weights stored in ``dtype`` (quantisation scales not included)."""
        return math.ceil(self.num_params() * DType.parse(dtype).num_bytes)

    def kv_bytes_per_token(self, dtype: DType | str = DType.BF16) -> int:
        """KV-cache bytes one token occupies, summed over the layers that cache keys.

        GQA/MHA cache K and V per kv head: ``2 * layers * kv_heads * head_dim``. MLA
        (DeepSeek-V2/V3) caches the compressed latent plus the shared rotary key,
        ``layers * (kv_lora_rank + qk_rope_head_dim)``, with no factor 2. Sparse layers add
        the indexer's fp8 key; linear layers cache no keys (see ``state_bytes_per_sequence``).
        Sliding and chunked layers count in full here: ``kv_bytes_for_context`` caps them.
        """
        counts = self.layer_kind_counts()
        return math.ceil(
            sum(n * self._kv_layer_bytes(k, DType.parse(dtype)) for k, n in counts.items())
        )

    def _kv_layer_bytes(self, kind: str, dtype: DType) -> float:
        """KV bytes one token occupies in one layer of ``kind``."""
        if kind == "linear":
            return 0.0
        if self.mla is not None:
            elements = self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        else:
            elements = 2 * self.num_kv_heads * self.head_dim
        extra = 0
        if kind == "sparse" and self.sparse_attention is not None:
            extra = self.sparse_attention.key_bytes_per_token()
        return elements * dtype.num_bytes + extra

    def kv_bytes_for_context(self, context_tokens: int, dtype: DType | str = DType.BF16) -> int:
        """Cache bytes one sequence of ``context_tokens`` holds: each layer its attended
        tokens' KV (a window or chunk caps them), plus the linear layers' fixed state."""
        if context_tokens < 0:
            raise ConfigError("context_tokens", context_tokens, "must be >= 0")
        key = DType.parse(dtype)
        total = 0.0
        for kind, n in self.layer_kind_counts().items():
            kept = attended_tokens(kind, context_tokens, self._cache_window(kind))
            total += n * kept * self._kv_layer_bytes(kind, key)
        return math.ceil(total) + self.state_bytes_per_sequence()

    def _cache_window(self, kind: str) -> int | None:
        # sparse layers select from the whole cache: they keep every token
        return None if kind in GROWING_KINDS else self.attention_window(kind)

    def state_bytes_per_sequence(self) -> int:
        """Recurrent state one sequence keeps in the linear-attention layers (16-bit)."""
        lin = self.linear_attention
        num_linear = self.layer_kind_counts().get("linear", 0)
        if lin is None or not num_linear:
            return 0
        return math.ceil(num_linear * lin.state_elements() * STATE_BYTES)

    def num_cached_tokens(self, context_tokens: int) -> int:
        """Tokens whose KV a sequence of ``context_tokens`` must keep (its longest-reaching
        layer decides: a window caps it only when no layer attends to the whole context)."""
        windows = [self._cache_window(k) for k in self.layer_kind_counts() if k != "linear"]
        if not windows or None in windows:
            return context_tokens
        return min(context_tokens, max(w for w in windows if w is not None))

    def kv_bytes_per_token_per_layer(self, dtype: DType | str = DType.BF16) -> float:
        """KV-cache bytes one token occupies in one layer (pipeline stages hold a share)."""
        return self.kv_bytes_per_token(dtype) / self.num_layers

    def matmul_params_per_token(self) -> int:
        """Active weights that take part in a GEMM (no embedding lookup, norms or biases;
        the LM head counts even when tied)."""
        return matmul_params_per_token(self)

    def attention_flops_per_token(self, context_tokens: int) -> int:
        """FLOPs of q.k scores and the weighted sum of v for one token over its context.

        Each layer attends to its kind's tokens (window, chunk or top-k cap the context);
        sparse layers add the indexer scoring every token; linear layers update their state.
        MLA is counted in its plain (non-absorbed) form (``model_attention``).
        """
        return attention_flops_per_token(self, context_tokens)

    def linear_attention_flops_per_token(self) -> int:
        """State-update FLOPs of one token in one linear-attention layer."""
        return linear_attention_flops_per_token(self)

    def flops_per_token(self, context_tokens: int) -> int:
        """Forward FLOPs of one token attending to ``context_tokens`` tokens.

        ``2 * matmul_params_per_token()`` (one multiply-add per active weight) plus the
        attention score/value FLOPs; norms, activations and softmax are ignored (< 1%).
        """
        return 2 * self.matmul_params_per_token() + self.attention_flops_per_token(context_tokens)

    def summary(self) -> dict[str, Any]:
        """Plain dict of the spec and its derived figures (for JSON output)."""
        return spec_summary(self)
