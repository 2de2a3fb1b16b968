"""Figures of a ``ModelSpec`` that depend on its layer kinds and formats: attention FLOPs per
layer kind, the linear layers' state update, the GEMM weights a token meets, MLA block sizes
and the checkpoint's bytes.

Kept apart from ``model.py`` (the dataclass and its parameter counts) so each file stays
readable; every function takes the spec and reads only its fields and public methods.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from servesim.core.errors import ConfigError
from servesim.specs.dtypes import DType
from servesim.specs.layers import attended_tokens
from servesim.specs.quant import module_formats

if TYPE_CHECKING:
    from servesim.specs.model import MLASpec, ModelSpec


def attention_flops_per_token(spec: ModelSpec, context_tokens: int) -> int:
    """q.k and p.v FLOPs of one token over its context, each layer by its kind.

    MLA is counted in its plain (non-absorbed) form: heads * (nope + rope) for scores,
    heads * v_head_dim for values. Sparse layers add the indexer's q.k over every token.
    """
    if context_tokens < 0:
        raise ConfigError("context_tokens", context_tokens, "must be >= 0")
    if spec.mla is not None:
        qk_dim = spec.mla.qk_nope_head_dim + spec.mla.qk_rope_head_dim
        v_dim = spec.mla.v_head_dim
    else:
        qk_dim = v_dim = spec.head_dim
    total = 0
    for kind, n in spec.layer_kind_counts().items():
        if kind == "linear":
            total += n * linear_attention_flops_per_token(spec)
            continue
        attended = attended_tokens(kind, context_tokens, spec.attention_window(kind))
        per_layer = 2 * spec.num_attention_heads * (qk_dim + v_dim) * attended
        sparse = spec.sparse_attention
        if kind == "sparse" and sparse is not None:
            per_layer += 2 * sparse.index_num_heads * sparse.index_head_dim * context_tokens
        total += n * per_layer
    return total


def linear_attention_flops_per_token(spec: ModelSpec) -> int:
    """Gated delta rule, recurrent form, per token and layer: decay, the k-projection of the
    state, the rank-1 update and the query read-out, each one multiply-add over every state
    element (Yang et al., arXiv:2412.06464, eq. 10): ``8 * dk * dv`` per value head."""
    lin = spec.linear_attention
    if lin is None:
        return 0
    return 8 * lin.num_value_heads * lin.key_head_dim * lin.value_head_dim


def checkpoint_weight_bytes(spec: ModelSpec, dtype: DType) -> int:
    """Weights as the checkpoint stores them: GEMM weights of each module group in its
    format (scales included), the rest (embeddings, LM head, norms, biases, routers) 16-bit."""
    fmts = module_formats(spec.quantization, dtype)
    experts = shared = 0
    if spec.moe is not None:
        moe, h = spec.moe, spec.hidden_size
        experts = spec.num_moe_layers * moe.num_experts * 3 * h * moe.expert_ffn_size
        shared = spec.num_moe_layers * moe.num_shared_experts * 3 * h * moe.shared_expert_ffn_size
    groups = {
        "attention": spec.attention_params(),
        "dense_mlp": spec.num_dense_layers * spec.dense_ffn_params(),
        "experts": experts,
        "shared_experts": shared,
    }
    packed = sum(groups[g] * fmts[g].bytes_per_weight for g in groups)
    return math.ceil(packed + (spec.num_params() - sum(groups.values())) * 2)


def mla_params(spec: ModelSpec, mla: MLASpec, *, weights_only: bool = False) -> int:
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


def _attention_gemm_params(spec: ModelSpec, kind: str) -> int:
    """Weights of one ``kind`` layer's attention projections (q, k, v, o; MLA's blocks)."""
    h = spec.hidden_size
    if kind == "linear" and spec.linear_attention is not None:
        return spec.linear_attention.gemm_params(h)
    if spec.mla is not None:
        count = mla_params(spec, spec.mla, weights_only=True)
        sparse = spec.sparse_attention
        if kind == "sparse" and sparse is not None:
            count += sparse.params(h, spec.mla.q_lora_rank or h) - 2 * sparse.index_head_dim
        return count
    gate = spec.num_attention_heads * spec.head_dim if spec.has_attn_output_gate else 0
    return 2 * h * spec.head_dim * (spec.num_attention_heads + spec.num_kv_heads) + h * gate


def matmul_params_per_token(spec: ModelSpec) -> int:
    """Active weights that take part in a GEMM (no embedding lookup, norms or biases)."""
    h = spec.hidden_size
    counts = spec.layer_kind_counts()
    attn = sum(n * _attention_gemm_params(spec, k) for k, n in counts.items())
    num_mats = 3 if spec.is_gated_mlp else 2
    dense = num_mats * h * spec.ffn_size
    moe = 0
    if spec.moe is not None:
        moe = h * spec.moe.num_experts + 3 * h * (
            spec.moe.num_experts_per_token * spec.moe.expert_ffn_size
            + spec.moe.num_shared_experts * spec.moe.shared_expert_ffn_size
        )
    layers = attn + spec.num_dense_layers * dense + spec.num_moe_layers * moe
    return layers + spec.vocab_size * h  # the LM head is a GEMM even when tied
