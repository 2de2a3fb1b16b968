"""The default fused-MoE tiles' serial K loop (``moe_tiles.kloop_steps``, ``MoELayerFit.kloop_s``):
at few tokens the grid of small default tiles is under one wave and one CTA's walk through K
is the layer's floor."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from servesim.perf.calibration import load_calibration
from servesim.perf.fitting import moe_params
from servesim.perf.opmodels.moe_layer import MoELayerFit, moe_layer_s
from servesim.perf.opmodels.moe_tiles import default_block_k, kloop_steps
from servesim.perf.opmodels.transfer import clock_ratio
from servesim.specs.catalog import get_gpu
from tests.perf.factories import (
    assert_mirror_matches_runtime,
    moe_fit,
    moe_mirror_rows,
    toy_gpu,
)

GPU = toy_gpu()
#: no fixed cost, free reads, math and operand traffic: the layer time is the K loop alone
FIT = moe_fit(fixed_s=0.0, traffic_eff=1e12, kloop_s=1e-7)
SHAPE = dict(hidden=1024, inter=512, topk=1, num_experts=8, ep=1)


def test_block_k_follows_sglang_get_default_config() -> None:
    # bf16: BLOCK_SIZE_K 64 when M <= E, else 32; block-scaled fp8: the 128 scale block
    assert default_block_k("bf16", 8, 8) == 64
    assert default_block_k("bf16", 9, 8) == 32
    assert default_block_k("fp8", 1, 8) == 128
    assert default_block_k("fp8", 4096, 8) == 128


def test_steps_walk_both_grouped_gemms() -> None:
    # gate-up: K = hidden 4096 -> 64 steps of 64; down: K = width 1536 -> 24 steps
    assert kloop_steps(4096, 1536, 64) == 88
    assert kloop_steps(4096, 1500, 64) == 64 + 24  # a partial last block is one more step
    assert kloop_steps(7168, 256, 128) == 56 + 2


def test_layer_time_is_the_k_loop_hand_computed() -> None:
    load = dict(assignments=8.0, experts_touched=8.0, max_pairs=1.0)
    # 8 tokens on 8 local experts (M <= E): BLOCK_K 64, 1024 / 64 + 512 / 64 = 24 steps
    small = moe_layer_s(FIT, GPU, num_tokens=8, **SHAPE, **load)
    assert small == pytest.approx(24 * 1e-7, rel=1e-6)
    # 9 tokens (M > E): BLOCK_K 32, 32 + 16 = 48 steps
    load9 = dict(assignments=9.0, experts_touched=8.0, max_pairs=2.0)
    assert moe_layer_s(FIT, GPU, num_tokens=9, **SHAPE, **load9) == pytest.approx(
        48 * 1e-7, rel=1e-6
    )
    # the block-scaled fp8 tiles: BLOCK_K 128, 8 + 4 = 12 steps
    fp8 = replace(FIT, compute_dtype="fp8", weight_bytes=1.0)
    assert moe_layer_s(fp8, GPU, num_tokens=8, **SHAPE, **load) == pytest.approx(
        12 * 1e-7, rel=1e-6
    )


def test_k_loop_is_a_floor_under_the_p_norm() -> None:
    # the loop overlaps the weight read by the fit's p-norm: never below either term alone
    fit = replace(FIT, mem_eff=0.5, overlap_p=1.5)
    load = dict(assignments=8.0, experts_touched=8.0, max_pairs=1.0)
    read = 8 * 3 * 1024 * 512 * 2.0 / (2e12 * 0.5)
    loop = 24 * 1e-7
    time = moe_layer_s(fit, GPU, num_tokens=8, **SHAPE, **load)
    assert time == pytest.approx((read**1.5 + loop**1.5) ** (1 / 1.5), rel=1e-3)
    assert max(read, loop) < time < read + loop


def test_default_tiles_take_their_own_overlap_where_one_is_set() -> None:
    # a tuned-kernel fit (p 1: reads and loop add) with the default tiles' overlap p 2
    fit = replace(FIT, mem_eff=0.5, overlap_p=1.0, tiles_overlap_p=2.0)
    load = dict(assignments=8.0, experts_touched=8.0, max_pairs=1.0)
    read = 8 * 3 * 1024 * 512 * 2.0 / (2e12 * 0.5)
    loop = 24 * 1e-7
    time = moe_layer_s(fit, GPU, num_tokens=8, **SHAPE, **load)
    assert time == pytest.approx((read**2 + loop**2) ** 0.5, rel=1e-3)
    # without it the fit's own p: the two add
    plain = moe_layer_s(replace(fit, tiles_overlap_p=0.0), GPU, num_tokens=8, **SHAPE, **load)
    assert plain == pytest.approx(read + loop, rel=1e-3)
    back = MoELayerFit.from_dict(fit.to_dict())
    assert back.tiles_overlap_p == 2.0


def test_no_k_loop_without_the_default_tiles() -> None:
    load = dict(assignments=8.0, experts_touched=8.0, max_pairs=1.0)
    base = moe_layer_s(replace(FIT, kloop_s=0.0), GPU, num_tokens=8, **SHAPE, **load)
    assert base == pytest.approx(0.0, abs=1e-9)
    # a fit with no default-tile term (a tuned-config kernel) has no K loop either
    no_tiles = replace(FIT, traffic_eff=0.0)
    assert moe_layer_s(no_tiles, GPU, num_tokens=8, **SHAPE, **load) == pytest.approx(0.0, abs=1e-9)


def test_mirror_prices_the_k_loop_as_the_runtime_does() -> None:
    tokens = np.geomspace(1, 2048, 12).round()
    touched = np.minimum(tokens, 8.0)
    shape = {"hidden": 2048, "inter": 768, "topk": 2, "num_experts": 8, "ep": 1}
    rows = moe_mirror_rows(tokens, touched, tokens * 2, tokens * 2 / touched * 1.5, **shape)
    fit = replace(FIT, traffic_eff=3.0, mem_eff=0.8, compute_eff=0.5, overlap_p=1.4)
    assert_mirror_matches_runtime(fit, GPU, rows, (16, 64), **shape)
    assert_mirror_matches_runtime(replace(fit, tiles_overlap_p=1.9), GPU, rows, (16, 64), **shape)


def test_k_loop_serialises_and_round_trips_the_parameter_vector() -> None:
    fit = moe_fit(stream_hidden=1.0, stream_inter=1.0, traffic_eff=3.0, kloop_s=3e-7)
    assert MoELayerFit.from_dict(fit.to_dict()).kloop_s == 3e-7
    data = fit.to_dict()
    del data["kloop_s"]
    assert MoELayerFit.from_dict(data).kloop_s == 0.0  # a file from before the term: none
    back = moe_params._unpack(moe_params._pack(fit), fit)
    assert back.kloop_s == pytest.approx(3e-7, rel=1e-9)
    zero = moe_params._unpack(moe_params._pack(replace(fit, kloop_s=0.0)), fit)
    assert zero.kloop_s == 0.0  # the lower bound reads as none, exactly


def test_k_loop_carries_by_the_clock_ratio() -> None:
    # a serial loop of dependent steps: SM cycles, so donor clock / target clock
    h100, a100 = get_gpu("h100-sxm"), get_gpu("a100-80gb")
    fit = replace(FIT, fit_gpu="h100-sxm")
    load = dict(assignments=8.0, experts_touched=8.0, max_pairs=1.0)
    here = moe_layer_s(fit, h100, num_tokens=8, **SHAPE, **load)
    there = moe_layer_s(fit, a100, num_tokens=8, **SHAPE, **load)
    assert clock_ratio(h100, a100) == pytest.approx(1980 / 1410)
    assert there / here == pytest.approx(1980 / 1410, rel=1e-3)


def test_shipped_sglang_fits_learn_the_loop_at_a_clock_consistent_rate() -> None:
    # fitted independently per GPU: the Hopper parts (one clock) within 10% of each other, and
    # A100's (vLLM 0.14's untuned shapes run the same default tiles) slower per step, as its
    # clock is (1410 against 1980 MHz)
    stacks = load_calibration().kernel_stacks
    h100 = stacks["sglang-0.5"]["h100"]["moe"]["bf16"]["kloop_s"]
    h200 = stacks["sglang-0.5"]["h200"]["moe"]["bf16"]["kloop_s"]
    a100 = stacks["vllm-0.24"]["a100"]["moe"]["bf16"]["kloop_s"]
    assert h100 > 0.0 and h200 > 0.0
    assert abs(h100 / h200 - 1.0) < 0.1
    assert a100 / h100 > 1.2
