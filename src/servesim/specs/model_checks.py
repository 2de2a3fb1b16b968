"""Validation and the JSON summary of a ``ModelSpec`` (kept apart so model.py stays the
arithmetic): one message naming the field for each refused spec, one plain dict per spec."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

from servesim.core.errors import ConfigError
from servesim.specs.dtypes import DType
from servesim.specs.layers import LAYER_KINDS

if TYPE_CHECKING:
    from servesim.specs.model import ModelSpec

_POSITIVE = (
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "num_kv_heads",
    "head_dim",
    "ffn_size",
    "vocab_size",
    "max_context_tokens",
)


def validate_spec(spec: ModelSpec) -> None:
    """Refuse specs no cost figure can be computed for; one message naming the field."""
    for key in _POSITIVE:
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
    for key in ("sliding_window", "attention_chunk_tokens"):
        value = getattr(spec, key)
        if value is not None and value < 1:
            raise ConfigError(f"{spec.name}.{key}", value, "must be >= 1")
    _validate_layer_types(spec)
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


def _validate_layer_types(spec: ModelSpec) -> None:
    kinds = spec.layer_types
    if not kinds:
        return
    where = f"{spec.name}.layer_types"
    if len(kinds) != spec.num_layers:
        raise ConfigError(where, len(kinds), f"must list {spec.num_layers} layers")
    unknown = sorted(set(kinds) - set(LAYER_KINDS))
    if unknown:
        raise ConfigError(where, unknown, f"must be among {', '.join(LAYER_KINDS)}")
    needs = {
        "sliding": spec.sliding_window,
        "chunked": spec.attention_chunk_tokens,
        "linear": spec.linear_attention,
        "sparse": spec.sparse_attention,
    }
    for kind, value in needs.items():
        if kind in kinds and value is None:
            raise ConfigError(where, kind, f"{kind} layers need their dimensions in the spec")


_MOE_FIELDS = (
    "num_experts",
    "num_experts_per_token",
    "expert_ffn_size",
    "num_shared_experts",
    "shared_expert_ffn_size",
)
_MLA_FIELDS = ("kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")


def _fields(part: Any, names: tuple[str, ...]) -> dict[str, Any] | None:
    """``names`` of a spec part (MoE, MLA) as a dict, in that order; None without the part."""
    return None if part is None else {name: getattr(part, name) for name in names}


def spec_summary(spec: ModelSpec) -> dict[str, Any]:
    """Plain dict of the spec and its derived figures (for JSON output)."""
    quant = spec.quantization
    out: dict[str, Any] = {
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
        "moe": _fields(spec.moe, _MOE_FIELDS),
        "mla": _fields(spec.mla, _MLA_FIELDS),
    }
    # Newer fields only where set, so the summaries of the older models stay as they were.
    if spec.layer_types:
        out["layer_kinds"] = spec.layer_kind_counts()
    if spec.attention_chunk_tokens is not None:
        out["attention_chunk_tokens"] = spec.attention_chunk_tokens
    if spec.linear_attention is not None:
        out["state_bytes_per_sequence"] = spec.state_bytes_per_sequence()
    if spec.sparse_attention is not None:
        out["index_topk"] = spec.sparse_attention.index_topk
    if quant is not None:
        out["quantization"] = {
            "quant_method": quant.quant_method,
            "format": quant.dtype.value,
            "group_size": quant.group_size,
            "unconverted": sorted(quant.unconverted_groups),
        }
        out["checkpoint_weight_bytes"] = spec.checkpoint_weight_bytes()
    return out
