"""The 2025-26 families from their HF configs (written here from the published architectures):
parameter counts against the published totals, KV bytes per token and per context, the
checkpoint's MXFP4/fp8 bytes, and HF ids resolving to the catalog entries."""

from __future__ import annotations

from typing import Any

import pytest

from servesim.specs.catalog import list_models, resolve_model
from servesim.specs.model import ModelSpec


def _gpt_oss(layers: int, experts: int) -> dict[str, Any]:
    # openai/gpt-oss-{20b,120b} config.json (rope and router-loss settings left out)
    return {
        "model_type": "gpt_oss",
        "hidden_size": 2880,
        "intermediate_size": 2880,
        "num_hidden_layers": layers,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "num_local_experts": experts,
        "num_experts_per_tok": 4,
        "vocab_size": 201088,
        "max_position_embeddings": 131072,
        "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * (layers // 2),
        "attention_bias": True,
        "tie_word_embeddings": False,
        "quantization_config": {
            "quant_method": "mxfp4",
            "modules_to_not_convert": [
                "model.layers.*.self_attn",
                "model.layers.*.mlp.router",
                "model.embed_tokens",
                "lm_head",
            ],
        },
    }


def _llama4(experts: int, step: int, context: int) -> dict[str, Any]:
    # meta-llama/Llama-4-{Scout-17B-16E,Maverick-17B-128E}: a multimodal wrapper
    text = {
        "model_type": "llama4_text",
        "hidden_size": 5120,
        "intermediate_size": 8192,
        "intermediate_size_mlp": 16384,
        "num_hidden_layers": 48,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "num_local_experts": experts,
        "num_experts_per_tok": 1,
        "interleave_moe_layer_step": step,
        "vocab_size": 202048,
        "max_position_embeddings": context,
        "attention_chunk_size": 8192,
        "no_rope_layers": [int((i + 1) % 4 != 0) for i in range(48)],
        "tie_word_embeddings": False,
    }
    return {"model_type": "llama4", "text_config": text}


QWEN3_NEXT = {  # Qwen/Qwen3-Next-80B-A3B-Instruct
    "model_type": "qwen3_next",
    "hidden_size": 2048,
    "intermediate_size": 5120,
    "moe_intermediate_size": 512,
    "shared_expert_intermediate_size": 512,
    "num_hidden_layers": 48,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "head_dim": 256,
    "num_experts": 512,
    "num_experts_per_tok": 10,
    "full_attention_interval": 4,
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 128,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 32,
    "linear_value_head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 262144,
    "tie_word_embeddings": False,
}

_DEEPSEEK_V3_BODY = {
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_hidden_layers": 61,
    "kv_lora_rank": 512,
    "q_lora_rank": 1536,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "moe_layer_freq": 1,
    "tie_word_embeddings": False,
    "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
}
DEEPSEEK_V32 = {  # deepseek-ai/DeepSeek-V3.2-Exp
    **_DEEPSEEK_V3_BODY,
    "model_type": "deepseek_v32",
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "vocab_size": 129280,
    "max_position_embeddings": 163840,
    "n_routed_experts": 256,
    "first_k_dense_replace": 3,
    "index_topk": 2048,
    "index_n_heads": 64,
    "index_head_dim": 128,
}
KIMI_K2 = {  # moonshotai/Kimi-K2-Instruct
    **_DEEPSEEK_V3_BODY,
    "model_type": "kimi_k2",
    "num_attention_heads": 64,
    "num_key_value_heads": 64,
    "vocab_size": 163840,
    "max_position_embeddings": 131072,
    "n_routed_experts": 384,
    "first_k_dense_replace": 1,
}
GLM_45 = {  # zai-org/GLM-4.5
    "model_type": "glm4_moe",
    "hidden_size": 5120,
    "intermediate_size": 12288,
    "moe_intermediate_size": 1536,
    "num_hidden_layers": 92,
    "num_attention_heads": 96,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "n_routed_experts": 160,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "attention_bias": True,
    "use_qk_norm": True,
    "vocab_size": 151552,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
}

CONFIGS = {
    "gpt-oss-20b": _gpt_oss(24, 32),
    "gpt-oss-120b": _gpt_oss(36, 128),
    "llama-4-scout": _llama4(16, 1, 10485760),  # the 10M-token context
    "llama-4-maverick": _llama4(128, 2, 1048576),
    "qwen3-next-80b-a3b": QWEN3_NEXT,
    "deepseek-v3.2": DEEPSEEK_V32,
    "kimi-k2": KIMI_K2,
    "glm-4.5": GLM_45,
}

