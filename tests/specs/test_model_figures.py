"""Derived figures of the catalog models against published numbers and hand counts."""

from __future__ import annotations

import pytest

from servesim.core.errors import ConfigError
from servesim.specs.catalog import resolve_model
from servesim.specs.dtypes import DType

# Published parameter counts (model cards / papers), in parameters.
PUBLISHED_TOTAL = {
    "llama-2-7b": 6.74e9,
    "llama-3.1-8b": 8.03e9,
    "llama-3.1-70b": 70.6e9,
    "mixtral-8x7b": 46.7e9,
    "deepseek-v3": 671e9,
}


@pytest.mark.parametrize(("name", "expected"), sorted(PUBLISHED_TOTAL.items()))
def test_total_params_match_published_within_1pct(name: str, expected: float) -> None:
    assert resolve_model(name).num_params() == pytest.approx(expected, rel=0.01)


def test_dense_model_active_equals_total() -> None:
    spec = resolve_model("llama-3.1-70b")
    assert spec.num_active_params() == spec.num_params()


def test_mixtral_active_params() -> None:
    # Mistral AI: 12.9B parameters used per token.
    assert resolve_model("mixtral-8x7b").num_active_params() == pytest.approx(12.9e9, rel=0.01)


def test_deepseek_v3_active_params() -> None:
    # DeepSeek-V3 report: "37B activated", a whole-billion figure. Our count (input embedding,
    # LM head, MLA, 3 dense layers, 8 routed + 1 shared expert) is 37.55B; DeepSeek leaves the
    # input embedding (a lookup) out, which gives 36.63B. Both round or truncate to 37B; the
    # rounding of the published figure is why this one check needs 1.5%, not 1%.
    spec = resolve_model("deepseek-v3")
    active = spec.num_active_params()
    assert 37e9 <= active < 38e9
    assert active == pytest.approx(37e9, rel=0.015)
    without_lookup = active - spec.vocab_size * spec.hidden_size
    assert round(without_lookup / 1e9) == 37


def test_llama2_7b_exact_hand_count() -> None:
    h, f, v, n = 4096, 11008, 32000, 32
    per_layer = 4 * h * h + 3 * h * f + 2 * h
    assert resolve_model("llama-2-7b").num_params() == n * per_layer + 2 * v * h + h


def test_kv_bytes_llama_3_1_70b_bf16() -> None:
    # 2 (K and V) * 80 layers * 8 kv heads * 128 head dim * 2 bytes
    assert resolve_model("llama-3.1-70b").kv_bytes_per_token(DType.BF16) == 327_680


def test_kv_bytes_deepseek_v3_mla_bf16() -> None:
    # MLA caches the 512-wide latent plus the 64-wide rotary key, once per layer.
    assert resolve_model("deepseek-v3").kv_bytes_per_token("bf16") == 61 * (512 + 64) * 2


def test_kv_bytes_scale_with_dtype() -> None:
    spec = resolve_model("llama-3.1-8b")
    assert spec.kv_bytes_per_token("fp8") * 2 == spec.kv_bytes_per_token("bf16")
    assert spec.kv_bytes_per_token("fp32") == 2 * spec.kv_bytes_per_token("bf16")


@pytest.mark.parametrize(
    ("dtype", "bytes_per_param"),
    [("fp32", 4.0), ("bf16", 2.0), ("fp16", 2.0), ("fp8", 1.0), ("int8", 1.0), ("int4", 0.5)],
)
def test_weight_bytes_per_dtype(dtype: str, bytes_per_param: float) -> None:
    spec = resolve_model("llama-2-7b")
    assert spec.weight_bytes(dtype) == spec.num_params() * bytes_per_param


def test_flops_per_token_about_twice_params_at_short_context() -> None:
    spec = resolve_model("llama-2-7b")
    flops = spec.flops_per_token(1)
    # Hand count: matmul weights = 32 * (4*4096^2 + 3*4096*11008) + LM head 32000*4096.
    matmul = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 32000 * 4096
    attention = 32 * 2 * 32 * (128 + 128) * 1
    assert flops == 2 * matmul + attention
    assert flops == pytest.approx(2 * spec.num_params(), rel=0.03)


def test_attention_flops_grow_linearly_with_context() -> None:
    spec = resolve_model("llama-3.1-8b")
    base = spec.flops_per_token(0)
    assert spec.flops_per_token(1000) - base == 32 * 2 * 32 * 256 * 1000
    with pytest.raises(ConfigError):
        spec.flops_per_token(-1)


def test_sliding_window_caps_attention_flops() -> None:
    spec = resolve_model("mistral-7b")
    assert spec.sliding_window == 4096
    assert spec.flops_per_token(100_000) == spec.flops_per_token(4096)


def test_moe_layer_layout() -> None:
    ds = resolve_model("deepseek-v3")
    assert ds.num_moe_layers == 58
    assert not ds.is_moe_layer(2)
    assert ds.is_moe_layer(3)
    mixtral = resolve_model("mixtral-8x7b")
    assert all(mixtral.is_moe_layer(i) for i in range(32))
    assert not resolve_model("llama-2-7b").is_moe_layer(0)
    with pytest.raises(ConfigError):
        mixtral.is_moe_layer(32)


def test_resolve_passes_a_spec_through() -> None:
    spec = resolve_model("phi-2")
    assert resolve_model(spec) is spec


def test_cached_tokens_capped_by_window() -> None:
    assert resolve_model("mistral-7b").num_cached_tokens(10_000) == 4096
    assert resolve_model("llama-3.1-8b").num_cached_tokens(10_000) == 10_000
