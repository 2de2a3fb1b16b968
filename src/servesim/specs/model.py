"""``ModelSpec``: the architecture figures of a transformer LLM that cost and memory depend on.

The field names below are the contract other packages (perf, engine) rely on; derived figures
(parameter counts, weight bytes, KV bytes per token, FLOPs per token) are methods here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servesim.core.errors import ConfigError
from servesim.specs.dtypes import DType
from servesim.specs.hf_config import parse_hf_config


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

    def __post_init__(self) -> None:
        _validate(self)

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
        moe = fields.pop("moe")
        mla = fields.pop("mla")
        return cls(
            name=name,
            source=source,
            moe=MoESpec(**moe) if moe else None,
            mla=MLASpec(**mla) if mla else None,
            **fields,
        )

    # ---- layout -------------------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        """True when at least one layer routes tokens to experts."""
        return self.moe is not None and bool(self.moe.moe_layer_indices)

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

    # ---- parameter counts ---------------------------------------------------------------

    def attention_params_per_layer(self) -> int:
        """Weights (and biases, q/k norms) of one attention block."""
        h = self.hidden_size
        if self.mla is not None:
            return _mla_params(self, self.mla)
        q_width = self.num_attention_heads * self.head_dim
        kv_width = self.num_kv_heads * self.head_dim
        count = h * q_width + 2 * h * kv_width + q_width * h
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
        return self.attention_params_per_layer() + self.norm_params_per_layer() + ffn

    def _count(self, *, active_only: bool) -> int:
        per_layer = self.attention_params_per_layer() + self.norm_params_per_layer()
        count = self.embedding_params() + self.num_layers * per_layer
        count += self.num_dense_layers * self.dense_ffn_params()
        count += self.num_moe_layers * self.moe_ffn_params(active_only=active_only)
        return count

    # ---- bytes and FLOPs ----------------------------------------------------------------

    def weight_bytes(self, dtype: DType | str = DType.BF16) -> int:
        """Bytes of all weights stored in ``dtype`` (quantisation scales not included)."""
        return math.ceil(self.num_params() * DType.parse(dtype).num_bytes)

    def kv_bytes_per_token(self, dtype: DType | str = DType.BF16) -> int:
        """KV-cache bytes one token occupies, summed over all layers.

        GQA/MHA cache K and V per kv head: ``2 * layers * kv_heads * head_dim``. MLA
        (DeepSeek-V2/V3) caches the compressed latent plus the shared rotary key,
        ``layers * (kv_lora_rank + qk_rope_head_dim)``, with no factor 2.
        """
        if self.mla is not None:
            elements = self.num_layers * (self.mla.kv_lora_rank + self.mla.qk_rope_head_dim)
        else:
            elements = 2 * self.num_layers * self.num_kv_heads * self.head_dim
        return math.ceil(elements * DType.parse(dtype).num_bytes)

    def num_cached_tokens(self, context_tokens: int) -> int:
        """Tokens whose KV a sequence of ``context_tokens`` must keep (sliding window caps it)."""
        if self.sliding_window is None:
            return context_tokens
        return min(context_tokens, self.sliding_window)

    def kv_bytes_per_token_per_layer(self, dtype: DType | str = DType.BF16) -> float:
        """KV-cache bytes one token occupies in one layer (pipeline stages hold a share)."""
        return self.kv_bytes_per_token(dtype) / self.num_layers

    def matmul_params_per_token(self) -> int:
        """Active weights that take part in a GEMM (no embedding lookup, norms or biases)."""
        h = self.hidden_size
        if self.mla is not None:
            attn = _mla_params(self, self.mla, weights_only=True)
        else:
            attn = 2 * h * self.head_dim * (self.num_attention_heads + self.num_kv_heads)
        num_mats = 3 if self.is_gated_mlp else 2
        dense = num_mats * h * self.ffn_size
        moe = 0
        if self.moe is not None:
            moe = h * self.moe.num_experts + 3 * h * (
                self.moe.num_experts_per_token * self.moe.expert_ffn_size
                + self.moe.num_shared_experts * self.moe.shared_expert_ffn_size
            )
        layers = self.num_layers * attn + self.num_dense_layers * dense + self.num_moe_layers * moe
        return layers + self.vocab_size * h  # the LM head is a GEMM even when tied

    def attention_flops_per_token(self, context_tokens: int) -> int:
        """FLOPs of q.k scores and the weighted sum of v for one token over its context.

        The context is capped by the sliding window. MLA is counted in its plain
        (non-absorbed) form: heads * (nope + rope) for scores, heads * v_head_dim for values.
        """
        if context_tokens < 0:
            raise ConfigError("context_tokens", context_tokens, "must be >= 0")
        attended = context_tokens
        if self.sliding_window is not None:
            attended = min(attended, self.sliding_window)
        if self.mla is not None:
            qk_dim = self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim
            v_dim = self.mla.v_head_dim
        else:
            qk_dim = v_dim = self.head_dim
        per_layer = 2 * self.num_attention_heads * (qk_dim + v_dim) * attended
        return self.num_layers * per_layer

    def flops_per_token(self, context_tokens: int) -> int:
        """Forward FLOPs of one token attending to ``context_tokens`` tokens.

        ``2 * matmul_params_per_token()`` (one multiply-add per active weight) plus the
        attention score/value FLOPs; norms, activations and softmax are ignored (< 1%).
        """
        return 2 * self.matmul_params_per_token() + self.attention_flops_per_token(context_tokens)

    def summary(self) -> dict[str, Any]:
        """Plain dict of the spec and its derived figures (for JSON output)."""
        return _summary(self)


def _mla_params(spec: ModelSpec, mla: MLASpec, *, weights_only: bool = False) -> int:
    """One MLA block (modeling_deepseek.py): q_a/q_b or q_proj, kv_a, kv_b, o_proj, norms."""
    h = spec.hidden_size
    heads = spec.num_attention_heads
    qk_dim = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    if mla.q_lora_rank is None:
        q = h * heads * qk_dim
    else:
        q = h * mla.q_lora_rank + mla.q_lora_rank * heads * qk_dim
    kv_a = h * (mla.kv_lora_rank + mla.qk_rope_head_dim)
    kv_b = mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
    out = heads * mla.v_head_dim * h
    count = q + kv_a + kv_b + out
    if not weights_only:  # q_a_layernorm and kv_a_layernorm
        count += (mla.q_lora_rank or 0) + mla.kv_lora_rank
    return count


def _validate(spec: ModelSpec) -> None:
    """Refuse specs no cost figure can be computed for; one message naming the field."""
    for key in (
        "num_layers",
        "hidden_size",
        "num_attention_heads",
        "num_kv_heads",
        "head_dim",
        "ffn_size",
        "vocab_size",
        "max_context_tokens",
    ):
        value = getattr(spec, key)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(f"{spec.name}.{key}", value, "must be a positive integer")
    if spec.num_attention_heads % spec.num_kv_heads:
        raise ConfigError(
            f"{spec.name}.num_kv_heads",
            spec.num_kv_heads,
            f"must divide num_attention_heads {spec.num_attention_heads}",
        )
    if spec.norm not in ("rmsnorm", "layernorm"):
        raise ConfigError(f"{spec.name}.norm", spec.norm, "must be rmsnorm or layernorm")
    if spec.sliding_window is not None and spec.sliding_window < 1:
        raise ConfigError(f"{spec.name}.sliding_window", spec.sliding_window, "must be >= 1")
    if spec.moe is not None:
        moe = spec.moe
        if not 1 <= moe.num_experts_per_token <= moe.num_experts:
            raise ConfigError(
                f"{spec.name}.moe.num_experts_per_token",
                moe.num_experts_per_token,
                f"must be in [1, num_experts={moe.num_experts}]",
            )
        bad = [i for i in moe.moe_layer_indices if not 0 <= i < spec.num_layers]
        if bad:
            raise ConfigError(
                f"{spec.name}.moe.moe_layer_indices", bad, f"must be in [0, {spec.num_layers})"
            )


def _summary(spec: ModelSpec) -> dict[str, Any]:
    moe = spec.moe
    mla = spec.mla
    return {
        "name": spec.name,
        "family": spec.family,
        "source": spec.source,
        "num_params": spec.num_params(),
        "num_active_params": spec.num_active_params(),
        "num_layers": spec.num_layers,
        "num_moe_layers": spec.num_moe_layers,
        "hidden_size": spec.hidden_size,
        "num_attention_heads": spec.num_attention_heads,
        "num_kv_heads": spec.num_kv_heads,
        "head_dim": spec.head_dim,
        "ffn_size": spec.ffn_size,
        "vocab_size": spec.vocab_size,
        "max_context_tokens": spec.max_context_tokens,
        "sliding_window": spec.sliding_window,
        "tied_embeddings": spec.tied_embeddings,
        "weight_bytes_bf16": spec.weight_bytes(DType.BF16),
        "kv_bytes_per_token_bf16": spec.kv_bytes_per_token(DType.BF16),
        "moe": None
        if moe is None
        else {
            "num_experts": moe.num_experts,
            "num_experts_per_token": moe.num_experts_per_token,
            "expert_ffn_size": moe.expert_ffn_size,
            "num_shared_experts": moe.num_shared_experts,
            "shared_expert_ffn_size": moe.shared_expert_ffn_size,
        },
        "mla": None
        if mla is None
        else {
            "kv_lora_rank": mla.kv_lora_rank,
            "q_lora_rank": mla.q_lora_rank,
            "qk_rope_head_dim": mla.qk_rope_head_dim,
            "qk_nope_head_dim": mla.qk_nope_head_dim,
            "v_head_dim": mla.v_head_dim,
        },
    }
