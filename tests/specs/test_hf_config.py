"""Hugging Face config.json parsing, one small config per family (values from public configs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.specs.catalog import load_hf_config, resolve_model
from servesim.specs.model import ModelSpec

# meta-llama/Llama-3.1-8B (head_dim absent: derived as hidden / heads).
LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
}
# mistralai/Mistral-7B-v0.1: sliding window 4096.
MISTRAL = {
    **LLAMA,
    "model_type": "mistral",
    "vocab_size": 32000,
    "max_position_embeddings": 32768,
    "sliding_window": 4096,
}
# mistralai/Mixtral-8x7B-v0.1
MIXTRAL = {
    **MISTRAL,
    "model_type": "mixtral",
    "sliding_window": None,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
}
# Qwen/Qwen2.5-7B: q/k/v bias, sliding window present but disabled.
QWEN2 = {
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 131072,
    "sliding_window": 131072,
    "use_sliding_window": False,
    "max_window_layers": 28,
    "tie_word_embeddings": False,
}
# Qwen/Qwen1.5-MoE-A2.7B: 60 experts top-4, one gated shared expert of 5632.
QWEN2_MOE = {
    "model_type": "qwen2_moe",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "moe_intermediate_size": 1408,
    "shared_expert_intermediate_size": 5632,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "num_experts": 60,
    "num_experts_per_tok": 4,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "vocab_size": 151936,
    "max_position_embeddings": 8192,
    "use_sliding_window": False,
    "tie_word_embeddings": False,
}
# Qwen/Qwen3-32B: explicit head_dim, q/k norms, no bias.
QWEN3 = {
    "model_type": "qwen3",
    "hidden_size": 5120,
    "intermediate_size": 25600,
    "num_hidden_layers": 64,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "attention_bias": False,
    "sliding_window": None,
    "use_sliding_window": False,
    "tie_word_embeddings": False,
}
# Qwen/Qwen3-30B-A3B
QWEN3_MOE = {
    **QWEN3,
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
}
# deepseek-ai/DeepSeek-V3
DEEPSEEK_V3 = {
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "vocab_size": 129280,
    "max_position_embeddings": 163840,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "kv_lora_rank": 512,
    "q_lora_rank": 1536,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
}
# deepseek-ai/DeepSeek-V2-Lite: no q compression (q_lora_rank null), first layer dense.
DEEPSEEK_V2_LITE = {
    "model_type": "deepseek_v2",
    "hidden_size": 2048,
    "intermediate_size": 10944,
    "moe_intermediate_size": 1408,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "vocab_size": 102400,
    "max_position_embeddings": 163840,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_experts_per_tok": 6,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
    "kv_lora_rank": 512,
    "q_lora_rank": None,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
}
# microsoft/phi-2
PHI2 = {
    "model_type": "phi",
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 51200,
    "max_position_embeddings": 2048,
    "partial_rotary_factor": 0.4,
    "hidden_act": "gelu_new",
    "qk_layernorm": False,
    "tie_word_embeddings": False,
}


def build(cfg: dict[str, Any], name: str = "test") -> ModelSpec:
    return ModelSpec.from_hf_config(cfg, name=name, source="unit-test")


def test_llama_derives_head_dim_and_counts_params() -> None:
    spec = build(LLAMA)
    assert (spec.family, spec.head_dim, spec.num_kv_heads) == ("llama", 128, 8)
    assert spec.num_params() == resolve_model("llama-3.1-8b").num_params()
    assert spec.sliding_window is None and spec.moe is None and spec.mla is None


def test_missing_kv_heads_means_multi_head_attention() -> None:
    cfg = {k: v for k, v in LLAMA.items() if k != "num_key_value_heads"}
    assert build(cfg).num_kv_heads == 32


def test_mistral_sliding_window() -> None:
    assert build(MISTRAL).sliding_window == 4096


def test_mixtral_every_layer_is_moe() -> None:
    spec = build(MIXTRAL)
    assert spec.moe is not None
    assert (spec.moe.num_experts, spec.moe.num_experts_per_token) == (8, 2)
    assert spec.moe.expert_ffn_size == 14336
    assert spec.num_moe_layers == 32


def test_qwen2_bias_and_disabled_window() -> None:
    spec = build(QWEN2)
    assert spec.has_qkv_bias
    assert spec.sliding_window is None
    # Qwen2.5-7B: 7.61B parameters (model card)
    assert spec.num_params() == pytest.approx(7.61e9, rel=0.01)


def test_qwen2_moe_shared_expert() -> None:
    spec = build(QWEN2_MOE)
    assert spec.moe is not None
    assert spec.moe.num_shared_experts == 1
    assert spec.moe.shared_expert_ffn_size == 5632
    assert spec.moe.has_shared_expert_gate
    # Qwen1.5-MoE-A2.7B model card: 14.3B total, 2.7B activated.
    assert spec.num_params() == pytest.approx(14.3e9, rel=0.01)
    assert spec.num_active_params() == pytest.approx(2.7e9, rel=0.03)


def test_qwen2_moe_sparse_step_and_dense_only_layers() -> None:
    spec = build({**QWEN2_MOE, "decoder_sparse_step": 2, "mlp_only_layers": [1]})
    assert spec.moe is not None
    assert spec.moe.moe_layer_indices == tuple(range(3, 24, 2))


def test_qwen3_head_dim_and_qk_norm() -> None:
    spec = build(QWEN3)
    assert spec.head_dim == 128
    assert spec.has_qk_norm and not spec.has_qkv_bias
    assert spec.num_params() == pytest.approx(32.8e9, rel=0.01)


def test_qwen3_moe_counts() -> None:
    spec = build(QWEN3_MOE)
    assert spec.num_params() == pytest.approx(30.5e9, rel=0.01)
    assert spec.num_active_params() == pytest.approx(3.3e9, rel=0.03)


def test_deepseek_v3_mla_and_moe_layout() -> None:
    spec = build(DEEPSEEK_V3)
    assert spec.mla is not None and spec.moe is not None
    assert spec.mla.q_lora_rank == 1536
    assert spec.head_dim == 192
    assert spec.moe.moe_layer_indices[0] == 3
    assert spec.kv_bytes_per_token() == 70_272


def test_deepseek_v2_lite_without_q_compression() -> None:
    spec = build(DEEPSEEK_V2_LITE)
    assert spec.mla is not None and spec.mla.q_lora_rank is None
    assert spec.moe is not None and spec.moe.num_shared_experts == 2
    # DeepSeek-V2-Lite model card: 15.7B total, 2.4B activated. DeepSeek's "activated" leaves
    # out the input embedding (a lookup, no compute); our figure counts it.
    assert spec.num_params() == pytest.approx(15.7e9, rel=0.01)
    input_embedding = 102400 * 2048
    assert spec.num_active_params() - input_embedding == pytest.approx(2.4e9, rel=0.03)


def test_phi2_parallel_block_gelu_mlp_and_biases() -> None:
    spec = build(PHI2)
    assert spec.parallel_attn_mlp and not spec.is_gated_mlp
    assert spec.norm == "layernorm" and spec.has_qkv_bias and spec.has_mlp_bias
    assert spec.rotary_fraction == 0.4
    h, f, v = 2560, 10240, 51200
    per_layer = (4 * h * h + 4 * h) + (2 * h * f + f + h) + 2 * h
    assert spec.num_params() == 32 * per_layer + 2 * v * h + v + 2 * h


def test_tied_embeddings_drop_the_lm_head() -> None:
    untied = build(LLAMA)
    tied = build({**LLAMA, "tie_word_embeddings": True})
    assert untied.num_params() - tied.num_params() == 128256 * 4096


def test_unknown_model_type_with_llama_fields_works() -> None:
    spec = build({**LLAMA, "model_type": "my_llama_clone"})
    assert spec.family == "my_llama_clone"
    assert spec.num_params() == build(LLAMA).num_params()


def test_unknown_model_type_names_type_and_missing_fields() -> None:
    cfg = {"model_type": "rwkv", "hidden_size": 2048, "vocab_size": 65536}
    with pytest.raises(ConfigError) as info:
        build(cfg)
    message = str(info.value)
    assert "rwkv" in message
    for missing in (
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
    ):
        assert missing in message


@pytest.mark.parametrize("bad", [0, -4, 3.5, "32", True])
def test_non_positive_integer_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        build({**LLAMA, "num_hidden_layers": bad})


def test_kv_heads_must_divide_heads() -> None:
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        build({**LLAMA, "num_key_value_heads": 5})


def test_config_json_path_and_directory(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**QWEN2, "_name_or_path": "me/qwen"}))
    by_file = resolve_model(str(folder / "config.json"))
    by_dir = resolve_model(folder)
    assert by_file == by_dir
    assert by_file.name == "me/qwen"
    assert by_file.source.endswith("config.json")
    assert load_hf_config(folder, name="mine").name == "mine"


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve_model(str(bad))
    with pytest.raises(ConfigError, match=r"no config\.json"):
        resolve_model(str(tmp_path / "absent.json"))
    with pytest.raises(ConfigError, match=r"no config\.json"):
        resolve_model(tmp_path / "empty-dir")


def test_catalog_names_are_case_insensitive_and_accept_repo_ids() -> None:
    spec = resolve_model("llama-3.1-70b")
    assert resolve_model("Llama-3.1-70B") is spec
    assert resolve_model("meta-llama/Llama-3.1-70B") is spec
    assert resolve_model("meta-llama/Meta-Llama-3.1-70B") is spec
    assert spec.source == "meta-llama/Llama-3.1-70B"


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match=r"did you mean.*llama-3\.1-70b"):
        resolve_model("llama-3.1-7b")


def test_multimodal_wrapper_uses_text_config() -> None:
    wrapper = {"model_type": "llava", "text_config": LLAMA, "vision_config": {"hidden_size": 1}}
    assert build(wrapper).num_params() == build(LLAMA).num_params()
