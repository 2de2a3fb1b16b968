"""The 2025-26 families' config spellings: attention patterns, sinks, indexers, linear layers.

``hf_config.parse_hf_config`` reads what every family shares; this module adds what the newer
families spell their own way (transformers' ``GptOssConfig``, ``Llama4TextConfig``,
``Qwen3NextConfig``, ``Glm4MoeConfig``, DeepSeek-V3.2-Exp's ``index_*`` fields) and returns
plain dicts of ``ModelSpec`` keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servesim.core.errors import ConfigError
from servesim.specs.layers import parse_layer_types

GPT_OSS = ("gpt_oss",)
LLAMA4 = ("llama4", "llama4_text")
QWEN3_NEXT = ("qwen3_next",)
#: DeepSeek-style MoE keys (n_routed_experts, first_k_dense_replace) with GQA attention.
DEEPSEEK_MOE_GQA = ("glm4_moe",)
NEW_FAMILIES = (*GPT_OSS, *LLAMA4, *QWEN3_NEXT, *DEEPSEEK_MOE_GQA)


def _positive(cfg: Mapping[str, Any], key: str, where: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}.{key}", value, "must be a positive integer")
    return value


def family_fields(
    cfg: Mapping[str, Any], name: str, model_type: str, num_layers: int
) -> dict[str, Any]:
    """Extra ``ModelSpec`` fields of the newer families (empty for the others)."""
    out: dict[str, Any] = {}
    if cfg.get("layer_types") is not None:
        out["layer_types"] = parse_layer_types(cfg["layer_types"], num_layers, name)
    if model_type in GPT_OSS:
        # modeling_gpt_oss.py: a learned sink logit per head; experts and router carry biases.
        out["has_attention_sinks"] = True
    elif model_type in LLAMA4:
        out.update(_llama4_fields(cfg, name, num_layers))
    elif model_type in QWEN3_NEXT:
        out.update(_qwen3_next_fields(cfg, name, num_layers))
    if cfg.get("index_topk") is not None:
        out["sparse_attention"] = {
            "index_topk": _positive(cfg, "index_topk", name),
            "index_num_heads": _positive(cfg, "index_n_heads", name),
            "index_head_dim": _positive(cfg, "index_head_dim", name),
        }
    return out


def _llama4_fields(cfg: Mapping[str, Any], name: str, num_layers: int) -> dict[str, Any]:
    """Llama 4: chunked local attention on RoPE layers, full attention on the NoPE ones."""
    chunk = cfg.get("attention_chunk_size")
    if chunk is None:
        return {}
    chunk = _positive(cfg, "attention_chunk_size", name)
    # Llama4TextConfig: no_rope_layers[i] == 1 means layer i uses RoPE (and chunked
    # attention); the default is every fourth layer NoPE (no_rope_layer_interval = 4).
    flags = cfg.get("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(num_layers)]
    if len(flags) != num_layers:
        raise ConfigError(f"{name}.no_rope_layers", flags, f"must list {num_layers} flags")
    kinds = tuple("chunked" if flag else "full" for flag in flags)
    return {"attention_chunk_tokens": chunk, "layer_types": kinds}


def _qwen3_next_fields(cfg: Mapping[str, Any], name: str, num_layers: int) -> dict[str, Any]:
    """Qwen3-Next: gated DeltaNet on three layers of four, gated full attention on the rest."""
    out: dict[str, Any] = {
        "linear_attention": {
            "num_key_heads": _positive(cfg, "linear_num_key_heads", name),
            "num_value_heads": _positive(cfg, "linear_num_value_heads", name),
            "key_head_dim": _positive(cfg, "linear_key_head_dim", name),
            "value_head_dim": _positive(cfg, "linear_value_head_dim", name),
            "conv_kernel_size": _positive(cfg, "linear_conv_kernel_dim", name),
        },
        # Qwen3NextAttention: q_proj also produces a sigmoid output gate (2x query width).
        "has_attn_output_gate": True,
    }
    if cfg.get("layer_types") is None:
        interval = _positive(cfg, "full_attention_interval", name)
        out["layer_types"] = tuple(
            "linear" if (i + 1) % interval else "full" for i in range(num_layers)
        )
    return out


def llama4_moe_fields(cfg: Mapping[str, Any], name: str, num_layers: int) -> dict[str, Any]:
    """Llama 4 MoE: routed experts of ``intermediate_size`` plus one shared expert of the same
    width, on every ``interleave_moe_layer_step``-th layer (Llama4TextConfig.moe_layers)."""
    step = cfg.get("interleave_moe_layer_step") or 1
    expert_ffn = _positive(cfg, "intermediate_size", name)
    layers = cfg.get("moe_layers") or list(range(step - 1, num_layers, step))
    return {
        "num_experts": _positive(cfg, "num_local_experts", name),
        "num_experts_per_token": _positive(cfg, "num_experts_per_tok", name),
        "expert_ffn_size": expert_ffn,
        "num_shared_experts": 1,
        "shared_expert_ffn_size": expert_ffn,
        "moe_layer_indices": tuple(int(i) for i in layers),
    }
