"""MoE layer terms that depend on the routing: the correction's expert-concentration axis
(hand-computed factors, legacy 3-axis grids, the fit's numpy mirror against the runtime) and the
share of other EP ranks' pairs a kernel streams."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from servesim.perf.fitting import moe
from servesim.perf.opmodels.grid import LogGrid
from servesim.perf.opmodels.moe_layer import MoELayerFit, correction_coords, moe_layer_s
from tests.perf.factories import assert_mirror_matches_runtime, toy_gpu

GPU = toy_gpu()
FIT = MoELayerFit(
    weight_bytes=2.0,
    compute_dtype="bf16",
    fixed_s=30e-6,
    stream_hidden=4.0,
    stream_inter=0.0,
    mem_eff=0.8,
    compute_eff=0.5,
    tile_rows=64.0,
    overlap_p=1.0,
)
SHAPE = dict(num_tokens=512, hidden=4096, inter=1024, topk=8, num_experts=64, ep=1)
LOAD = dict(assignments=4096.0, experts_touched=64.0)
# only the concentration axis varies: log ratio 0 at concentration 1, log 1.5 at 4
GRID = LogGrid(axes=((0.0,), (0.0,), (0.0,), (0.0, 2.0)), values=(0.0, math.log(1.5)))


def test_concentration_coordinate_is_busiest_over_mean() -> None:
    # 1024 pairs over 8 experts: mean 128; the busiest holds 512 -> 4
    coords = correction_coords(256, 4, 1, 1024.0, 8.0, 512.0)
    assert coords == (256, 128.0, 1.0, 4.0)
    # an exactly even split (the collector's balanced routing) sits at 1
    assert correction_coords(256, 4, 1, 1024.0, 8.0, 128.0)[3] == 1.0


def test_concentration_factor_interpolates_in_log2() -> None:
    base = moe_layer_s(FIT, GPU, **SHAPE, **LOAD, max_pairs=64.0)
    fit = replace(FIT, correction=GRID)
    # balanced (max = mean = 64 pairs): log2(1) = 0, the grid's first point, factor 1
    assert moe_layer_s(fit, GPU, **SHAPE, **LOAD, max_pairs=64.0) == pytest.approx(base)
    # busiest expert at 2x the mean: log2(2) = 1, halfway to 2 -> exp(0.5 log 1.5) = sqrt(1.5);
    # the hot-expert rows term is 0 here (hot_weight 0), so only the factor changes
    hot = moe_layer_s(fit, GPU, **SHAPE, **LOAD, max_pairs=128.0)
    assert hot == pytest.approx(base * math.sqrt(1.5), rel=1e-12)


def test_three_axis_grids_read_the_first_three_coordinates() -> None:
    legacy = LogGrid(axes=((0.0,), (0.0,), (0.0, 1.0)), values=(0.0, math.log(2.0)))
    fit = replace(FIT, correction=legacy)
    base = moe_layer_s(FIT, GPU, **SHAPE, **LOAD, max_pairs=64.0)
    # rank imbalance 1 (EP 1) = log2 0: the first point, factor 1, whatever the concentration
    assert moe_layer_s(fit, GPU, **SHAPE, **LOAD, max_pairs=640.0) == pytest.approx(base)


def test_fit_mirror_matches_runtime_with_four_axes_and_local_streaming() -> None:
    rng = np.random.default_rng(3)
    n = 12
    rows = {
        "latency_s": np.ones(n),
        "dtype": np.full(n, "bf16", dtype=object),
        "num_tokens": rng.integers(1, 4096, n).astype(float),
        "hidden": np.full(n, 4096.0),
        "inter": np.full(n, 1024.0),
        "topk": np.full(n, 8.0),
        "num_experts": np.full(n, 64.0),
        "ep": np.full(n, 8.0),
        "num_matrices": np.full(n, 3.0),
    }
    rows["assignments"] = rows["num_tokens"]  # an even share: 8 pairs per token over EP 8
    rows["experts_touched"] = np.minimum(rows["assignments"], 8.0)
    mean = rows["assignments"] / rows["experts_touched"]
    rows["max_expert"] = mean * rng.uniform(1.0, 12.0, n)
    rows["padded_64"] = np.ceil(mean / 64) * 64 * rows["experts_touched"]
    grid = LogGrid(
        axes=tuple(moe.GRID_AXES),
        values=tuple(rng.normal(0, 0.2, int(np.prod([len(a) for a in moe.GRID_AXES])))),
    )
    fit = replace(FIT, correction=grid, stream_global=0.3)
    rounded = MoELayerFit.from_dict(fit.to_dict())  # the mirror reads the JSON-rounded grid
    shape = {"hidden": 4096, "inter": 1024, "topk": 8, "num_experts": 64, "ep": 8}
    assert_mirror_matches_runtime(fit, GPU, rows, (64,), rounded, **shape)


def test_local_gather_kernel_streams_only_its_own_pairs_plus_a_share() -> None:
    # EP 128, 16384 tokens x top 4 = 65536 pairs, 512 on this rank (4 local experts); no
    # weights or math (bare), so the time is the fixed cost plus streaming:
    # stream_global 1: 65536 pairs x 4 x 4096 B / 2 TB/s = 536.9 us
    # stream_global 0.1: (512 + 0.1 x 65024) pairs x 4 x 4096 / 2e12 = 57.5 us
    bare = replace(FIT, mem_eff=1e9, compute_eff=1e9)
    kwargs = dict(
        num_tokens=16384,
        hidden=4096,
        inter=1024,
        topk=4,
        num_experts=512,
        ep=128,
        assignments=512.0,
        experts_touched=4.0,
        max_pairs=128.0,
    )
    whole = moe_layer_s(bare, GPU, **kwargs)
    local = moe_layer_s(replace(bare, stream_global=0.1), GPU, **kwargs)
    per_pair = 4.0 * 4096 / 2e12
    body = whole - 30e-6 - 65536 * per_pair  # the (near-zero) weight and math terms
    assert whole == pytest.approx(30e-6 + 65536 * per_pair + body, rel=1e-12)
    assert local == pytest.approx(30e-6 + (512 + 0.1 * 65024) * per_pair + body, rel=1e-12)
    assert body < 1e-9
    # at EP 1 every pair is the rank's own: the scope changes nothing
    ep1 = dict(kwargs, ep=1, assignments=65536.0, experts_touched=512.0, max_pairs=200.0)
    assert moe_layer_s(replace(bare, stream_global=0.1), GPU, **ep1) == pytest.approx(
        moe_layer_s(bare, GPU, **ep1), rel=1e-12
    )
    # the JSON round trip keeps it, and an old file without the key reads the fused default 1
    data = replace(FIT, stream_global=0.25).to_dict()
    assert MoELayerFit.from_dict(data).stream_global == 0.25
    del data["stream_global"]
    assert MoELayerFit.from_dict(data).stream_global == 1.0
