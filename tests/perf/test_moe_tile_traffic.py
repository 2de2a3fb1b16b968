"""SGLang's default fused-MoE tiles and their operand traffic (``opmodels.moe_layer``), the
numpy mirror of that term against the runtime, and the same-die streaming transfer rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from servesim.perf.opmodels.moe_layer import moe_layer_s
from servesim.perf.opmodels.moe_tiles import default_tiles, tile_traffic_bytes
from tests.perf.factories import (
    assert_mirror_matches_runtime,
    moe_mirror_rows,
    toy_gpu,
    traffic_only_moe_fit,
)

GPU = toy_gpu()
FIT = traffic_only_moe_fit()


def test_default_tiles_follow_sglang_get_default_config() -> None:
    # bf16: 16 x 32 while the tokens do not exceed the local experts (M <= E), else 64 x 64
    assert default_tiles("bf16", 8, 8) == (16, 32)
    assert default_tiles("bf16", 9, 8) == (64, 64)
    # block-scaled fp8: 64 x 128 whatever M
    assert default_tiles("fp8", 1, 8) == (64, 128)


def test_tile_traffic_bytes_hand_computed() -> None:
    # 128 padded rows, 64 x 64 tiles, hidden 128, width 64, bf16 weights, gated (3 matrices):
    # per K element a CTA loads 64 x 2 + 64 x 2 = 256 B; 2 M tiles;
    # gate-up: ceil(128 / 64) = 2 N tiles x K 128 = 256; down: ceil(128 / 64) = 2 x K 64 = 128
    # -> 2 x 256 x (256 + 128) = 196608 B
    assert tile_traffic_bytes(128.0, (64, 64), 128, 64, 2.0, 3) == 196608.0
    # non-gated (2 matrices): gate-up N = 64 -> 1 N tile x 128; 2 x 256 x (128 + 128)
    assert tile_traffic_bytes(128.0, (64, 64), 128, 64, 2.0, 2) == 131072.0


def test_traffic_term_adds_to_the_layer_time() -> None:
    # bare fit (no streaming, near-free reads and math): time = fixed + traffic / (2 TB/s x 4);
    # 64 tokens over 8 local experts -> 64 x 64 tiles; 512 pairs, 64 per expert -> 512 rows
    kwargs = dict(num_tokens=64, hidden=128, inter=64, topk=8, num_experts=8, ep=1)
    load = dict(assignments=512.0, experts_touched=8.0, padded={16: 512.0, 64: 512.0})
    moved = 512 / 64 * 256 * (256 + 128)
    time = moe_layer_s(FIT, GPU, **kwargs, **load, max_pairs=64.0)
    assert time == pytest.approx(30e-6 + moved / 8e12, rel=1e-6)
    off = moe_layer_s(replace(FIT, traffic_eff=0.0), GPU, **kwargs, **load, max_pairs=64.0)
    assert off == pytest.approx(30e-6, rel=1e-6)


def test_fit_mirror_matches_runtime_with_the_traffic_term() -> None:
    rng = np.random.default_rng(5)
    tokens = rng.integers(1, 2048, 10).astype(float)
    touched = np.minimum(tokens * 8 / 8, 8.0)
    shape = {"hidden": 2048, "inter": 768, "topk": 8, "num_experts": 64, "ep": 8}
    rows = moe_mirror_rows(tokens, touched, tokens, tokens / touched * 1.5, **shape)
    fit = replace(FIT, stream_hidden=2.0, mem_eff=0.8, compute_eff=0.5, overlap_p=1.3)
    assert_mirror_matches_runtime(fit, GPU, rows, (16, 64), **shape)


def test_same_die_transfer_keeps_the_streaming_absolute_rate() -> None:
    from servesim.perf.opmodels.moe_layer import for_gpu
    from servesim.specs.catalog.gpus import get_gpu

    h100, h200, a100 = get_gpu("h100-sxm"), get_gpu("h200-sxm"), get_gpu("a100-80gb")
    fit = replace(FIT, stream_hidden=6.0, stream_inter=3.0, fit_gpu=h100.name)
    # H100 -> H200 (both Hopper): rates in units of the target's HBM grow by 4.8 / 3.35, so the
    # streaming seconds stay H100's
    carried = for_gpu(fit, h200)
    assert carried.stream_hidden == pytest.approx(6.0 * 4.8e12 / 3.35e12)
    assert carried.stream_inter == pytest.approx(3.0 * 4.8e12 / 3.35e12)
    assert carried.mem_eff == fit.mem_eff  # weight reads stay a fraction of the target's HBM
    # another architecture: unchanged fractions
    assert for_gpu(fit, a100).stream_hidden == 6.0
