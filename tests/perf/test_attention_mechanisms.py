"""Attention mechanisms added for issue 9: the fp8 KV stream's SM-side cap (and the fit that
shares the HBM efficiency between KV dtypes), and the per-kernel head_dim grid points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servesim.perf.fitting import attention as fitting
from servesim.perf.fitting import heldout
from servesim.perf.opmodels.attention_fit import DecodeAttentionFit, decode_attention_s
from servesim.specs.catalog.gpus import get_gpu

H100 = get_gpu("h100-sxm")
BW = 3.35e12
CAPPED = DecodeAttentionFit(
    floor_s=12e-6,
    hbm_eff=0.9,
    l2_bw_per_sm=50e9,
    l2_frac=0.8,
    row_flops=2000.0,
    kv_row_flops=0.0,
    overlap_p=4.0,
    kv_bw_per_sm=15e9,
)


def _cold(fit: DecodeAttentionFit, batch: int, context: int, kv_bytes: float) -> float:
    return decode_attention_s(
        fit,
        H100,
        num_seqs=batch,
        context_tokens=batch * context,
        num_q_heads=32,
        num_kv_heads=8,
        head_dim=128,
        kv_bytes=kv_bytes,
        window=None,
        l2_warm=False,
    )


def test_fp8_kv_stream_is_capped_on_the_sms() -> None:
    # 64 x 16384 tokens x 2 (K, V) x 8 heads x 128 x 1 byte = 2.147 GB
    kv = 64 * 16384 * 2 * 8 * 128 * 1.0
    # HBM would allow 0.9 x 3.35 = 3.015 TB/s; 132 SMs x 15 GB/s = 1.98 TB/s binds
    assert _cold(CAPPED, 64, 16384, 1.0) == pytest.approx(12e-6 + kv / 1.98e12, rel=1e-3)
    uncapped = DecodeAttentionFit(**{**CAPPED.to_dict(), "kv_bw_per_sm": 0.0})
    assert _cold(uncapped, 64, 16384, 1.0) == pytest.approx(12e-6 + kv / (BW * 0.9), rel=1e-3)
    # a cap above the HBM rate changes nothing: 132 x 30 GB/s = 3.96 TB/s > 3.015 TB/s
    loose = DecodeAttentionFit(**{**CAPPED.to_dict(), "kv_bw_per_sm": 30e9})
    assert _cold(loose, 64, 16384, 1.0) == pytest.approx(_cold(uncapped, 64, 16384, 1.0))


def test_fits_without_the_cap_read_as_uncapped() -> None:
    old = {k: v for k, v in CAPPED.to_dict().items() if k != "kv_bw_per_sm"}
    assert DecodeAttentionFit.from_dict(old).kv_bw_per_sm == 0.0
    assert DecodeAttentionFit.from_dict(CAPPED.to_dict()) == CAPPED


def test_unpack_decode_holds_the_shared_hbm_efficiency() -> None:
    x = np.zeros(7)
    free = fitting.unpack_decode(x)
    assert free["hbm_eff"] == pytest.approx(0.3 + 0.7 / (1.0 + math.exp(-1.0)))
    assert free["kv_bw_per_sm"] == 0.0
    held = fitting.unpack_decode(x, hbm_eff=0.8)
    assert held["hbm_eff"] == 0.8 and held["kv_bw_per_sm"] == pytest.approx(20e9)


def _decode_rows(kv_bytes: float, n: int = 240) -> heldout.Rows:
    rng = np.random.default_rng(3 if kv_bytes == 1.0 else 4)
    seqs = rng.choice([1.0, 8.0, 64.0, 256.0], n)
    context = rng.choice([128.0, 2048.0, 16384.0, 65536.0], n)
    heads = rng.choice([(32.0, 8.0), (64.0, 8.0), (16.0, 2.0)], n)
    keys = [f"{int(q)}/{int(k)}/128" for q, k in heads]
    return {
        "num_seqs": seqs,
        "context_tokens": seqs * context,
        "num_tokens": np.zeros(n),
        "cached_tokens": np.zeros(n),
        "num_pairs": np.zeros(n),
        "num_q_heads": heads[:, 0],
        "num_kv_heads": heads[:, 1],
        "head_dim": np.full(n, 128.0),
        "window": np.zeros(n),
        "kv_bytes": np.full(n, kv_bytes),
        "dtype": np.full(n, "fp8" if kv_bytes == 1.0 else "bf16", dtype=object),
        "op": np.full(n, "decode_attention", dtype=object),
        "regime": np.full(n, "-", dtype=object),
        "shape_key": np.asarray(keys, dtype=object),
        "latency_s": np.ones(n),
    }


def test_fp8_decode_fit_shares_the_bf16_hbm_efficiency_and_fits_the_cap() -> None:
    truth = {**CAPPED.to_dict(), "overlap_p": 2.0}
    bf16, fp8 = _decode_rows(2.0), _decode_rows(1.0)
    bf16["latency_s"] = fitting.decode_np({**truth, "kv_bw_per_sm": 0.0}, H100, bf16)
    fp8["latency_s"] = fitting.decode_np(truth, H100, fp8)
    params = fitting.fit(heldout.concat([bf16, fp8]), H100)["decode"]
    assert params["bf16"]["kv_bw_per_sm"] == 0.0
    assert params["fp8"]["hbm_eff"] == params["bf16"]["hbm_eff"]
    assert params["bf16"]["hbm_eff"] == pytest.approx(0.9, rel=0.03)
    # the fp8 stream rate is the cap: 15 GB/s per SM, recovered from the large-KV rows
    assert params["fp8"]["kv_bw_per_sm"] == pytest.approx(15e9, rel=0.03)


def test_vectorised_twin_applies_the_cap_like_the_runtime() -> None:
    rows = _decode_rows(1.0)
    runtime = fitting.predict({"prefill": {}, "decode": {"fp8": CAPPED.to_dict()}}, H100, rows)
    twin = fitting.decode_np(CAPPED.to_dict(), H100, rows)
    np.testing.assert_allclose(runtime, twin, rtol=1e-9)


def test_head_dim_axis_has_a_point_per_fa3_kernel() -> None:
    axis = fitting._HEAD_DIM_AXIS
    assert [round(2**a) for a in axis] == [64, 96, 128, 192, 256, 512]
    assert fitting._PREFILL_AXES[0] == axis and fitting._DECODE_AXES[0] == axis
    # a kernel 1.25x slower at head_dim 192 than at 128 and 256 (SGLang fa3 decode): the grid
    # keeps the step, which interpolating between 128 and 256 could not give
    dims = np.repeat([64.0, 128.0, 192.0, 256.0], 50)
    ratio = np.where(dims == 192.0, math.log(1.25), 0.0)
    grid = heldout.fit_log_grid(dims[:, None], ratio, (axis,), ridge=0.03)
    assert grid.factor(192.0) == pytest.approx(1.25, rel=0.02)
    assert grid.factor(128.0) == pytest.approx(1.0, abs=0.02)
    assert grid.factor(256.0) == pytest.approx(1.0, abs=0.02)
    old = heldout.fit_log_grid(dims[:, None], ratio, ((6.0, 7.0, 8.0, 9.0),), ridge=0.03)
    assert old.factor(192.0) < 1.15


def _windowed(
    fit: DecodeAttentionFit, q_heads: int, kv_heads: int, window: int | None, seqs: int = 256
) -> float:
    return decode_attention_s(
        fit,
        H100,
        num_seqs=seqs,
        context_tokens=seqs * 100,
        num_q_heads=q_heads,
        num_kv_heads=kv_heads,
        head_dim=128,
        kv_bytes=2.0,
        window=window,
        l2_warm=False,
    )


def test_fa2_window_decode_reads_kv_per_query_head() -> None:
    fa2_dict = {**CAPPED.to_dict(), "kv_bw_per_sm": 0.0, "window_unpacks_gqa": True}
    fa2 = DecodeAttentionFit(**fa2_dict)
    packed = DecodeAttentionFit(**{**fa2.to_dict(), "window_unpacks_gqa": False})
    # with a window each of the 4 query heads of a KV head reads it: once from HBM (l2_warm
    # False: nothing left from an earlier step), 3 re-reads from L2, since one KV head over
    # the batch (13.1 MB) fits the usable 0.8 x 50 MiB of L2 (hit 1 / (1 + 0.3125^8))
    unique = 256 * 100 * 2 * 8 * 128 * 2.0  # 104.9 MB
    near = 1.0 / (1.0 + (unique / 8 / (0.8 * 50 * 2**20)) ** 8)
    kv_s = unique / (BW * 0.9) + 3 * unique * (near / (132 * 50e9) + (1 - near) / (BW * 0.9))
    rows_s = 256 * 128 * 32 * 2000.0 / 989.5e12
    expected = 12e-6 + ((kv_s**4 + rows_s**4) ** 0.25)
    assert _windowed(fa2, 32, 8, 128) == pytest.approx(expected, rel=1e-9)
    # more than the packed kernel (4x the rows' reads), less than MHA (4x the distinct bytes)
    assert _windowed(packed, 32, 8, 128) < _windowed(fa2, 32, 8, 128)
    assert _windowed(fa2, 32, 8, 128) < 0.7 * _windowed(packed, 32, 32, 128)
    # without a window FA2 packs the group: the flag changes nothing
    assert _windowed(fa2, 32, 8, None) == _windowed(packed, 32, 8, None)


def test_fa2_window_rereads_come_from_hbm_once_one_heads_pass_overflows_l2() -> None:
    fa2 = DecodeAttentionFit(
        **{**CAPPED.to_dict(), "kv_bw_per_sm": 0.0, "window_unpacks_gqa": True}
    )
    packed = DecodeAttentionFit(**{**fa2.to_dict(), "window_unpacks_gqa": False})
    # 2048 sequences: one KV head over the batch is 2048 x 100 x 2 x 128 x 2 = 104.9 MB, 2.5x
    # the usable L2 (hit 1 / (1 + 2.5^8) = 0.0007), so the 4 heads cost what MHA costs
    mha = _windowed(packed, 32, 32, 128, seqs=2048)
    assert _windowed(fa2, 32, 8, 128, seqs=2048) == pytest.approx(mha, rel=1e-3)


def test_window_unpacking_is_fa2s() -> None:
    from servesim.perf.opmodels.attention_fit import window_unpacks_gqa

    assert window_unpacks_gqa("ampere", False) and window_unpacks_gqa("ada", False)
    assert not window_unpacks_gqa("ada", True)  # fp8 KV on Ada runs FlashInfer
    assert not window_unpacks_gqa("hopper", False)  # FA3 packs under a window
    l40s = get_gpu("l40s")
    rows = _decode_rows(2.0)
    rows["kernel"] = np.full(rows["latency_s"].size, "vllm_flash_attn_fa2", dtype=object)
    assert fitting._unpacks_gqa(rows, l40s, "bf16")
    assert not fitting._unpacks_gqa(rows, H100, "bf16")
    rows["kernel"] = np.full(rows["latency_s"].size, "vllm_flashinfer_fidecode", dtype=object)
    assert not fitting._unpacks_gqa(rows, l40s, "bf16")


def test_vectorised_twin_unpacks_windowed_rows_like_the_runtime() -> None:
    fa2 = {**CAPPED.to_dict(), "kv_bw_per_sm": 0.0, "window_unpacks_gqa": True}
    rows = _decode_rows(2.0)
    rows["window"] = np.where(np.arange(rows["latency_s"].size) % 2 == 0, 128.0, 0.0)
    runtime = fitting.predict({"prefill": {}, "decode": {"bf16": fa2}}, H100, rows)
    np.testing.assert_allclose(runtime, fitting.decode_np(fa2, H100, rows), rtol=1e-9)


def test_fa2_mha_decode_streams_one_cta_per_sequence_and_head() -> None:
    fa2 = DecodeAttentionFit(
        **{**CAPPED.to_dict(), "kv_bw_per_sm": 0.0, "window_unpacks_gqa": True, "cta_bw": 22e9}
    )
    split = DecodeAttentionFit(**{**fa2.to_dict(), "cta_bw": 0.0})

    def one_seq(fit: DecodeAttentionFit, q_heads: int, kv_heads: int) -> float:
        return decode_attention_s(
            fit,
            H100,
            num_seqs=1,
            context_tokens=131072,
            num_q_heads=q_heads,
            num_kv_heads=kv_heads,
            head_dim=128,
            kv_bytes=2.0,
            window=None,
            l2_warm=False,
        )

    # MHA 8/8: no split-KV, 8 CTAs x 22 GB/s = 176 GB/s for 131072 x 2 x 8 x 128 x 2 = 537 MB
    kv = 131072 * 2 * 8 * 128 * 2.0
    rows_s = 128 * 8 * 2000.0 / 989.5e12
    expected = 12e-6 + ((kv / 176e9) ** 4 + rows_s**4) ** 0.25
    assert one_seq(fa2, 8, 8) == pytest.approx(expected, rel=1e-9)
    assert one_seq(fa2, 8, 8) > 15 * one_seq(split, 8, 8)  # 3.015 TB/s against 176 GB/s
    # GQA 32/8 without a window runs the packed, split path: the CTA rate does not apply
    assert one_seq(fa2, 32, 8) == one_seq(split, 32, 8)


def test_vectorised_twin_caps_unsplit_rows_like_the_runtime() -> None:
    fa2 = {**CAPPED.to_dict(), "kv_bw_per_sm": 0.0, "window_unpacks_gqa": True, "cta_bw": 5e9}
    rows = _decode_rows(2.0)
    n = rows["latency_s"].size
    rows["window"] = np.where(np.arange(n) % 3 == 0, 128.0, 0.0)
    rows["num_kv_heads"] = np.where(np.arange(n) % 3 == 1, rows["num_q_heads"], 8.0)
    runtime = fitting.predict({"prefill": {}, "decode": {"bf16": fa2}}, H100, rows)
    np.testing.assert_allclose(runtime, fitting.decode_np(fa2, H100, rows), rtol=1e-9)
    assert not np.allclose(runtime, fitting.decode_np({**fa2, "cta_bw": 0.0}, H100, rows))


def test_fa2_decode_fit_recovers_the_unsplit_cta_rate() -> None:
    l40s = get_gpu("l40s")
    rows = _decode_rows(2.0, 400)
    n = rows["latency_s"].size
    # half the rows MHA (no split-KV on FA2), half GQA (split)
    rows["num_kv_heads"] = np.where(np.arange(n) % 2 == 0, rows["num_q_heads"], 8.0)
    truth = {
        **CAPPED.to_dict(),
        "kv_bw_per_sm": 0.0,
        "hbm_eff": 0.8,
        "l2_bw_per_sm": 1.2e10,
        "kv_row_flops": 5e4,
        "window_unpacks_gqa": True,
        "cta_bw": 22e9,
    }
    rows["latency_s"] = fitting.decode_np(truth, l40s, rows)
    out = fitting._fit_one(rows, l40s, False, None, True)
    assert out["cta_bw"] == pytest.approx(22e9, rel=1e-3)
    assert out["hbm_eff"] == pytest.approx(0.8, rel=1e-3)
    # a kernel that splits (FA3, FlashInfer) has no such term
    assert fitting._fit_one(rows, l40s, False, None, False)["cta_bw"] == 0.0