# (published total, published active, how the published active counts the embeddings,
#  relative tolerance). "unembed": the LM head counts, the embedding lookup does not (the
# gpt-oss model card's convention); "none": neither; "all": both. Published totals that include
# parts servesim does not model are corrected in the comment.
PUBLISHED = {
    "gpt-oss-20b": (20.91e9, 3.61e9, "unembed", 0.002),  # model card table
    "gpt-oss-120b": (116.83e9, 5.13e9, "unembed", 0.002),
    # 109B / 400B include the vision encoder (~1.2B, not modelled): text-only within 1.5%
    "llama-4-scout": (109e9, 17e9, "all", 0.015),
    "llama-4-maverick": (400e9, 17e9, "all", 0.015),
    # "80B-A3B": 3B is the non-embedding active count, rounded to the name (3.25B)
    "qwen3-next-80b-a3b": (80e9, 3e9, "none", 0.09),
    # 685B includes the 14B multi-token-prediction layer, not counted here
    "deepseek-v3.2": (685e9 - 14e9, 37e9, "all", 0.04),
    # 355B includes the MTP layer (~3.9B); "32B" active is rounded (32.9B here)
    "glm-4.5": (355e9, 32e9, "unembed", 0.03),
    "kimi-k2": (1.04e12, 32e9, "all", 0.03),
}


def _spec(name: str) -> ModelSpec:
    return ModelSpec.from_hf_config(CONFIGS[name], name=name)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_catalog_entry_matches_the_published_config(name: str) -> None:
    assert resolve_model(name) == _spec(name)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_the_published_totals(name: str) -> None:
    total, active, convention, tol = PUBLISHED[name]
    spec = _spec(name)
    embed = spec.vocab_size * spec.hidden_size
    counted = spec.num_active_params() - {"all": 0, "unembed": embed, "none": 2 * embed}[convention]
    assert spec.num_params() == pytest.approx(total, rel=tol)
    assert counted == pytest.approx(active, rel=tol)


def test_gpt_oss_20b_parameters_by_hand() -> None:
    h, layers, experts, ffn, vocab = 2880, 24, 32, 2880, 201088
    attn = h * 64 * 64 + 2 * h * 8 * 64 + 64 * 64 * h  # q, k, v, o
    attn += 64 * 64 + 2 * 8 * 64 + 64  # q/k/v biases and one sink per head
    expert = 3 * h * ffn + 2 * ffn + h  # gate_up + down, with their biases
    router = h * experts + experts
    per_layer = attn + experts * expert + router + 2 * h  # two RMSNorms
    assert _spec("gpt-oss-20b").num_params() == layers * per_layer + 2 * vocab * h + h


def test_gpt_oss_mxfp4_expert_bytes() -> None:
    """One expert's MXFP4 tensors as the checkpoint stores them: gate_up_proj_blocks
    [5760, 90, 16] + scales [5760, 90], down_proj_blocks [2880, 90, 16] + scales [2880, 90]
    (uint8: two e2m1 values per byte, one e8m0 scale per 32 weights)."""
    gate_up = 5760 * 90 * 16 + 5760 * 90
    down = 2880 * 90 * 16 + 2880 * 90
    assert gate_up + down == 13_219_200
    spec = _spec("gpt-oss-20b")
    q = spec.quantization
    assert q is not None
    assert 3 * 2880 * 2880 * q.bytes_per_weight == gate_up + down
    # the whole checkpoint: MXFP4 experts, everything else bf16 (~13.8 GB published)
    experts = 24 * 32 * (gate_up + down)
    rest = spec.num_params() - 24 * 32 * 3 * 2880 * 2880
    assert spec.checkpoint_weight_bytes() == experts + 2 * rest
    assert spec.checkpoint_weight_bytes() == pytest.approx(13.76e9, rel=0.01)
    assert spec.weight_bytes("bf16") == pytest.approx(41.8e9, rel=0.01)  # the old reading


def test_gpt_oss_sliding_window_kv() -> None:
    spec = _spec("gpt-oss-20b")
    per_layer = 2 * 8 * 64 * 2  # K and V, 8 KV heads of 64, bf16
    assert spec.layer_kind_counts() == {"full": 12, "sliding": 12}
    assert spec.kv_bytes_per_token() == 24 * per_layer
    # a sliding layer keeps min(context, 128) tokens; a full layer all of them
    assert spec.kv_bytes_for_context(100) == 24 * 100 * per_layer
    assert spec.kv_bytes_for_context(8192) == 12 * 8192 * per_layer + 12 * 128 * per_layer
    assert spec.num_cached_tokens(8192) == 8192  # the full layers reach the whole context


