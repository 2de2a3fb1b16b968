"""triton_kernels ``matmul_ogs`` one-CTA floor of vLLM's gpt-oss MXFP4 MoE (``cta_row_s``) and
its EP > 1 routing kernels (``ep_fixed_s``): the kernel's M tile rule by tokens per local expert,
hand-computed times, the fit's numpy mirror against the runtime, the architecture-bound carry."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from servesim.perf.opmodels.moe_carry import for_gpu
from servesim.perf.opmodels.moe_layer import MoELayerFit, moe_layer_s
from servesim.perf.opmodels.moe_tiles import ogs_block_m, ogs_floor_rows
from servesim.specs.catalog.gpus import get_gpu
from tests.perf.factories import assert_mirror_matches_runtime, moe_fit, toy_gpu

GPU = toy_gpu()
ONE_PAIR = dict(hidden=2880, inter=2880, topk=4, num_experts=128, ep=128)


@pytest.mark.parametrize(
    ("tokens", "local", "block_m"),
    [
        (4, 1, 16),  # 2 x 4 = 8 -> clamped up to 16
        (8, 1, 16),
        (16, 1, 32),
        (32, 1, 64),  # next_pow2(64) = 64
        (16, 2, 16),  # 8 per local expert
        (48, 2, 64),  # 24 -> next_pow2(48) = 64
        (48, 4, 32),  # 12 -> next_pow2(24) = 32
        (80, 4, 64),  # 20 -> next_pow2(40) = 64
        (32, 128, 16),  # 0 per expert counts as 1 -> 16
        (100, 1, 128),  # > 64 per expert: next_pow2(100) = 128
    ],
)
def test_block_m_follows_opt_flags_nvidia(tokens: int, local: int, block_m: int) -> None:
    assert ogs_block_m(tokens, local) == block_m


def test_floor_rows_stop_at_64() -> None:
    # the tables are flat past block_m 64 (OGS_FLOOR_MAX_ROWS)
    assert ogs_floor_rows(100, 1) == 64
    assert ogs_floor_rows(16, 1) == 32


def test_floor_binds_with_one_local_expert_and_steps_with_the_tile() -> None:
    # weight reads and math free: without the floor the layer is its 30 us fixed cost
    fit = moe_fit(cta_row_s=1e-6)
    load = dict(assignments=1.0, experts_touched=1.0)
    assert moe_layer_s(moe_fit(), GPU, num_tokens=16, **ONE_PAIR, **load) == pytest.approx(30e-6)
    # 16 tokens on one local expert: block_m 32 -> 30 + 32 x 1 us; 32 tokens: 30 + 64, same pair
    assert moe_layer_s(fit, GPU, num_tokens=16, **ONE_PAIR, **load) == pytest.approx(62e-6)
    assert moe_layer_s(fit, GPU, num_tokens=32, **ONE_PAIR, **load) == pytest.approx(94e-6)
    # the floor is a max, not a sum: a slower body wins alone (one expert's 24.9 M weights at
    # 2 B over the toy GPU's bandwidth at 20%: ~124 us of reads, plus the 30 us)
    slow = replace(fit, mem_eff=0.2)
    body = moe_layer_s(replace(slow, cta_row_s=0.0), GPU, num_tokens=32, **ONE_PAIR, **load)
    assert body > 94e-6
    assert moe_layer_s(slow, GPU, num_tokens=32, **ONE_PAIR, **load) == pytest.approx(body)


def test_fit_mirror_matches_runtime_floor() -> None:
    tokens = np.array([1.0, 8.0, 16.0, 32.0, 48.0, 80.0, 512.0])
    n = tokens.size
    rows = {
        "latency_s": np.ones(n),
        "dtype": np.full(n, "mxfp4", dtype=object),
        "num_tokens": tokens,
        "hidden": np.full(n, 2880.0),
        "inter": np.full(n, 2880.0),
        "topk": np.full(n, 4.0),
        "num_experts": np.full(n, 128.0),
        "ep": np.full(n, 64.0),
        "num_matrices": np.full(n, 3.0),
        "assignments": np.minimum(tokens * 4 / 64, 64.0),
        "experts_touched": np.minimum(tokens * 4 / 64, 2.0),
    }
    rows["max_expert"] = rows["assignments"] / rows["experts_touched"]
    rows["padded_16"] = np.ceil(rows["max_expert"] / 16) * 16 * rows["experts_touched"]
    fit = moe_fit(weight_bytes=0.53125, mem_eff=0.9, cta_row_s=0.7e-6, ep_fixed_s=20e-6)
    shape = {"hidden": 2880, "inter": 2880, "topk": 4, "num_experts": 128, "ep": 64}
    assert_mirror_matches_runtime(fit, GPU, rows, (16,), **shape)


def test_ep_routing_kernels_cost_only_at_ep_above_one() -> None:
    # weight reads and math free, no floor: 30 us fixed at EP 1, 30 + 20 us at EP 2 and 128
    fit = moe_fit(ep_fixed_s=20e-6)
    load = dict(assignments=1.0, experts_touched=1.0)
    shape = {**ONE_PAIR, "num_tokens": 1}
    assert moe_layer_s(fit, GPU, **{**shape, "ep": 1}, **load) == pytest.approx(30e-6)
    assert moe_layer_s(fit, GPU, **{**shape, "ep": 2}, **load) == pytest.approx(50e-6)
    assert moe_layer_s(fit, GPU, **shape, **load) == pytest.approx(50e-6)
    # and it sits under the floor too: 16 tokens at EP 128 -> 30 + 20 + 32 x 1 us
    floored = replace(fit, cta_row_s=1e-6)
    assert moe_layer_s(floored, GPU, **{**shape, "num_tokens": 16}, **load) == pytest.approx(82e-6)


def test_floor_round_trips_and_carries_within_the_architecture_only() -> None:
    fit = replace(moe_fit(cta_row_s=0.7e-6, ep_fixed_s=20e-6), fit_gpu="h100-sxm")
    back = MoELayerFit.from_dict(fit.to_dict())
    assert (back.cta_row_s, back.ep_fixed_s) == pytest.approx((0.7e-6, 20e-6))
    h200, l40s = get_gpu("h200-sxm"), get_gpu("l40s")
    # H200: same Hopper SMs and clock (1980 MHz): the same cycles
    assert for_gpu(fit, h200).cta_row_s == pytest.approx(0.7e-6)
    assert for_gpu(fit, h200).ep_fixed_s == pytest.approx(20e-6)
    # L40S runs Marlin for MXFP4, not matmul_ogs and its EP routing: neither term
    assert (for_gpu(fit, l40s).cta_row_s, for_gpu(fit, l40s).ep_fixed_s) == (0.0, 0.0)
