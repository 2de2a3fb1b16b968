"""Per-GPU layer shapes and parameter counts derived from the raw ``ModelSpec`` fields.

Everything here is computed from the architecture fields alone (no ``ModelSpec`` methods), for
one GPU of a tensor-parallel group: query heads and FFN columns are split by TP, KV heads are
split too until TP exceeds them, after which vLLM replicates one KV head per GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from servesim.specs.layers import STATE_BYTES
from servesim.specs.model import ModelSpec


@dataclass(frozen=True, slots=True)
class LayerShapes:
    """Widths of one transformer layer on one GPU of a TP group (attention TP-sharded)."""

    hidden: int
    head_dim: int
    num_q_heads: int  # query heads on this GPU
    num_kv_heads: int  # KV heads stored on this GPU (>= 1; replicated when tp > kv heads)
    qkv_out: int  # output width of the fused QKV GEMM on this GPU
    attn_out_in: int  # input width of the output projection on this GPU
    ffn: int  # dense FFN intermediate columns on this GPU
    up_out: int  # up (+gate) GEMM output width on this GPU
    is_mla: bool
    # MLA only (DeepSeek-V2/V3): latent widths, not split by TP.
    kv_lora_rank: int = 0
    qk_rope_dim: int = 0
    qk_nope_dim: int = 0
    v_head_dim: int = 0
    q_lora_rank: int = 0


def attention_shapes(num_q_heads: int, num_kv_heads: int, head_dim: int) -> LayerShapes:
    """The attention widths alone (one GPU's heads), for pricing an attention kernel by itself
    (op queries, table rows); the GEMM widths are derived as for a standard layer."""
    return LayerShapes(
        hidden=num_q_heads * head_dim,
        head_dim=head_dim,
        num_q_heads=num_q_heads,
        num_kv_heads=num_kv_heads,
        qkv_out=(num_q_heads + 2 * num_kv_heads) * head_dim,
        attn_out_in=num_q_heads * head_dim,
        ffn=0,
        up_out=0,
        is_mla=False,
    )


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads one GPU stores: split by TP, at least one (vLLM replicates beyond kv heads)."""
    return max(1, model.num_kv_heads // tp)


def layer_shapes(model: ModelSpec, tp: int) -> LayerShapes:
    """Per-GPU widths of one layer of ``model`` under tensor parallelism ``tp``."""
    q_heads = model.num_attention_heads // tp
    ffn = model.ffn_size // tp
    up_out = ffn * (2 if model.is_gated_mlp else 1)
    mla = model.mla
    if mla is not None:
        qk_dim = mla.qk_nope_head_dim + mla.qk_rope_head_dim
        return LayerShapes(
            hidden=model.hidden_size,
            head_dim=qk_dim,
            num_q_heads=q_heads,
            num_kv_heads=1,  # one shared latent "head" per token
            qkv_out=q_heads * qk_dim,
            attn_out_in=q_heads * mla.v_head_dim,
            ffn=ffn,
            up_out=up_out,
            is_mla=True,
            kv_lora_rank=mla.kv_lora_rank,
            qk_rope_dim=mla.qk_rope_head_dim,
            qk_nope_dim=mla.qk_nope_head_dim,
            v_head_dim=mla.v_head_dim,
            q_lora_rank=mla.q_lora_rank or 0,
        )
    kv_heads = kv_heads_per_gpu(model, tp)
    gate_heads = q_heads if model.has_attn_output_gate else 0  # Qwen3-Next's sigmoid gate
    return LayerShapes(
        hidden=model.hidden_size,
        head_dim=model.head_dim,
        num_q_heads=q_heads,
        num_kv_heads=kv_heads,
        qkv_out=(q_heads + gate_heads + 2 * kv_heads) * model.head_dim,
        attn_out_in=q_heads * model.head_dim,
        ffn=ffn,
        up_out=up_out,
        is_mla=False,
    )


def kv_elements_per_token_layer(model: ModelSpec, tp: int) -> int:
    """KV-cache elements one token occupies in one layer on one GPU."""
    if model.mla is not None:
        # MLA caches the compressed latent plus the shared rope key; vLLM replicates it per GPU.
        return model.mla.kv_lora_rank + model.mla.qk_rope_head_dim
    return 2 * kv_heads_per_gpu(model, tp) * model.head_dim


def kv_bytes_per_token_layer(model: ModelSpec, tp: int, kind: str, kv_bytes: float) -> float:
    """KV-cache bytes one token occupies in one layer of ``kind`` on one GPU.

    Linear layers cache no keys; sparse layers add the indexer's fp8 key (with its fp32
    scale), which every GPU holds whole (vLLM replicates the indexer).
    """
    if kind == "linear":
        return 0.0
    nbytes = kv_elements_per_token_layer(model, tp) * kv_bytes
    if kind == "sparse" and model.sparse_attention is not None:
        nbytes += model.sparse_attention.key_bytes_per_token()
    return nbytes


def linear_state_bytes_per_layer(model: ModelSpec, tp: int) -> float:
    """Recurrent state one sequence keeps in one linear-attention layer on one GPU (heads and
    conv channels split by TP)."""
    lin = model.linear_attention
    if lin is None:
        return 0.0
    recurrent = (lin.num_value_heads // tp) * lin.key_head_dim * lin.value_head_dim
    return (recurrent + lin.conv_dim // tp * (lin.conv_kernel_size - 1)) * STATE_BYTES


def is_moe_layer(model: ModelSpec, index: int) -> bool:
    """True when layer ``index`` has a mixture-of-experts FFN."""
    if model.moe is None:
        return False
    indices = model.moe.moe_layer_indices
    return not indices or index in indices


def stage_layer_ranges(num_layers: int, pp: int) -> list[range]:
    """Layers of each pipeline stage, split as vLLM's ``get_pp_indices`` does.

    An uneven split gives one extra layer to each of the stages just before the last (the
    last stage also holds the final norm and the LM head, the first the embedding).
    """
    sizes = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        sizes[-i] += 1
    ranges = []
    start = 0
    for size in sizes:
        ranges.append(range(start, start + size))
        start += size
    return ranges


@dataclass(frozen=True, slots=True)
class StageParams:
    """Parameter counts of one pipeline stage, for ONE GPU of its TP group."""

    linear_params: int  # quantisable GEMM weights (attention, MLP, experts)
    other_params: int  # embeddings, LM head, norms, router, biases (kept in 16-bit)
    # linear_params by module group (quant.MODULE_GROUPS): formats may differ per group
    linear_by_group: Mapping[str, int] = field(default_factory=dict)


def attention_params(model: ModelSpec, tp: int, kind: str = "full") -> int:
    """Linear (GEMM) attention weights of one layer of ``kind`` on one GPU."""
    h = model.hidden_size
    lin = model.linear_attention
    if kind == "linear" and lin is not None:
        return lin.gemm_params(h) // tp
    sparse = model.sparse_attention
    if kind == "sparse" and sparse is not None and model.mla is not None:
        # the indexer's wq_b, wk and weights_proj are replicated on every GPU (vLLM)
        indexer = sparse.params(h, model.mla.q_lora_rank or h) - 2 * sparse.index_head_dim
        return attention_params(model, tp, "full") + indexer
    mla = model.mla
    if mla is not None:
        heads = model.num_attention_heads // tp
        qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
        q = (
            (h * mla.q_lora_rank + mla.q_lora_rank * heads * qk)
            if mla.q_lora_rank
            else h * heads * qk
        )
        kv_a = h * (mla.kv_lora_rank + mla.qk_rope_head_dim)  # replicated
        kv_b = mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
        return q + kv_a + kv_b + heads * mla.v_head_dim * h
    s = layer_shapes(model, tp)
    return h * s.qkv_out + s.attn_out_in * h


def ffn_params(model: ModelSpec, tp: int, ep: int, moe_layer: bool) -> int:
    """Linear FFN weights of one layer on one GPU (routed experts split by EP, then TP/EP)."""
    return sum(ffn_group_params(model, tp, ep, moe_layer).values())


def ffn_group_params(model: ModelSpec, tp: int, ep: int, moe_layer: bool) -> dict[str, int]:
    """``ffn_params`` by module group: dense_mlp, or experts and shared_experts."""
    h = model.hidden_size
    mats = 3 if model.is_gated_mlp else 2
    if not moe_layer or model.moe is None:
        return {"dense_mlp": mats * h * (model.ffn_size // tp)}
    moe = model.moe
    experts_here = moe.num_experts // ep
    expert_tp = tp // ep
    routed = experts_here * mats * h * (moe.expert_ffn_size // expert_tp)
    shared = moe.num_shared_experts * mats * h * (moe.shared_expert_ffn_size // tp)
    return {"experts": routed, "shared_experts": shared}


def stage_params(
    model: ModelSpec, tp: int, ep: int, layers: range, pp: int, stage: int
) -> StageParams:
    """Per-GPU parameters of pipeline stage ``stage`` holding ``layers``."""
    h = model.hidden_size
    norm_w = 2 if model.norm == "layernorm" else 1
    other = 0
    groups = {"attention": 0, "dense_mlp": 0, "experts": 0, "shared_experts": 0}
    for index in layers:
        moe_layer = is_moe_layer(model, index)
        groups["attention"] += attention_params(model, tp, model.layer_kind(index))
        for group, count in ffn_group_params(model, tp, ep, moe_layer).items():
            groups[group] += count
        other += 2 * norm_w * h
        if moe_layer and model.moe is not None:
            moe = model.moe
            other += h * moe.num_experts  # router, replicated, kept in 16-bit
            if moe.has_expert_bias:  # gpt-oss: router bias, gate_up and down bias per expert
                local_ffn = moe.expert_ffn_size // (tp // ep)
                other += moe.num_experts + moe.num_experts // ep * (2 * local_ffn + h)
        if model.has_attention_sinks:
            other += model.num_attention_heads // tp
        if model.has_qkv_bias:
            other += layer_shapes(model, tp).qkv_out
    vocab_shard = -(-model.vocab_size // tp)  # vocab-parallel embedding, padded
    if stage == 0:
        other += vocab_shard * h
    if stage == pp - 1:
        other += norm_w * h
        if not model.tied_embeddings or pp > 1:
            other += vocab_shard * h
    return StageParams(
        linear_params=sum(groups.values()), other_params=other, linear_by_group=groups
    )
