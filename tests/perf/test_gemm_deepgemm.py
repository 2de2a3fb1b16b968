"""DeepGEMM's block-size heuristic and the single-wave scales of a DeepGEMM fit (hand-computed)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from factories import h100

from servesim.perf.fitting import gemm as fitting
from servesim.perf.fitting.gemm_deepgemm import residual_by_config
from servesim.perf.opmodels.deepgemm import block_config, single_wave_config, tile_waves
from servesim.perf.opmodels.gemm import GemmFit, gemm_time_s


def test_a_tile_past_a_full_wave_opens_a_second_wave_on_one_sm() -> None:
    # 133 * 128 rows in 128 x 128 tiles: 133 tiles on 132 SMs, the last wave fills 1 SM
    c = tile_waves(133 * 128, 128, 128, 128, 132)
    assert (c.tiles, c.waves, c.last_wave_sms) == (133, 2, 1)
    # exactly 132 tiles: one full wave
    assert tile_waves(132 * 128, 128, 128, 128, 132).last_wave_sms == 132


def test_fewest_waves_win_even_with_256_row_tiles() -> None:
    # m 4096, n 1024: 128-row tiles need ceil(1024 / n_blk) <= 4, so n_blk 256 (illegal for the
    # 1D2D kernel: above 128 only 144 / 160 / 192); 256-row tiles with 128 columns give
    # 16 * 8 = 128 tiles, one wave: the only single-wave choice
    c = block_config(4096, 1024, 132)
    assert (c.block_m, c.block_n, c.tiles, c.waves, c.last_wave_sms) == (256, 128, 128, 1, 128)


def test_the_fullest_last_wave_wins() -> None:
    # m 2817, n 1024: 128 x 192 needs 23 * 6 = 138 tiles (two waves); 256 x 96 gives
    # 12 * 11 = 132, one full wave
    c = block_config(2817, 1024, 132)
    assert (c.block_m, c.block_n, c.tiles, c.last_wave_sms) == (256, 96, 132, 132)
    # m 2816: 22 * 6 = 132 with 128 x 192 fills the wave first (128-row blocks come first)
    c = block_config(2816, 1024, 132)
    assert (c.block_m, c.block_n, c.tiles) == (128, 192, 132)
    # m 768, n 4096: 6 * ceil(4096 / 192) = 132 beats 256 x 96's 3 * 43 = 129
    assert (block_config(768, 4096, 132).block_m, block_config(768, 4096, 132).block_n) == (
        128,
        192,
    )


def test_a_small_problem_spreads_over_the_most_sms() -> None:
    # m 64, n 128 is one wave whatever the blocks; the fullest "last wave" is the most tiles:
    # 64 x 16 gives 8 (64 x 32 gives 4)
    c = block_config(64, 128, 132)
    assert (c.block_m, c.block_n, c.tiles) == (64, 16, 8)


def test_small_m_adds_16_and_32_row_blocks_and_ties_keep_the_smaller() -> None:
    # m 16, n 4096: 32 columns give 128 tiles in one wave at every block_m; the tie keeps the
    # smaller block_m of the same block_n, 16 (a candidate for m <= 16 only)
    assert (block_config(16, 4096, 132).block_m, block_config(16, 4096, 132).block_n) == (16, 32)
    # m 17: 16 is no candidate, 32 is (m <= 32)
    assert block_config(17, 4096, 132).block_m == 32


def test_single_wave_config_is_none_past_one_wave() -> None:
    assert single_wave_config(4096, 1024, 132) == (256, 128)
    # m 4097: no single-wave choice (17 blocks of 256 rows need n_blk >= 147, illegal there)
    assert single_wave_config(4097, 1024, 132) is None


def _fit(**changes: object) -> GemmFit:
    base = GemmFit(
        dtype="fp8_block",
        weight_bytes=1.0,
        act_bytes=1.0,
        out_bytes=2.0,
        floor_s=1e-6,
        mem_eff=0.9,
        mem_latency_s=2e-6,
        l2_gain=0.0,
        l2_frac=0.2,
        kloop_s=2e-9,
        kloop_sat=2000.0,
        compute_eff=0.7,
        k_half=100.0,
        wave_waste=0.5,
        overlap=2.0,
        row_s=0.0,
        buckets=((math.inf, 128, 128, 1.0),),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _gpu():
    return dataclasses.replace(h100(), num_sms=132, l2_cache_bytes=50 * 2**20)


def test_a_single_wave_shape_takes_its_configurations_scale() -> None:
    gpu, plain = _gpu(), _fit()
    scaled = _fit(single_wave_scales=((256, 128, 2.0), (128, 192, 1.5)))
    # m 4096, n 1024 runs 256 x 128 in one wave: twice the plain formula
    assert gemm_time_s(scaled, gpu, 4096, 1024, 4096) == pytest.approx(
        2.0 * gemm_time_s(plain, gpu, 4096, 1024, 4096), rel=1e-12
    )
    # m 4097 needs two waves: no scale; m 2817 runs 256 x 96, a configuration without one
    for m in (4097, 2817):
        assert gemm_time_s(scaled, gpu, m, 1024, 4096) == gemm_time_s(plain, gpu, m, 1024, 4096)


def test_the_scale_spares_the_quantisation_kernel() -> None:
    from servesim.perf.opmodels.gemm import QuantFit, sm_residency

    quant = QuantFit(floor_s=2.5e-6, k_s=2e-10, bytes_per_elem=3.0, row_s=1e-9, overlap=2.0)
    gpu = _gpu()
    plain, scaled = _fit(quant=quant), _fit(quant=quant, single_wave_scales=((256, 128, 2.0),))
    q = quant.time_s(4096, 4096, gpu.hbm_bandwidth_bytes_per_s, sm_residency(gpu), 50 * 2**20)
    gemm_part = gemm_time_s(plain, gpu, 4096, 1024, 4096) - q
    assert gemm_time_s(scaled, gpu, 4096, 1024, 4096) == pytest.approx(2 * gemm_part + q)


def test_array_twin_and_json_carry_the_scales() -> None:
    gpu = _gpu()
    fit = _fit(single_wave_scales=((256, 128, 2.0), (128, 192, 1.5), (256, 96, 1.8)))
    m = np.array([768.0, 2816.0, 2817.0, 4096.0, 4097.0, 100.0])
    n = np.array([4096.0, 1024.0, 1024.0, 1024.0, 1024.0, 4096.0])
    k = np.full(m.shape, 4096.0)
    arr = fitting.formula_array(fit, gpu, m, n, k)
    one = [gemm_time_s(fit, gpu, a, int(b), int(c)) for a, b, c in zip(m, n, k, strict=True)]
    np.testing.assert_allclose(arr, one, rtol=1e-12)
    back = GemmFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    assert back.single_wave_scales == fit.single_wave_scales
    # a fit stored before the field reads as no scales
    old = {key: v for key, v in fit.to_dict().items() if key != "single_wave_scales"}
    assert GemmFit.from_dict(old).single_wave_scales == ()


def test_the_fit_measures_one_scale_per_single_wave_configuration() -> None:
    # rows made by a fit whose 256 x 128 single-wave shapes take 2.2x: the fit finds 2.2 there
    # and 1.0 for the other configurations it sees in at least MIN_SHAPES weight shapes
    gpu, true = _gpu(), _fit(single_wave_scales=((256, 128, 2.2),))
    shapes = [(n, k) for n in (1024, 2048) for k in (1024, 2048, 4096, 8192)]
    ms = (3584, 3840, 4096, 4097, 8192, 2817, 3072)
    rows = {key: [] for key in ("m", "n", "k", "latency_s", "shape_key")}
    for n, k in shapes:
        for m in ms:
            for key, v in zip(
                rows, (m, n, k, gemm_time_s(true, gpu, m, n, k), (n, k)), strict=True
            ):
                rows[key].append(v)
    arrays = {key: np.array(v, dtype=float) for key, v in rows.items() if key != "shape_key"}
    arrays["shape_key"] = np.empty(len(rows["m"]), dtype=object)
    arrays["shape_key"][:] = rows["shape_key"]
    scales = dict(((a, b), s) for a, b, s in fitting.single_wave_scales(_fit(), arrays, gpu))
    assert scales[(256, 128)] == pytest.approx(2.2, rel=1e-9)
    assert all(s == pytest.approx(1.0) for key, s in scales.items() if key != (256, 128))


def test_residual_by_config_groups_by_the_heuristic() -> None:
    m = np.array([4096.0, 3841.0, 8192.0])
    n = np.array([1024.0, 1024.0, 1024.0])
    out = residual_by_config(m, n, np.log(np.array([2.0, 2.0, 1.0])), 132)
    assert out[(256, 128, 1)] == (2, pytest.approx(math.log(2.0)))
    assert sum(count for count, _ in out.values()) == 3