def test_attention_flops_follow_the_layer_kinds() -> None:
    spec = _spec("gpt-oss-20b")
    per_key = 2 * 64 * (64 + 64)  # scores and values over 64 heads of 64
    assert spec.attention_flops_per_token(4096) == 12 * per_key * 4096 + 12 * per_key * 128
    scout = _spec("llama-4-scout")  # 36 chunked layers capped at the 8192-token chunk
    per_key = 2 * 40 * (128 + 128)
    assert scout.attention_flops_per_token(100_000) == per_key * (12 * 100_000 + 36 * 8192)


def test_llama4_layout() -> None:
    scout, maverick = _spec("llama-4-scout"), _spec("llama-4-maverick")
    assert scout.layer_kind_counts() == {"full": 12, "chunked": 36}
    assert [scout.layer_kind(i) for i in range(4)] == ["chunked"] * 3 + ["full"]
    assert scout.num_moe_layers == 48 and scout.ffn_size == 16384
    assert maverick.moe is not None and maverick.moe.moe_layer_indices[:3] == (1, 3, 5)
    assert maverick.num_dense_layers == 24  # MoE interleaved with dense (step 2)
    per_layer = 2 * 8 * 128 * 2
    assert scout.kv_bytes_for_context(100_000) == per_layer * (12 * 100_000 + 36 * 8192)


def test_qwen3_next_linear_state_is_constant() -> None:
    spec = _spec("qwen3-next-80b-a3b")
    assert spec.layer_kind_counts() == {"full": 12, "linear": 36}
    assert spec.layer_kind(3) == "full" and spec.layer_kind(0) == "linear"
    state = 36 * (32 * 128 * 128 + (2 * 2048 + 4096) * 3) * 2  # delta state + conv history
    assert spec.state_bytes_per_sequence() == state
    full = 12 * 2 * 2 * 256 * 2  # only the 12 full layers cache K and V
    assert spec.kv_bytes_per_token() == full
    assert spec.kv_bytes_for_context(0) == state
    assert spec.kv_bytes_for_context(10_000) - spec.kv_bytes_for_context(1_000) == 9_000 * full


def test_deepseek_v32_sparse_attention() -> None:
    spec = _spec("deepseek-v3.2")
    assert spec.layer_kind_counts() == {"sparse": 61}
    # MLA latent (512 + 64) in bf16 plus the indexer's fp8 key with its fp32 scale
    assert spec.kv_bytes_per_token() == 61 * ((512 + 64) * 2 + 128 + 4)
    main = 2 * 128 * (192 + 128) * 2048  # attends to the top 2048 tokens only
    indexer = 2 * 64 * 128 * 100_000  # scores every cached token
    assert spec.attention_flops_per_token(100_000) == 61 * (main + indexer)
    assert spec.quantization is not None and spec.quantization.dtype.value == "fp8-block"


def test_glm_and_kimi_are_deepseek_style_moe() -> None:
    glm, kimi = _spec("glm-4.5"), _spec("kimi-k2")
    assert glm.mla is None and glm.num_dense_layers == 3 and glm.has_qk_norm
    assert glm.moe is not None and glm.moe.num_shared_experts == 1
    assert kimi.mla is not None and kimi.num_dense_layers == 1
    assert kimi.moe is not None and kimi.moe.num_experts == 384


@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_every_hf_id_resolves_to_its_entry(spec: ModelSpec) -> None:
    assert resolve_model(spec.source) is spec
    assert resolve_model(spec.source.upper()) is spec
    assert resolve_model(f"https://huggingface.co/{spec.source}") is spec


def test_issue15_hf_id_of_llama_32() -> None:
    assert resolve_model("meta-llama/Llama-3.2-1B").name == "llama-3.2-1b"
    assert resolve_model("meta-llama/Llama-3.2-1B").num_params() == pytest.approx(1.24e9, 0.01)
    assert resolve_model("hf.co/meta-llama/Llama-3.2-3B-Instruct/tree/main").name == (
        "llama-3.2-3b"
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cache_and_attention_grow_with_context_up_to_their_bounds(name: str) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    spec = _spec(name)

    @settings(max_examples=40, deadline=None)
    @given(st.integers(0, 500_000), st.integers(0, 500_000))
    def check(a: int, b: int) -> None:
        lo, hi = sorted((a, b))
        assert spec.kv_bytes_for_context(lo) <= spec.kv_bytes_for_context(hi)
        assert spec.attention_flops_per_token(lo) <= spec.attention_flops_per_token(hi)
        # never more than every layer keeping every token, plus the fixed state
        bound = hi * spec.kv_bytes_per_token() + spec.state_bytes_per_sequence()
        assert spec.kv_bytes_for_context(hi) <= bound

    check()
