"""``ModelSpec``: the architecture figures of a transformer LLM that cost and memory depend on.

The field names below are the contract other packages (perf, engine) rely on; derived figures
(parameter counts, weight bytes, KV bytes per token, FLOPs per token) are methods here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
