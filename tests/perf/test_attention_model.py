"""The fitted attention opmodel: each mechanism against a hand computation, plus held-out error."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.core.paths import shared_data_dir
from servesim.perf.fitting import attention as fitting
from servesim.perf.fitting import heldout
from servesim.perf.fitting.tables import aic_root
from servesim.perf.opmodels.attention_fit import (
    TILE_M,
    TILE_N,
    AttentionFits,
    DecodeAttentionFit,
    PrefillAttentionFit,
    causal_tile_visits,
    decode_attention_s,
    prefill_attention_s,
)
from servesim.specs.catalog.gpus import get_gpu

H100 = get_gpu("h100-sxm")
PEAK = 989.5e12
BW = 3.35e12
DECODE = DecodeAttentionFit(
    floor_s=12e-6,
    hbm_eff=0.9,
    l2_bw_per_sm=50e9,
    l2_frac=0.8,
    row_flops=2000.0,
    kv_row_flops=0.0,
    overlap_p=4.0,
)
PREFILL = PrefillAttentionFit(floor_s=12e-6, mma_eff=0.7, fix_tiles=2.0, mem_eff=0.5, overlap_p=4.0)


def _decode(batch: int, context: int, kv_bytes: float = 2.0, **kw: object) -> float:
    args = dict(num_q_heads=32, num_kv_heads=8, head_dim=128, kv_bytes=kv_bytes, window=None)
    args.update(kw)
    return decode_attention_s(DECODE, H100, num_seqs=batch, context_tokens=batch * context, **args)


def _prefill(batch: int, isl: int, **kw: object) -> float:
    args = dict(num_q_heads=32, num_kv_heads=8, head_dim=128, kv_bytes=2.0, window=None)
    args.update(kw)
    pairs = batch * isl * (isl + 1) / 2
    return prefill_attention_s(
        PREFILL,
        H100,
        num_seqs=batch,
        num_tokens=batch * isl,
        num_pairs=pairs,
        cached_tokens=0,
        **args,
    )


def test_decode_floor_at_small_batch() -> None:
    # one sequence, 16 tokens: 64 KB of KV and 4096 row elements; the launch floor is all
    assert _decode(1, 16) == pytest.approx(12e-6, rel=0.01)


def test_decode_streams_large_kv_at_hbm_efficiency() -> None:
    batch, context = 64, 16384
    kv = batch * context * 2 * 8 * 128 * 2.0  # 4.3 GB, far beyond L2
    stream_s = kv / (BW * 0.9)
    assert _decode(batch, context) == pytest.approx(12e-6 + stream_s, rel=0.01)
    # no fixed per-sequence context charge: twice the context is twice the stream
    assert _decode(batch, 2 * context) - 12e-6 == pytest.approx(2 * stream_s, rel=0.01)


def test_decode_fp8_halves_the_stream_and_window_caps_context() -> None:
    bf16 = _decode(64, 16384) - 12e-6
    assert _decode(64, 16384, kv_bytes=1.0) - 12e-6 == pytest.approx(bf16 / 2, rel=0.02)
    assert _decode(64, 65536, window=16384) == pytest.approx(_decode(64, 16384), rel=1e-9)


def test_decode_small_kv_reads_l2_only_when_warm() -> None:
    batch, context = 8, 512  # 16.8 MB: inside the 0.8 x 50 MB resident share
    kv = batch * context * 2 * 8 * 128 * 2.0
    warm = _decode(batch, context)
    cold = _decode(batch, context, l2_warm=False)
    rows_s = 8 * 32 * 128 * 2000 / PEAK
    assert cold - 12e-6 == pytest.approx(_pn(kv / (BW * 0.9), rows_s), rel=0.01)
    assert warm < cold
    assert warm - 12e-6 == pytest.approx(_pn(kv / (50e9 * 132), rows_s), rel=0.02)


def _pn(a: float, b: float, p: float = 4.0) -> float:
    return (a**p + b**p) ** (1 / p)


def test_decode_row_cost_dominates_large_batch_short_context() -> None:
    rows_s = 512 * 32 * 128 * 2000 / PEAK
    assert _decode(512, 2, l2_warm=False) == pytest.approx(12e-6 + rows_s, rel=0.01)


def test_causal_tile_visits() -> None:
    assert causal_tile_visits(8, None) == 36  # 1 + 2 + ... + 8
    assert causal_tile_visits(8, 3) == 6 + 5 * 3  # tiles past the window see 3 key tiles
    assert causal_tile_visits(2, 3) == 3


def test_prefill_long_sequence_is_tiled_mma_with_fixed_cta_cost() -> None:
    batch, isl = 4, 8192
    tiles = isl // TILE_M
    work = batch * 32 * (tiles * (tiles + 1) / 2 + tiles * 2.0)  # visits + fixed cost
    tile_s = 4 * TILE_M * TILE_N * 128 * 132 / (PEAK * 0.7)
    compute_s = tile_s * work / 132
    mem_s = (4 * batch * isl * 32 * 128 + batch * isl * 2 * 8 * 128 * 2.0) / (BW * 0.5)
    assert _prefill(batch, isl) == pytest.approx(12e-6 + _pn(compute_s, mem_s), rel=1e-6)
    # efficiency grows with length: fixed cost per CTA amortised over more key tiles
    flops = lambda b, n: 4 * b * 32 * 128 * n * (n + 1) / 2  # noqa: E731
    assert flops(4, 8192) / _prefill(4, 8192) > 1.5 * flops(4, 1024) / _prefill(4, 1024)


def test_prefill_few_ctas_hit_the_critical_path() -> None:
    # 1 sequence x 1 head x 16 query tiles = 16 CTAs on 132 SMs: the last tile's chain bounds it
    isl = 16 * TILE_M
    tile_s = 4 * TILE_M * TILE_N * 128 * 132 / (PEAK * 0.7)
    chain_s = tile_s * (2.0 + 16)
    mem_s = (4 * isl * 128 + isl * 2 * 128 * 2.0) / (BW * 0.5)
    got = _prefill(1, isl, num_q_heads=1, num_kv_heads=1)
    assert got == pytest.approx(12e-6 + _pn(chain_s, mem_s), rel=1e-6)


def test_fits_round_trip_and_dtype_fallback() -> None:
    fits = AttentionFits(prefill={"bf16": PREFILL}, decode={"bf16": DECODE, "fp8": DECODE})
    again = AttentionFits.from_dict(fits.to_dict())
    assert again.to_dict() == fits.to_dict()
    assert again.prefill_for(1.0) == PREFILL  # no fp8 prefill fit: bf16 one


def _synthetic_rows() -> heldout.Rows:
    rng = np.random.default_rng(7)
    n = 200
    seqs = rng.integers(1, 64, n).astype(float)
    chunk = rng.integers(1, 5000, n).astype(float)
    cached = rng.integers(0, 3, n) * rng.integers(0, 4000, n).astype(float)
    window = rng.choice([0.0, 128.0, 1024.0], n)
    pairs = seqs * (chunk * cached / seqs + chunk * (chunk + 1) / 2)
    return {
        "num_seqs": seqs,
        "num_tokens": seqs * chunk,
        "cached_tokens": seqs * cached,
        "num_pairs": pairs,
        "context_tokens": seqs * rng.integers(1, 100000, n),
        "num_q_heads": rng.choice([8.0, 32.0], n),
        "num_kv_heads": rng.choice([1.0, 8.0], n),
        "head_dim": rng.choice([64.0, 128.0, 256.0], n),
        "window": window,
        "kv_bytes": rng.choice([1.0, 2.0], n),
        "latency_s": np.ones(n),
        "op": rng.choice(["prefill_attention", "decode_attention"], n).astype(object),
    }


def test_vectorised_twins_match_runtime() -> None:
    rows = _synthetic_rows()
    params = {
        "prefill": {"bf16": PREFILL.to_dict(), "fp8": PREFILL.to_dict()},
        "decode": {"bf16": DECODE.to_dict(), "fp8": DECODE.to_dict()},
    }
    runtime = fitting.predict(params, H100, rows)
    twin = np.where(
        rows["op"] == "prefill_attention",
        fitting.prefill_np(PREFILL.to_dict(), H100, rows),
        fitting.decode_np(DECODE.to_dict(), H100, rows),
    )
    np.testing.assert_allclose(runtime, twin, rtol=1e-9)


def _h100_rows() -> heldout.Rows:
    data = shared_data_dir()
    if data is None or not aic_root(data).is_dir():
        pytest.skip("shared aiconfigurator tables absent (needs /work/shared/data)")
    rows = fitting.load_rows(aic_root(data), "h100_sxm", "vllm", "0.24.0")
    assert rows is not None
    return rows


@pytest.mark.slow
def test_heldout_error_on_h100_full_attention_bf16() -> None:
    rows = _h100_rows()
    keep = (rows["dtype"] == "bf16") & (rows["window"] == 0)
    rows = heldout.take(rows, keep)
    test = heldout.holdout_folds(list(rows["shape_key"]), 4)[1]
    params = fitting.fit(heldout.take(rows, ~test), H100)
    scored = heldout.take(rows, test & (np.arange(test.size) % 3 == 0))
    pred = fitting.predict(params, H100, scored)
    for op, limit in (("prefill_attention", 12.0), ("decode_attention", 15.0)):
        mask = scored["op"] == op
        stats = heldout.error_stats(pred[mask], scored["latency_s"][mask])
        assert stats.mape < limit, (op, stats)
        assert abs(stats.median_signed) < 5.0, (op, stats)


@pytest.mark.slow
def test_fit_is_deterministic() -> None:
    rows = _h100_rows()
    part = heldout.take(rows, (rows["dtype"] == "fp8") & (rows["num_kv_heads"] == 8))
    assert fitting.fit(part, H100) == fitting.fit(part, H100)
