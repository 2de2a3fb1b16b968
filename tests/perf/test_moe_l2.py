"""The MoE tables' L2 condition (``opmodels.moe_l2``): touched expert weights that fit in L2 are
read from it in the tables' back-to-back replays, never in a serving step."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from servesim.perf.calibration import load_calibration
from servesim.perf.fitting import moe_params
from servesim.perf.kernel_set import KernelSet
from servesim.perf.kernel_shapes import MoeShape
from servesim.perf.opmodels.moe_l2 import l2_read_gain
from servesim.perf.opmodels.moe_layer import MoELayerFit, moe_layer_s
from servesim.specs.catalog import get_gpu
from servesim.specs.dtypes import DType
from tests.perf.factories import assert_mirror_matches_runtime, moe_fit, toy_gpu

L2_BYTES = 96 * 2**20
GPU = replace(toy_gpu(), l2_cache_bytes=L2_BYTES)
# 8 touched experts of 3 x 1024 x 1024 bf16 weights (6 MiB each): 48 MiB, half the L2
SHAPE = dict(num_tokens=8, hidden=1024, inter=1024, topk=1, num_experts=8, ep=1)
LOAD = dict(assignments=8.0, experts_touched=8.0, max_pairs=1.0)


def _read_only(**overrides: float) -> MoELayerFit:
    """A fit whose time is the weight read alone: no fixed cost, streaming or math."""
    return moe_fit(fixed_s=0.0, mem_eff=0.8, **overrides)


def test_warm_over_cold_is_the_gain_at_half_the_l2() -> None:
    # weights 8 x 3 x 1024 x 1024 x 2 B = 48 MiB = L2 / 2; l2_frac 0.5: x = 1, gain 1 + 2 / 2
    fit = _read_only(l2_gain=2.0, l2_frac=0.5)
    cold = moe_layer_s(fit, GPU, **SHAPE, **LOAD, l2_warm=False)
    warm = moe_layer_s(fit, GPU, **SHAPE, **LOAD)
    weights = 8 * 3 * 1024 * 1024 * 2.0
    assert weights == L2_BYTES / 2
    assert cold == pytest.approx(weights / (2e12 * 0.8), rel=1e-12)
    assert cold / warm == pytest.approx(2.0, rel=1e-9)  # math at 1e9x peak: ~0
    # l2_frac 1: x = 0.5, gain 1 + 2 / (1 + 1 / 16)
    fit = _read_only(l2_gain=2.0, l2_frac=1.0)
    ratio = moe_layer_s(fit, GPU, **SHAPE, **LOAD, l2_warm=False) / moe_layer_s(
        fit, GPU, **SHAPE, **LOAD
    )
    assert ratio == pytest.approx(1.0 + 2.0 / (1.0 + 0.5**4), rel=1e-9)


def test_no_gain_without_a_fitted_gain_or_a_known_l2() -> None:
    plain = _read_only()
    assert moe_layer_s(plain, GPU, **SHAPE, **LOAD) == moe_layer_s(
        plain, GPU, **SHAPE, **LOAD, l2_warm=False
    )
    gained = _read_only(l2_gain=2.0, l2_frac=0.5)
    no_l2 = toy_gpu()  # l2_cache_bytes 0: unknown, no gain
    assert moe_layer_s(gained, no_l2, **SHAPE, **LOAD) == moe_layer_s(plain, no_l2, **SHAPE, **LOAD)


def test_cold_is_never_faster_than_warm() -> None:
    rng = np.random.default_rng(7)
    fit = moe_fit(
        mem_eff=0.7, compute_eff=0.5, overlap_p=1.8, stream_hidden=3.0, l2_gain=3.0, l2_frac=0.6
    )
    for _ in range(200):
        touched = float(rng.integers(1, 64))
        shape = dict(
            num_tokens=int(rng.integers(1, 8192)),
            hidden=int(rng.choice([1024, 2048, 4096, 7168])),
            inter=int(rng.choice([256, 512, 1536, 2048])),
            topk=8,
            num_experts=64,
            ep=1,
        )
        load = dict(assignments=touched * 4.0, experts_touched=touched)
        warm = moe_layer_s(fit, GPU, **shape, **load)
        assert moe_layer_s(fit, GPU, **shape, **load, l2_warm=False) >= warm


def test_mirror_prices_the_gain_as_the_runtime_does() -> None:
    n = 10
    touched = np.linspace(1.0, 40.0, n)  # 4 to 160 MiB of weights: both sides of the L2
    rows = {
        "latency_s": np.ones(n),
        "dtype": np.full(n, "bf16", dtype=object),
        "num_tokens": np.full(n, 64.0),
        "hidden": np.full(n, 2048.0),
        "inter": np.full(n, 1024.0),
        "topk": np.full(n, 8.0),
        "num_experts": np.full(n, 64.0),
        "ep": np.full(n, 1.0),
        "num_matrices": np.full(n, 3.0),
        "experts_touched": touched,
        "assignments": np.full(n, 512.0),
        "max_expert": 512.0 / touched,
    }
    rows["padded_16"] = np.ceil(512.0 / touched / 16) * 16 * touched
    fit = moe_fit(mem_eff=0.7, compute_eff=0.5, overlap_p=1.8, l2_gain=3.0, l2_frac=0.6)
    shape = {"hidden": 2048, "inter": 1024, "topk": 8, "num_experts": 64, "ep": 1}
    assert_mirror_matches_runtime(fit, GPU, rows, (16,), **shape)


def test_gain_serialises_and_old_files_read_none() -> None:
    fit = moe_fit(l2_gain=1.5, l2_frac=0.7)
    back = MoELayerFit.from_dict(fit.to_dict())
    assert (back.l2_gain, back.l2_frac) == (1.5, 0.7)
    data = fit.to_dict()
    del data["l2_gain"], data["l2_frac"]
    old = MoELayerFit.from_dict(data)
    assert (old.l2_gain, old.l2_frac) == (0.0, 1.0)


def test_parameter_vector_round_trips_the_gain_and_keeps_zero_exact() -> None:
    fit = moe_fit(stream_hidden=1.0, stream_inter=1.0, l2_gain=1.5, l2_frac=0.7)
    back = moe_params._unpack(moe_params._pack(fit), fit)
    assert back.l2_gain == pytest.approx(1.5, rel=1e-9)
    assert back.l2_frac == pytest.approx(0.7, rel=1e-9)
    assert moe_params._unpack(moe_params._pack(replace(fit, l2_gain=0.0)), fit).l2_gain == 0.0


def test_the_gain_carries_by_the_target_gpu_l2_size() -> None:
    # the same weights are 1/2 of a 64 MiB L2 and 1/4 of a 128 MiB one
    gain = l2_read_gain(2.0, 0.5, 32.0 * 2**20, 64.0 * 2**20)
    assert gain == pytest.approx(2.0)
    assert l2_read_gain(2.0, 0.5, 32.0 * 2**20, 128.0 * 2**20) == pytest.approx(
        1.0 + 2.0 / (1.0 + 0.5**4)
    )


def test_serving_prices_the_experts_with_cold_weights() -> None:
    # a serving step runs every other layer between two calls of one layer's experts
    gpu = get_gpu("l40s")
    kernels = KernelSet(load_calibration(), "vllm-0.24", gpu)
    # 8 touched experts of 6 MiB: 48 MiB of weights, half L40S's 96 MiB L2
    shape = MoeShape(8, 1024, 1024, 1, 8, 1, 8.0, 8.0, label="bf16", weight_bytes=2.0)
    fit = MoELayerFit.from_dict(kernels.sources["moe"].params["bf16"])
    kwargs = dict(SHAPE, num_tokens=8, assignments=8.0, experts_touched=8.0)
    served = kernels.moe_experts_s(shape, gpu.peak_flops(DType.BF16))
    assert served == moe_layer_s(fit, gpu, **kwargs, l2_warm=False)
    if fit.l2_gain > 0.0:  # the shipped fit has the tables' gain: the tables' rows run faster
        assert served > moe_layer_s(fit, gpu, **kwargs)
