"""The GEMM opmodel (cost model v2): its mechanisms, its JSON, its fit to the kernel tables."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import pytest
from factories import a100, h100

from servesim.core.errors import ConfigError
from servesim.perf.fitting import gemm as fitting
from servesim.perf.opmodels.gemm import GemmFit, QuantFit, _FastGrid, gemm_time_s
from servesim.perf.opmodels.grid import LogGrid
from servesim.specs.dtypes import DType

QUANT = QuantFit(floor_s=2.5e-6, k_s=2e-10, bytes_per_elem=3.0, row_s=1e-9, overlap=2.0)


def _fit(**changes: object) -> GemmFit:
    base = GemmFit(
        dtype="bf16",
        weight_bytes=2.0,
        act_bytes=2.0,
        out_bytes=2.0,
        floor_s=1e-6,
        mem_eff=0.9,
        mem_latency_s=2e-6,
        l2_gain=0.0,
        l2_frac=0.2,
        kloop_s=2e-9,
        kloop_sat=2000.0,
        compute_eff=0.8,
        k_half=100.0,
        wave_waste=0.0,
        overlap=2.0,
        row_s=0.0,
        buckets=((64.0, 64, 64, 1.0), (math.inf, 128, 128, 1.0)),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _gpu(**changes: object):
    figures = {"num_sms": 132, "l2_cache_bytes": 50 * 2**20, **changes}
    return dataclasses.replace(h100(), **figures)  # type: ignore[arg-type]


# ---- mechanisms -------------------------------------------------------------------------------
def test_no_tokens_cost_nothing() -> None:
    assert gemm_time_s(_fit(), _gpu(), 0, 4096, 4096) == 0.0


def test_one_token_is_memory_bound() -> None:
    fit, gpu = _fit(), _gpu()
    n = k = 8192
    t = gemm_time_s(fit, gpu, 1, n, k)
    memory = (k * n * 2 / gpu.hbm_bandwidth_bytes_per_s + fit.mem_latency_s) / fit.mem_eff
    assert memory < t - fit.floor_s < 1.05 * memory


def test_many_tokens_are_compute_bound() -> None:
    fit, gpu = _fit(), _gpu()
    m, n, k = 16384, 8192, 8192
    t = gemm_time_s(fit, gpu, m, n, k)
    peak = gpu.peak_flops_per_s[DType.BF16]
    compute = 2 * m * n * k * (1 + fit.k_half / k) / (peak * fit.compute_eff)
    assert compute < t < 1.05 * compute


def test_memory_and_compute_overlap_by_the_norm() -> None:
    gpu = _gpu()
    serial = gemm_time_s(_fit(overlap=1.0), gpu, 512, 8192, 8192)
    overlapped = gemm_time_s(_fit(overlap=2.0), gpu, 512, 8192, 8192)
    nearly_max = gemm_time_s(_fit(overlap=40.0), gpu, 512, 8192, 8192)
    assert serial > overlapped > nearly_max


def test_partial_last_wave_wastes_compute() -> None:
    # 4 SMs and a slow tensor core: 4 tiles are one wave, 6 tiles 1.5 waves of compute
    gpu = _gpu(num_sms=4, peak_flops_per_s={DType.BF16: 1e13})
    k = 65536
    one = gemm_time_s(_fit(overlap=40.0), gpu, 256, 256, k)
    stream_k = gemm_time_s(_fit(overlap=40.0, wave_waste=0.0), gpu, 384, 256, k)
    wasted = gemm_time_s(_fit(overlap=40.0, wave_waste=1.0), gpu, 384, 256, k)
    assert stream_k / one == pytest.approx(1.5, rel=0.02)
    assert wasted / one == pytest.approx(2.0, rel=0.02)


def test_tiles_follow_the_token_bucket() -> None:
    # padding to the tile: 65 tokens take a 128-row tile, 64 tokens a 64-row one
    gpu = _gpu(num_sms=4, peak_flops_per_s={DType.BF16: 1e13})
    fit = _fit(overlap=40.0)
    assert gemm_time_s(fit, gpu, 65, 4096, 8192) > 1.8 * gemm_time_s(fit, gpu, 64, 4096, 8192)


def test_thin_weights_pay_the_serial_k_loop() -> None:
    fit, gpu = _fit(overlap=1.0), _gpu()
    short = gemm_time_s(fit, gpu, 1, 32, 128)
    long = gemm_time_s(fit, gpu, 1, 32, 4096)
    assert long - short > 0.5 * fit.kloop_s * 4096 / (1 + 4096 / fit.kloop_sat)


def test_small_working_sets_replay_from_l2() -> None:
    gpu = _gpu()
    cold = gemm_time_s(_fit(l2_gain=0.0), gpu, 1, 2048, 2048)
    warm = gemm_time_s(_fit(l2_gain=1.0), gpu, 1, 2048, 2048)
    huge_cold = gemm_time_s(_fit(l2_gain=0.0), gpu, 1, 65536, 8192)
    huge_warm = gemm_time_s(_fit(l2_gain=1.0), gpu, 1, 65536, 8192)
    assert warm < 0.8 * cold
    assert huge_warm == pytest.approx(huge_cold, rel=1e-3)


def test_per_token_cost_adds() -> None:
    gpu = _gpu()
    base = gemm_time_s(_fit(), gpu, 1000, 1024, 1024)
    assert gemm_time_s(_fit(row_s=5e-9), gpu, 1000, 1024, 1024) == pytest.approx(base + 5e-6)


def test_fp8_runs_at_the_fp8_peak_plus_its_quantisation() -> None:
    gpu = _gpu()
    m, n, k = 16384, 8192, 8192
    bf16 = _fit()
    fp8 = _fit(dtype="fp8", weight_bytes=1.0, act_bytes=1.0)
    assert gemm_time_s(fp8, gpu, m, n, k) == pytest.approx(
        0.5 * gemm_time_s(bf16, gpu, m, n, k), rel=0.03
    )
    with_quant = dataclasses.replace(fp8, quant=QUANT)
    extra = gemm_time_s(with_quant, gpu, m, n, k) - gemm_time_s(fp8, gpu, m, n, k)
    assert extra == pytest.approx(QUANT.time_s(m, k, gpu.hbm_bandwidth_bytes_per_s))


def test_fp8_on_a_gpu_without_fp8_raises() -> None:
    with pytest.raises(ConfigError):
        gemm_time_s(_fit(dtype="fp8"), a100(), 16, 4096, 4096)


def test_eager_floor_is_recorded_not_charged() -> None:
    gpu = _gpu()
    plain = _fit(dtype="fp8_block", weight_bytes=1.0, act_bytes=1.0)
    eager = dataclasses.replace(plain, eager_floor_s=80e-6)
    assert gemm_time_s(eager, gpu, 1, 4096, 4096) == gemm_time_s(plain, gpu, 1, 4096, 4096)
    assert gemm_time_s(eager, gpu, 1, 4096, 4096) < 20e-6


def test_a_spec_without_sms_or_l2_borrows_the_fitted_gpus() -> None:
    fit = _fit(ref_num_sms=132, ref_l2_bytes=50 * 2**20, l2_gain=0.3, wave_waste=0.5)
    bare = _gpu(num_sms=0, l2_cache_bytes=0)
    for m, n, k in ((1, 2048, 2048), (5000, 4096, 4096)):
        assert gemm_time_s(fit, bare, m, n, k) == gemm_time_s(fit, _gpu(), m, n, k)


def test_grid_correction_multiplies() -> None:
    axes = ((0.0, 15.0), (5.0, 16.0), (5.0, 16.0))
    grid = LogGrid(axes=axes, values=(0.1,) * 8)
    gpu = _gpu()
    plain = gemm_time_s(_fit(), gpu, 100, 4096, 4096)
    assert gemm_time_s(_fit(correction=grid), gpu, 100, 4096, 4096) == pytest.approx(
        plain * math.exp(0.1)
    )


def test_fast_grid_equals_log_grid() -> None:
    rng = np.random.default_rng(3)
    axes = fitting.GRID_AXES
    size = math.prod(len(a) for a in axes)
    grid = LogGrid(axes=axes, values=tuple(rng.normal(0, 0.2, size)))
    fast = _FastGrid(grid)
    for m, n, k in zip(
        np.exp(rng.uniform(-1, 12, 300)),
        2.0 ** rng.uniform(3, 18, 300),
        2.0 ** rng.uniform(3, 18, 300),
        strict=True,
    ):
        assert fast.factor(m, n, k) == pytest.approx(grid.factor(m, n, k), rel=1e-12)


def test_array_twin_equals_runtime() -> None:
    gpu = _gpu()
    fit = _fit(
        dtype="fp8",
        weight_bytes=1.0,
        act_bytes=1.0,
        quant=dataclasses.replace(QUANT, spill_bytes=2.0, spill_k=8000.0),
        l2_gain=0.3,
        wave_waste=0.4,
        row_s=6e-9,
        buckets=(
            (16.0, 64, 64, 1.0),
            (64.0, 64, 64, 1.1),
            (256.0, 64, 128, 0.9),
            (math.inf, 256, 128, 1.0),
        ),
    )
    rng = np.random.default_rng(0)
    m = np.round(np.exp(rng.uniform(0, 10.4, 500)))
    n = 2.0 ** rng.integers(5, 17, 500)
    k = 2.0 ** rng.integers(5, 17, 500)
    arr = fitting.formula_array(fit, gpu, m, n, k)
    one = [gemm_time_s(fit, gpu, a, int(b), int(c)) for a, b, c in zip(m, n, k, strict=True)]
    np.testing.assert_allclose(arr, one, rtol=1e-12)


def test_json_round_trip() -> None:
    axes = fitting.GRID_AXES
    size = math.prod(len(a) for a in axes)
    grid = LogGrid(axes=axes, values=tuple(np.linspace(-0.2, 0.2, size)))
    fit = _fit(dtype="fp8", quant=QUANT, correction=grid, eager_floor_s=1e-5, notes="x")
    text = json.dumps(fit.to_dict())
    back = GemmFit.from_dict(json.loads(text))
    assert len(text) < 12_000  # a few KB per format
    assert back.buckets[-1][0] == math.inf and back.quant == QUANT
    gpu = _gpu()
    for m, n, k in ((1, 4096, 4096), (300, 1024, 8192), (9000, 14336, 4096)):
        assert gemm_time_s(back, gpu, m, n, k) == pytest.approx(
            gemm_time_s(fit, gpu, m, n, k), rel=1e-4
        )


def test_one_call_is_cheap() -> None:
    axes = fitting.GRID_AXES
    grid = LogGrid(axes=axes, values=(0.01,) * math.prod(len(a) for a in axes))
    fit, gpu = _fit(quant=QUANT, dtype="fp8", correction=grid), _gpu()
    calls = 20_000
    start = time.perf_counter()
    for i in range(calls):
        gemm_time_s(fit, gpu, 1.0 + i % 4000, 4096, 4096)
    per_call = (time.perf_counter() - start) / calls
    assert per_call < 25e-6  # ~4 us on a laptop core; generous for loaded CI machines


# ---- the measured tables -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def aic(shared_data):
    pytest.importorskip("pyarrow")
    pytest.importorskip("scipy")
    from servesim.perf.fitting.tables import aic_root

    root = aic_root(shared_data)
    if not (root / "h100_sxm" / "gemm").is_dir():
        pytest.skip("aiconfigurator gemm tables are absent")
    return root


@pytest.fixture(scope="module")
def h100_rows(aic):
    return fitting.load_rows(aic, "h100_sxm", "vllm", "0.24.0")


def _mape(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(pred / actual - 1)) * 100)


def test_rows_hold_labels_regimes_and_quantisation(h100_rows) -> None:
    rows = h100_rows
    gemm = rows["op"] == "gemm"
    assert set(rows["dtype"][gemm]) == {"bf16", "fp8", "fp8_block"}
    assert set(rows["regime"]) == {"m<=256", "m>256"}
    assert (rows["op"] == "quantize").sum() > 1000
    assert all(isinstance(key, tuple) and len(key) == 2 for key in rows["shape_key"][:50])
    assert np.all(rows["latency_s"] > 0) and np.all(rows["latency_s"] < 1.0)


def test_sglang_borrows_vllm_quantisation_tables(aic) -> None:
    # SGLang's quantize tables start at ~7.5 us, above its whole fp8 GEMM (~4.4 us)
    rows = fitting.load_rows(aic, "h100_sxm", "sglang", "0.5.14")
    quant = rows["op"] == "quantize"
    assert quant.any() and all(str(s).startswith("vllm") for s in rows["kernel"][quant])


@pytest.mark.slow
def test_bf16_fit_holds_on_unseen_shapes_and_on_h200(aic, h100_rows) -> None:
    from servesim.perf.fitting.heldout import holdout_folds, take
    from servesim.specs.catalog import get_gpu

    bf16 = take(h100_rows, h100_rows["dtype"] == "bf16")
    test = holdout_folds(list(bf16["shape_key"]), 4)[0]
    gpu = fitting.with_datasheet(get_gpu("h100-sxm"))
    params = fitting.fit(take(bf16, ~test), gpu)
    held = take(bf16, test)
    pred = fitting.predict(params, gpu, held)
    for regime in ("m<=256", "m>256"):
        sel = held["regime"] == regime
        assert _mape(pred[sel], held["latency_s"][sel]) < 8.0
        assert abs(np.median(pred[sel] / held["latency_s"][sel] - 1)) < 0.03
    # the same fit on the H200's data sheet (more bandwidth, same SMs and peak)
    h200 = fitting.load_rows(aic, "h200_sxm", "vllm", "0.24.0")
    h200 = take(h200, h200["dtype"] == "bf16")
    pred = fitting.predict(params, fitting.with_datasheet(get_gpu("h200")), h200)
    assert _mape(pred, h200["latency_s"]) < 10.0


@pytest.mark.slow
def test_fp8_paths_fit_and_the_eager_floor_stays_out(h100_rows) -> None:
    from servesim.perf.fitting.heldout import take
    from servesim.specs.catalog import get_gpu

    gpu = fitting.with_datasheet(get_gpu("h100-sxm"))
    rows = take(h100_rows, h100_rows["dtype"] != "bf16")
    params = fitting.fit(rows, gpu)
    assert set(params) == {"fp8", "fp8_block"}
    fp8, block = GemmFit.from_dict(params["fp8"]), GemmFit.from_dict(params["fp8_block"])
    assert fp8.quant is not None and 1e-6 < fp8.quant.floor_s < 4e-6
    pred = fitting.predict(params, gpu, rows)
    gemm = (rows["op"] == "gemm") & (rows["dtype"] == "fp8")
    assert _mape(pred[gemm], rows["latency_s"][gemm]) < 8.0
    scored = (rows["dtype"] == "fp8_block") & ~fitting.eager_mask(rows)
    assert scored.sum() > 2000
    assert _mape(pred[scored], rows["latency_s"][scored]) < 15.0
    # vLLM's fp8_block table is eager (floor ~60-90 us); a decode GEMM is a graph replay
    assert block.eager_floor_s > 30e-6
    decode = gemm_time_s(block, gpu, 1, 4096, 4096)
    assert decode < 25e-6
    assert decode == pytest.approx(gemm_time_s(fp8, gpu, 1, 4096, 4096), rel=0.5)
    for p in params.values():
        assert len(json.dumps(p)) < 12_000
        grid = p["correction"]
        assert grid is None or len(grid["values"]) <= 1500
