"""Property tests: derived figures stay consistent over random (valid) architectures."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.specs.model import ModelSpec


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """A random Llama- or Mixtral-style config.json."""
    num_kv = draw(st.sampled_from([1, 2, 4, 8]))
    num_heads = num_kv * draw(st.integers(1, 8))
    head_dim = draw(st.sampled_from([32, 64, 128]))
    cfg: dict[str, Any] = {
        "model_type": draw(st.sampled_from(["llama", "qwen2", "mistral", "qwen3"])),
        "hidden_size": num_heads * head_dim,
        "head_dim": head_dim,
        "intermediate_size": draw(st.integers(64, 20000)),
        "num_hidden_layers": draw(st.integers(1, 100)),
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv,
        "vocab_size": draw(st.integers(100, 200_000)),
        "max_position_embeddings": draw(st.integers(512, 200_000)),
        "tie_word_embeddings": draw(st.booleans()),
    }
    if draw(st.booleans()):
        num_experts = draw(st.integers(2, 64))
        cfg.update(
            model_type="mixtral",
            num_local_experts=num_experts,
            num_experts_per_tok=draw(st.integers(1, num_experts)),
        )
    return cfg


@settings(max_examples=60, deadline=None)
@given(cfg=configs())
def test_layer_sum_matches_total(cfg: dict[str, Any]) -> None:
    spec = ModelSpec.from_hf_config(cfg, name="prop")
    layers = sum(spec.layer_params(i) for i in range(spec.num_layers))
    assert layers + spec.embedding_params() == spec.num_params()
    assert spec.num_active_params() <= spec.num_params()
    if spec.moe is None:
        assert spec.num_active_params() == spec.num_params()


@settings(max_examples=60, deadline=None)
@given(cfg=configs(), context=st.integers(0, 100_000))
def test_kv_and_flops_scale(cfg: dict[str, Any], context: int) -> None:
    spec = ModelSpec.from_hf_config(cfg, name="prop")
    kv = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"]
    assert spec.kv_bytes_per_token("fp32") == 4 * kv
    assert spec.kv_bytes_per_token_per_layer("bf16") * spec.num_layers == 2 * kv
    assert spec.flops_per_token(context + 1) >= spec.flops_per_token(context)
    assert spec.flops_per_token(0) == 2 * spec.matmul_params_per_token()


@settings(max_examples=30, deadline=None)
@given(cfg=configs())
def test_one_more_layer_adds_one_layer_of_params(cfg: dict[str, Any]) -> None:
    spec = ModelSpec.from_hf_config(cfg, name="prop")
    deeper = ModelSpec.from_hf_config(
        {**cfg, "num_hidden_layers": cfg["num_hidden_layers"] + 1}, name="prop"
    )
    assert deeper.num_params() - spec.num_params() == spec.layer_params(0)
