"""Collectives opmodel: hand-computed regimes, transfer rules, the fit, held-out error on tables."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from servesim.core.paths import shared_data_dir
from servesim.perf.fitting import collectives as fitting
from servesim.perf.fitting.heldout import crossval_predictions, error_stats
from servesim.perf.fitting.tables import aic_root
from servesim.perf.opmodels.collectives import (
    CollectiveFit,
    Segment,
    collective_s,
    group_collective_s,
    volume_factor,
)
from servesim.specs.catalog.gpus import get_gpu
from servesim.specs.gpu import LinkSpec

H100 = get_gpu("h100-sxm")


def _gpu(bandwidth_bytes_per_s: float, latency_s: float):
    return dataclasses.replace(
        H100, intra_node_link=LinkSpec("test", bandwidth_bytes_per_s, latency_s)
    )


def _fit(
    segments, edges=(), n=8, collective="all_reduce", ref_latency_s=3e-6, implementation="nccl"
):
    return CollectiveFit(
        collective,
        implementation,
        n,
        tuple(Segment(*s) for s in segments),
        tuple(edges),
        ref_latency_s,
    )


def test_volume_factors_follow_nccl_tests_bus_bandwidth():
    assert volume_factor("all_reduce", 8) == pytest.approx(1.75)
    assert volume_factor("all_gather", 4) == pytest.approx(0.75)
    assert volume_factor("all_to_all", 2) == pytest.approx(0.5)


def test_single_regime_is_alpha_plus_bus_bytes_over_busbw():
    gpu = _gpu(400e9, 3e-6)
    fit = _fit([(5e-6, 2.0)])  # bus bandwidth = 400 / 2 = 200 GB/s
    # 1 MB all-reduce over 8 GPUs: 1.75 MB on the bus at 200 GB/s = 8.75 us, + 5 us
    assert collective_s(fit, gpu, 1e6) == pytest.approx(5e-6 + 8.75e-6)
    assert collective_s(fit, gpu, 0.0) == 0.0


def test_nccl_takes_the_cheaper_regime_between_measured_sizes():
    gpu = _gpu(400e9, 3e-6)
    # LL-like line (5 us + 8x the link time) and Simple-like (15 us + 1x) cross where
    # 5e-6 + 1.75 b 8 / 400e9 = 15e-6 + 1.75 b / 400e9  ->  b = 10e-6 x 400e9 / (7 x 1.75)
    fit = _fit([(5e-6, 8.0), (15e-6, 1.0)], edges=[(1e5, 1e7)])
    cross = 10e-6 * 400e9 / (7 * 1.75)
    ll = 5e-6 + 1.75 * 1e5 * 8 / 400e9
    assert collective_s(fit, gpu, 1e5) == pytest.approx(ll)  # a measured size: its own regime
    below, above = 0.5 * cross, 2.0 * cross
    assert collective_s(fit, gpu, below) == pytest.approx(5e-6 + 1.75 * below * 8 / 400e9)
    assert collective_s(fit, gpu, above) == pytest.approx(15e-6 + 1.75 * above / 400e9)
    assert collective_s(fit, gpu, cross) == pytest.approx(15e-6 + 10e-6 / 7)  # both lines


def test_latency_floor_then_bandwidth_regime_and_log_blend_between_measured_sizes():
    gpu = _gpu(400e9, 3e-6)
    # custom all-reduce: fixed byte thresholds, unknown between measured sizes -> blend
    fit = _fit([(20e-6, 0.0), (1e-6, 2.0)], edges=[(1e6, 4e6)], implementation="custom_eager")
    assert collective_s(fit, gpu, 5e5) == pytest.approx(20e-6)  # eager host floor
    big = 1e-6 + 1.75 * 8e6 * 2.0 / 400e9
    assert collective_s(fit, gpu, 8e6) == pytest.approx(big)
    # geometric middle of the gap: geometric mean of both regimes
    lower, upper = 20e-6, 1e-6 + 1.75 * 2e6 * 2.0 / 400e9
    assert collective_s(fit, gpu, 2e6) == pytest.approx(math.sqrt(lower * upper))


def test_transfer_scales_bandwidth_with_link_and_alpha_with_link_latency():
    fit = _fit([(6e-6, 1.0)], ref_latency_s=3e-6)
    fast, slow = _gpu(450e9, 3e-6), _gpu(225e9, 6e-6)
    num_bytes = 64e6
    bw_fast = collective_s(fit, fast, num_bytes) - 6e-6
    assert collective_s(fit, slow, num_bytes) == pytest.approx(12e-6 + 2 * bw_fast)


def test_unmeasured_group_size_interpolates_log_time_in_log2_n():
    gpu = _gpu(400e9, 3e-6)
    fits = [_fit([(4e-6, 0.0)], n=4), _fit([(16e-6, 0.0)], n=8)]
    w = math.log2(6 / 4)
    expected = math.exp((1 - w) * math.log(4e-6) + w * math.log(16e-6))
    assert group_collective_s(fits, gpu, 6, 1e3) == pytest.approx(expected)
    assert group_collective_s(fits, gpu, 8, 1e3) == pytest.approx(16e-6)
    # beyond the range: nearest size, bandwidth term volume-rescaled
    bw_fits = [_fit([(0.0, 1.0)], n=8)]
    ratio = volume_factor("all_reduce", 16) / volume_factor("all_reduce", 8)
    assert group_collective_s(bw_fits, gpu, 16, 1e6) == pytest.approx(
        ratio * collective_s(bw_fits[0], gpu, 1e6)
    )


def test_round_trip_through_dict():
    fit = _fit([(20e-6, 0.0), (1e-6, 2.0)], edges=[(1e6, 4e6)])
    assert CollectiveFit.from_dict(json.loads(json.dumps(fit.to_dict()))) == fit


def _synthetic_rows(num_gpus: int = 4) -> dict[str, np.ndarray]:
    sizes = 2.0 ** np.arange(8, 30)
    bus = volume_factor("all_reduce", num_gpus) * sizes
    # one-shot regime (5 us + 100 GB/s) below 1 MB, NCCL-like (25 us + 300 GB/s) above
    t = np.where(sizes < 2**20, 5e-6 + bus / 100e9, 25e-6 + bus / 300e9)
    num = len(sizes)
    return {
        "latency_s": t,
        "shape_key": np.array([f"{int(s):013d}" for s in sizes], dtype=object),
        "op": np.array(["custom_all_reduce_graph"] * num, dtype=object),
        "dtype": np.array(["bf16"] * num, dtype=object),
        "regime": np.array([fitting.size_regime(s) for s in sizes], dtype=object),
        "num_bytes": sizes,
        "num_gpus": np.full(num, num_gpus),
        "collective": np.array(["all_reduce"] * num, dtype=object),
        "implementation": np.array(["custom_graph"] * num, dtype=object),
    }


def test_fit_recovers_two_regimes_and_is_deterministic():
    rows = _synthetic_rows()
    params = fitting.fit(rows, H100)
    (entry,) = params["fits"]
    assert entry["edges_bytes"] == [[2.0**19, 2.0**20]]
    (a1, r1), (a2, r2) = entry["segments"]
    link = H100.intra_node_link.bandwidth_bytes_per_s
    assert a1 == pytest.approx(5e-6, rel=1e-3) and r1 == pytest.approx(link / 100e9, rel=1e-3)
    assert a2 == pytest.approx(25e-6, rel=1e-3) and r2 == pytest.approx(link / 300e9, rel=1e-3)
    pred = fitting.predict(params, H100, rows)
    assert np.allclose(pred, rows["latency_s"], rtol=1e-3)
    assert json.dumps(params, sort_keys=True) == json.dumps(fitting.fit(rows, H100), sort_keys=True)


def _root():
    data = shared_data_dir()
    if data is None or not (aic_root(data) / "h100_sxm" / "comm").is_dir():
        pytest.skip("shared aiconfigurator comm tables absent (shared/data not found)")
    return aic_root(data)


@pytest.mark.parametrize(("framework", "version"), [("vllm", "0.24.0"), ("nccl", "2.29.2")])
def test_heldout_message_sizes_on_h100(framework, version):
    rows = fitting.load_rows(_root(), "h100_sxm", framework, version)
    assert rows is not None
    pred = crossval_predictions(fitting, rows, H100)
    stats = error_stats(pred, rows["latency_s"])
    assert stats.mape <= 8.0
    assert abs(stats.median_signed) <= 2.0


def test_h100_fit_transfers_to_h200():
    root = _root()
    src = fitting.load_rows(root, "h100_sxm", "vllm", "0.24.0")
    dst = fitting.load_rows(root, "h200_sxm", "vllm", "0.24.0")
    if dst is None:
        pytest.skip("H200 comm table absent")
    pred = fitting.predict(fitting.fit(src, H100), get_gpu("h200-sxm"), dst)
    assert error_stats(pred, dst["latency_s"]).mape <= 20.0


def test_int8_all_reduce_is_its_own_implementation_byte_only_collectives_are_not():
    # NCCL's NVLS (in-switch reduction) has no 8-bit types, and a reduction costs per element
    assert fitting.nccl_implementation("all_reduce", 1) == "nccl_int8"
    assert fitting.nccl_implementation("all_reduce", 2) == "nccl"
    assert fitting.nccl_implementation("all_gather", 1) == "nccl"
    assert fitting.nccl_implementation("all_to_all", 1) == "nccl"


def test_int8_nccl_fit_takes_the_cheaper_regime_like_nccl():
    gpu = _gpu(400e9, 3e-6)
    fit = _fit([(5e-6, 8.0), (15e-6, 1.0)], edges=[(1e5, 1e7)], implementation="nccl_int8")
    # above the lines' crossing (b = 10e-6 x 400e9 / (7 x 1.75) = 326.5 KB) the Simple line
    # prices it, not a log blend of the two
    assert collective_s(fit, gpu, 2e6) == pytest.approx(15e-6 + 1.75 * 2e6 / 400e9)


def test_int8_and_half_all_reduce_rows_are_fitted_apart_on_h100():
    rows = fitting.load_rows(_root(), "h100_sxm", "nccl", "2.29.2")
    keys = {(f["collective"], f["implementation"]) for f in fitting.fit(rows, H100)["fits"]}
    assert ("all_reduce", "nccl_int8") in keys and ("all_reduce", "nccl") in keys
    assert ("all_gather", "nccl_int8") not in keys
    # 8 GPUs, 512 MB: half runs NVLS (445 GB/s bus bandwidth), int8 the ring (351 GB/s)
    m = (rows["collective"] == "all_reduce") & (rows["num_gpus"] == 8)
    m &= rows["num_bytes"] == 512 * 1024**2
    half = rows["latency_s"][m & (rows["dtype"] == "half")][0]
    int8 = rows["latency_s"][m & (rows["dtype"] == "int8")][0]
    assert int8 / half == pytest.approx(445.0 / 351.0, rel=0.02)
