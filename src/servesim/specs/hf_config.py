"""Translate a Hugging Face ``config.json`` (as a dict) into ``ModelSpec`` field values.

This module knows the spelling of each architecture family's config (``transformers``'s
``LlamaConfig``, ``MixtralConfig``, ``Qwen2MoeConfig``, ``DeepseekV3Config``, ``PhiConfig``,
...). It returns plain dicts so that ``model.py`` builds the dataclasses and no import cycle
arises. Every number is checked (positive integer) and every problem names the field.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from servesim.core.errors import ConfigError
from servesim.specs.hf_families import (
    DEEPSEEK_MOE_GQA,
    GPT_OSS,
    LLAMA4,
    NEW_FAMILIES,
    QWEN3_NEXT,
    family_fields,
    llama4_moe_fields,
)
from servesim.specs.quant import parse_quantization_config

logger = logging.getLogger(__name__)

#: Families whose configs follow the Llama spelling (hidden_size, num_hidden_layers, ...).
LLAMA_LIKE = ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe")
#: MLA attention with DeepSeek-style MoE (Kimi-K2 ships DeepseekV3ForCausalLM weights).
DEEPSEEK = ("deepseek_v2", "deepseek_v3", "deepseek_v32", "kimi_k2")
KNOWN_FAMILIES = (*LLAMA_LIKE, *DEEPSEEK, *NEW_FAMILIES, "phi")
QK_NORM_FAMILIES = ("qwen3", "qwen3_moe", *QWEN3_NEXT)

#: Fields without which no cost figure can be computed.
REQUIRED_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
)
MLA_FIELDS = ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")


def _int(cfg: Mapping[str, Any], key: str, where: str, *, minimum: int = 1) -> int:
    """``cfg[key]`` as an int >= ``minimum``; bools and floats with fractions are refused."""
    value = cfg.get(key)
    is_integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not is_integral or value < minimum:  # type: ignore[operator]
        constraint = (
            "must be a positive integer" if minimum == 1 else f"must be an integer >= {minimum}"
        )
        raise ConfigError(f"{where}.{key}", value, constraint)
    return int(value)  # type: ignore[arg-type]


def _opt_int(cfg: Mapping[str, Any], key: str, where: str, *, minimum: int = 1) -> int | None:
    """Like ``_int`` but a missing or null value gives None."""
    if cfg.get(key) is None:
        return None
    return _int(cfg, key, where, minimum=minimum)


def _check_required(cfg: Mapping[str, Any], model_type: str, extra: tuple[str, ...] = ()) -> None:
    missing = [k for k in (*REQUIRED_FIELDS, *extra) if cfg.get(k) is None]
    if missing:
        label = model_type or "<no model_type>"
        if model_type in KNOWN_FAMILIES:
            problem = f"config.json of model_type {label!r} lacks {', '.join(missing)}"
        else:
            problem = (
                f"model_type {label!r} is not a known family ({', '.join(KNOWN_FAMILIES)}) "
                f"and lacks the Llama-style fields {', '.join(missing)}"
            )
        raise ConfigError("config.json", model_type or None, problem)


def with_hf_quant_config(
    cfg: Mapping[str, Any], hf_quant: Mapping[str, Any] | None
) -> Mapping[str, Any]:
    """``cfg`` with a ModelOpt ``hf_quant_config.json`` as its ``quantization_config`` where
    the config.json has none (ModelOpt exports before 0.2x wrote only that file; vLLM's
    ``ModelOptQuantConfigBase.get_config_filenames`` reads it). A config.json that carries a
    ``quantization_config`` keeps it (newer exports write both, the same scheme)."""
    if hf_quant is None or cfg.get("quantization_config") is not None:
        return cfg
    return {**cfg, "quantization_config": {"quant_method": "modelopt", **hf_quant}}


def parse_hf_config(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Return ``ModelSpec`` keyword arguments; ``moe``/``mla`` values are dicts or None.

    Args:
        cfg: the parsed ``config.json``.
        name: the model name, used in error messages.

    Raises:
        ConfigError: a required field is missing, or a number is not a positive integer.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(name, type(cfg).__name__, "config.json must hold a JSON object")
    quant = parse_quantization_config(cfg.get("quantization_config"), name)
    text = cfg.get("text_config")
    if isinstance(text, Mapping) and cfg.get("hidden_size") is None:
        # Multimodal wrappers (Llava, Qwen2-VL, ...) nest the language model's config.
        cfg = {**text, "model_type": text.get("model_type", cfg.get("model_type"))}
    model_type = str(cfg.get("model_type") or "")
    extra = MLA_FIELDS if model_type in DEEPSEEK and cfg.get("kv_lora_rank") is not None else ()
    _check_required(cfg, model_type, extra)
    if model_type not in KNOWN_FAMILIES:
        logger.info("model_type %r is unknown; reading it as a Llama-style config", model_type)
    fields = _common_fields(cfg, name, model_type)
    fields["quantization"] = quant
    fields["moe"] = _moe_fields(cfg, name, model_type, fields["num_layers"])
    fields.update(family_fields(cfg, name, model_type, fields["num_layers"]))
    if model_type in LLAMA4 and cfg.get("intermediate_size_mlp") is not None:
        # Llama 4: intermediate_size is the expert width; dense layers use intermediate_size_mlp
        fields["ffn_size"] = _int(cfg, "intermediate_size_mlp", name)
    fields["mla"] = _mla_fields(cfg, name) if model_type in DEEPSEEK else None
    if fields["mla"] is not None:
        mla = fields["mla"]
        fields["head_dim"] = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    if model_type == "phi":
        fields.update(_phi_fields(cfg))
    return fields


def _common_fields(cfg: Mapping[str, Any], name: str, model_type: str) -> dict[str, Any]:
    hidden = _int(cfg, "hidden_size", name)
    num_heads = _int(cfg, "num_attention_heads", name)
    num_kv_heads = _opt_int(cfg, "num_key_value_heads", name) or num_heads
    head_dim = _opt_int(cfg, "head_dim", name)
    if head_dim is None:
        if hidden % num_heads:
            raise ConfigError(
                f"{name}.head_dim",
                None,
                f"absent and hidden_size {hidden} is not a multiple "
                f"of num_attention_heads {num_heads}",
            )
        head_dim = hidden // num_heads
    if num_heads % num_kv_heads:
        raise ConfigError(
            f"{name}.num_key_value_heads",
            num_kv_heads,
            f"must divide num_attention_heads {num_heads}",
        )
    return {
        "family": model_type or "unknown",
        "num_layers": _int(cfg, "num_hidden_layers", name),
        "hidden_size": hidden,
        "num_attention_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "head_dim": head_dim,
        "ffn_size": _int(cfg, "intermediate_size", name),
        "vocab_size": _int(cfg, "vocab_size", name),
        "max_context_tokens": _int(cfg, "max_position_embeddings", name),
        # transformers' Llama/Qwen/Mistral/Phi/DeepSeek configs all default this to False.
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "has_qkv_bias": _has_qkv_bias(cfg, model_type),
        "has_mlp_bias": bool(cfg.get("mlp_bias", False)),
        # Qwen3 normalises q and k per head (q_norm/k_norm) before rotary; GLM-4.5 when
        # use_qk_norm (Llama 4's use_qk_norm is a weightless L2 norm: no parameters).
        "has_qk_norm": model_type in QK_NORM_FAMILIES
        or (model_type in DEEPSEEK_MOE_GQA and bool(cfg.get("use_qk_norm", False))),
        "sliding_window": _sliding_window(cfg, name, model_type),
    }


def _has_qkv_bias(cfg: Mapping[str, Any], model_type: str) -> bool:
    # Qwen2 hard-codes bias=True on q/k/v (modeling_qwen2.py); Llama-style configs say
    # attention_bias; Qwen3 says attention_bias=false.
    if model_type in ("qwen2", "qwen2_moe"):
        return True
    return bool(cfg.get("attention_bias", False))


def _sliding_window(cfg: Mapping[str, Any], name: str, model_type: str) -> int | None:
    # Qwen configs carry sliding_window even when it is off; use_sliding_window decides.
    if model_type.startswith("qwen") and not cfg.get("use_sliding_window", False):
        return None
    window = _opt_int(cfg, "sliding_window", name)
    if window is not None and model_type.startswith("qwen"):
        num_layers = cfg.get("num_hidden_layers")
        if (
            cfg.get("max_window_layers", 0) not in (0, None)
            and cfg.get("max_window_layers") != num_layers
        ):
            logger.warning("%s: sliding window on only some layers; modelled as on all", name)
    return window


def _moe_fields(
    cfg: Mapping[str, Any], name: str, model_type: str, num_layers: int
) -> dict[str, Any] | None:
    """MoE layout or None, from whichever spelling the family uses."""
    layers = range(num_layers)
    if model_type in LLAMA4:
        return llama4_moe_fields(cfg, name, num_layers) if cfg.get("num_local_experts") else None
    if model_type in DEEPSEEK or model_type in DEEPSEEK_MOE_GQA:
        if cfg.get("n_routed_experts") is None:
            return None
        first_dense = _opt_int(cfg, "first_k_dense_replace", name, minimum=0) or 0
        freq = _opt_int(cfg, "moe_layer_freq", name) or 1
        num_shared = _opt_int(cfg, "n_shared_experts", name, minimum=0) or 0
        expert_ffn = _int(cfg, "moe_intermediate_size", name)
        return {
            "num_experts": _int(cfg, "n_routed_experts", name),
            "num_experts_per_token": _int(cfg, "num_experts_per_tok", name),
            "expert_ffn_size": expert_ffn,
            "num_shared_experts": num_shared,
            "shared_expert_ffn_size": expert_ffn if num_shared else 0,
            # modeling_deepseek.py: MoE where i >= first_k_dense_replace and i % freq == 0
            "moe_layer_indices": tuple(i for i in layers if i >= first_dense and i % freq == 0),
        }
    num_experts_key = "num_local_experts" if cfg.get("num_local_experts") else "num_experts"
    if not cfg.get(num_experts_key):
        return None
    step = _opt_int(cfg, "decoder_sparse_step", name) or 1
    dense_only = set(cfg.get("mlp_only_layers") or [])
    shared_ffn = _opt_int(cfg, "shared_expert_intermediate_size", name, minimum=0) or 0
    expert_key = (
        "moe_intermediate_size" if cfg.get("moe_intermediate_size") else "intermediate_size"
    )
    return {
        "num_experts": _int(cfg, num_experts_key, name),
        "num_experts_per_token": _int(cfg, "num_experts_per_tok", name),
        "expert_ffn_size": _int(cfg, expert_key, name),
        "num_shared_experts": 1 if shared_ffn else 0,
        "shared_expert_ffn_size": shared_ffn,
        # modeling_qwen2_moe.py: sparse where i not in mlp_only_layers and (i+1) % step == 0
        "moe_layer_indices": tuple(
            i for i in layers if i not in dense_only and (i + 1) % step == 0
        ),
        "has_shared_expert_gate": bool(shared_ffn) and model_type in ("qwen2_moe", *QWEN3_NEXT),
        # gpt-oss: gate_up/down projections and the router carry biases
        "has_expert_bias": model_type in GPT_OSS,
    }


def _mla_fields(cfg: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    if cfg.get("kv_lora_rank") is None:
        return None
    return {
        "kv_lora_rank": _int(cfg, "kv_lora_rank", name),
        "qk_rope_head_dim": _int(cfg, "qk_rope_head_dim", name),
        "qk_nope_head_dim": _int(cfg, "qk_nope_head_dim", name),
        "v_head_dim": _int(cfg, "v_head_dim", name),
        "q_lora_rank": _opt_int(cfg, "q_lora_rank", name),
    }


def _phi_fields(cfg: Mapping[str, Any]) -> dict[str, Any]:
    # modeling_phi.py (phi-2): one LayerNorm feeding attention and MLP in parallel, fc1/fc2
    # GELU MLP with biases, q/k/v/dense with biases, lm_head with bias, partial rotary.
    return {
        "is_gated_mlp": False,
        "norm": "layernorm",
        "has_qkv_bias": True,
        "has_mlp_bias": True,
        "has_lm_head_bias": True,
        "parallel_attn_mlp": True,
        "has_qk_norm": bool(cfg.get("qk_layernorm", False)),
        "rotary_fraction": float(cfg.get("partial_rotary_factor", 1.0)),
    }
