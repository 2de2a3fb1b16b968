"""Every built-in model builds, names its HF source, and has consistent figures."""

from __future__ import annotations

import pytest

from servesim.specs.catalog import list_models, model_names

EXPECTED = {
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.1-405b",
    "mistral-7b",
    "mixtral-8x7b",
    "mixtral-8x22b",
    "qwen2.5-7b",
    "qwen2.5-32b",
    "qwen2.5-72b",
    "qwen3-32b",
    "qwen3-30b-a3b",
    "deepseek-v3",
    "phi-2",
    "codellama-34b",
}

# Model cards' headline sizes (total, active) for the rest of the catalog.
PUBLISHED = {
    "llama-2-13b": (13.0e9, None),
    "llama-2-70b": (69.0e9, None),
    "llama-3.1-405b": (405.9e9, None),
    "mistral-7b": (7.24e9, None),
    "mixtral-8x22b": (141e9, 39e9),
    "qwen2.5-72b": (72.7e9, None),
    "qwen3-32b": (32.8e9, None),
    "qwen3-30b-a3b": (30.5e9, 3.3e9),
    "phi-2": (2.78e9, None),
    "codellama-34b": (33.7e9, None),
}


def test_catalog_holds_the_listed_models() -> None:
    assert set(model_names()) >= EXPECTED


@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_entry_is_consistent(spec) -> None:  # type: ignore[no-untyped-def]
    assert "/" in spec.source  # an HF repo id
    assert spec.num_active_params() <= spec.num_params()
    assert spec.weight_bytes("bf16") == 2 * spec.num_params()
    assert spec.kv_bytes_per_token("bf16") > 0
    assert spec.flops_per_token(0) > 2 * 0.9 * (
        spec.num_active_params() - spec.vocab_size * spec.hidden_size
    )
    assert spec.num_attention_heads % spec.num_kv_heads == 0


@pytest.mark.parametrize(("name", "figures"), sorted(PUBLISHED.items()))
def test_published_sizes(name: str, figures: tuple[float, float | None]) -> None:
    spec = next(s for s in list_models() if s.name == name)
    total, active = figures
    assert spec.num_params() == pytest.approx(total, rel=0.01)
    if active is not None:
        assert spec.num_active_params() == pytest.approx(active, rel=0.02)
