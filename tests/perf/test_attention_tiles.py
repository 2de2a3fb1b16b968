"""Prefill tiles and CTA residency per kernel (``opmodels.attention_tiles``), the prefill model's
use of them, and the FA2 transfer rules (per-CTA cost in seconds, traffic per SM)."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.perf.fitting import attention as fitting
from servesim.perf.fitting.attention_np import causal_visits_np
from servesim.perf.opmodels import attention_tiles as tiles
from servesim.perf.opmodels.attention_fit import PrefillAttentionFit, prefill_attention_s
from servesim.perf.opmodels.transfer import adapt_params
from servesim.specs.catalog.gpus import get_gpu
from servesim.specs.dtypes import DType

A100, L40S, H100 = (get_gpu(n) for n in ("a100-80gb", "l40s", "h100-sxm"))


def test_fa2_tiles_and_residency_follow_the_shared_memory() -> None:
    # vLLM's paged FA2 split-KV kernel: 64 query rows, 256 / 128 / 64 keys by head_dim;
    # (64 + 2 x 128) x 128 x 2 B = 80 KB (+1 KB reserved): two fit A100's 164 KB, one L40S's 100
    assert tiles.prefill_tiles(A100, 128) == (64, 128, 2, 1)
    assert tiles.prefill_tiles(L40S, 128) == (64, 128, 1, 1)
    # head_dim 64: (64 + 512) x 64 x 2 = 72 KB -> 2 on A100; 256: (64 + 128) x 256 x 2 = 96 KB -> 1
    assert tiles.prefill_tiles(A100, 64) == (64, 256, 2, 1)
    assert tiles.prefill_tiles(A100, 256) == (64, 64, 1, 1)
    assert tiles.prefill_tiles(L40S, 192) == (64, 64, 1, 1)
    # FA3 on Hopper, paged KV without TMA (16-token pages): 128 x 128 for bf16, 128 x 160 for
    # fp8 at head_dim 128 (tile_size.h), one CTA per SM, the GQA group always packed (PackGQA)
    assert tiles.prefill_tiles(H100, 128, False, 8.0, 16.0) == (128, 128, 1, 8)
    assert tiles.prefill_tiles(H100, 128, True, 8.0, 16.0) == (128, 160, 1, 8)
    assert tiles.prefill_tiles(H100, 64, True, 1.0, 16.0) == (128, 128, 1, 1)
    assert tiles.prefill_tiles(H100, 256, True, 4.0, 16.0) == (128, 128, 1, 4)


def test_flashinfer_packs_the_gqa_group_into_the_query_tile() -> None:
    # fp8 KV on Ada: FlashInfer; 16 tokens x group 8 = 128 packed rows > 64 -> tile 128
    assert tiles.prefill_tiles(L40S, 128, True, 8.0, 16.0) == (128, 128, 1, 8)
    assert tiles.prefill_tiles(L40S, 128, True, 1.0, 16.0) == (16, 16, 1, 1)
    assert tiles.prefill_tiles(L40S, 128, True, 2.0, 16.0) == (64, 64, 1, 2)  # 32 rows
    assert tiles.flashinfer_tile_q(100.0, 256) == 64  # no 128-row tile at head_dim 256


def test_causal_visits_with_key_tiles_wider_than_query_tiles() -> None:
    # keys 2 x the rows: query tile j sees ceil(j / 2) key tiles: 1+1+2+2+3+3+4+4 = 20
    assert tiles.causal_tile_visits(8, 1, 2, None) == 20
    assert tiles.causal_tile_visits(7, 64, 128, None) == 16  # 1+1+2+2+3+3+4
    # at most 2 under a window: 1+1+2+2+2+2+2+2 = 14
    assert tiles.causal_tile_visits(8, 1, 2, 2) == 14
    assert tiles.causal_tile_visits(8, 1, 1, 3) == 6 + 5 * 3  # square tiles as before
    assert tiles.chain_key_tiles(7, 1, 2, None) == 4
    assert tiles.chain_key_tiles(7, 1, 2, 3) == 3


def test_causal_visits_with_fa3_fp8_tiles_not_a_whole_ratio() -> None:
    # 128 rows x 160 keys: tile j reaches token 128 j -> ceil(128 j / 160) key tiles:
    # 1, 2, 3, 4, 4 | 5, 6, 7, 8, 8
    assert tiles.causal_tile_visits(5, 128, 160, None) == 14
    assert tiles.causal_tile_visits(10, 128, 160, None) == 48
    assert tiles.causal_tile_visits(5, 128, 160, 3) == 1 + 2 + 3 + 3 + 3
    assert tiles.chain_key_tiles(5, 128, 160, None) == 4
    assert tiles.chain_key_tiles(10, 128, 160, 6) == 6
    # packed group of 8: tile j holds 16 tokens -> ceil(j / 10) key tiles of 160: 10 x 1 + 2 x 2
    assert tiles.causal_tile_visits(12, 128, 160 * 8, None) == 14
    # floor_sum(4, 3, 2, 1) = floor(1/3) + floor(3/3) + floor(5/3) + floor(7/3) = 0+1+1+2
    assert tiles.floor_sum(4, 3, 2, 1) == 4
    assert tiles.floor_sum(0, 5, 3, 2) == 0


def test_causal_visits_numpy_twin_matches_the_closed_form() -> None:
    q = np.array([0, 5, 10, 12, 7, 8], dtype=float)
    rows = np.array([128, 128, 128, 128, 64, 16], dtype=float)
    keys = np.array([160, 160, 160, 1280, 128, 128], dtype=float)
    full = np.ceil(q * rows / keys)
    window = np.array([full[0] + 1, 3, full[2] + 1, full[3] + 1, 2, full[5] + 1])
    got = causal_visits_np(q, rows, keys, window)
    want = [
        tiles.causal_tile_visits(int(a), int(b), int(c), None if w > f else int(w))
        for a, b, c, w, f in zip(q, rows, keys, window, full, strict=True)
    ]
    assert got.tolist() == want == [0, 12, 48, 14, 1 + 1 + 2 * 5, 8]


def _prefill(fit: PrefillAttentionFit, gpu, heads: int, kv_heads: int, isl: int, fp8: bool):
    return prefill_attention_s(
        fit,
        gpu,
        num_seqs=1 if not fp8 else 142,
        num_tokens=isl if not fp8 else 142 * isl,
        num_pairs=(isl * (isl + 1) / 2) * (1 if not fp8 else 142),
        cached_tokens=0,
        num_q_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=128,
        kv_bytes=1.0 if fp8 else 2.0,
        window=None,
    )


def test_two_resident_ctas_share_the_fixed_cost_bound_time() -> None:
    # A100, 1080 heads x one 64-row tile each, a per-CTA cost of 1 ms: the CTAs' serial time
    # (1 ms + half a tile visit each) runs two at a time on each of 108 SMs
    fit = PrefillAttentionFit(
        floor_s=0.0, mma_eff=1.0, fix_tiles=0.0, fix_s=1e-3, mem_eff=1.0, overlap_p=8.0
    )
    tile_s = 4 * 64 * 128 * 128 * 108 / 312e12  # one 64 x 128 visit at the SM's peak
    expected = 1080 * (1e-3 + 0.5 * tile_s) / 2 / 108
    got = _prefill(fit, A100, 1080, 1080, 64, fp8=False)
    assert got == pytest.approx(expected, rel=1e-6)


def test_flashinfer_prices_one_cta_per_kv_head() -> None:
    # L40S fp8 KV, 142 sequences x 16 tokens, 8 query heads on 1 KV head: one packed
    # 128-row CTA per sequence (not 8): time = the per-CTA cost + 1/8 of a 128 x 128 visit
    fit = PrefillAttentionFit(
        floor_s=0.0, mma_eff=1.0, fix_tiles=0.0, fix_s=1e-3, mem_eff=1.0, overlap_p=8.0
    )
    tile_s = 4 * 128 * 128 * 128 * 142 / L40S.peak_flops(DType.BF16)
    got = _prefill(fit, L40S, 8, 1, 16, fp8=True)
    assert got == pytest.approx(1e-3 + 0.125 * tile_s, rel=1e-6)


def _rows(kv_bytes: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 64
    seqs = rng.integers(1, 64, n).astype(float)
    isl = rng.choice([1.0, 16.0, 100.0, 700.0, 4096.0], n)
    heads = rng.choice([8.0, 32.0, 64.0], n)
    group = rng.choice([1.0, 4.0, 8.0], n)
    window = np.where(np.arange(n) % 3 == 0, 1024.0, 0.0)
    pairs = seqs * np.where(
        window > 0,
        np.minimum(isl, window) * (np.minimum(isl, window) + 1) / 2
        + np.maximum(isl - window, 0) * window,
        isl * (isl + 1) / 2,
    )
    return {
        "latency_s": np.ones(n),
        "op": np.full(n, "prefill_attention", dtype=object),
        "num_seqs": seqs,
        "num_tokens": seqs * isl,
        "num_pairs": pairs,
        "cached_tokens": np.zeros(n),
        "context_tokens": np.zeros(n),
        "num_q_heads": heads,
        "num_kv_heads": heads / group,
        "head_dim": rng.choice([64.0, 128.0, 256.0], n),
        "kv_bytes": np.full(n, kv_bytes),
        "window": window,
    }


@pytest.mark.parametrize(("gpu", "kv_bytes"), [(A100, 2.0), (L40S, 2.0), (L40S, 1.0), (H100, 1.0)])
def test_vectorised_prefill_twin_agrees_with_the_runtime(gpu, kv_bytes: float) -> None:
    params = {"floor_s": 8e-6, "mma_eff": 0.5, "fix_tiles": 0.2, "fix_s": 3e-6}
    params |= {"mem_eff": 0.6, "overlap_p": 1.5}
    rows = _rows(kv_bytes)
    label = "fp8" if kv_bytes == 1.0 else "bf16"
    runtime = fitting.predict({"prefill": {label: params}, "decode": {}}, gpu, rows)
    np.testing.assert_allclose(runtime, fitting.prefill_np(params, gpu, rows), rtol=1e-9)


def test_fa2_transfer_keeps_the_cta_cost_and_the_traffic_rate_per_sm() -> None:
    fa2 = {"floor_s": 10e-6, "mma_eff": 0.6, "fix_tiles": 0.0, "fix_s": 3.2e-6}
    fa2 |= {"mem_eff": 0.3, "overlap_p": 1.3}
    out = adapt_params("attention", {"prefill": {"bf16": fa2}}, A100, L40S)["prefill"]["bf16"]
    assert out["fix_s"] == 3.2e-6  # memory round trips: a time, not clock cycles
    # 0.3 x 2039 GB/s over 108 SMs, on 142 SMs: 0.3 x 2039 x 142 / 108 = 804 GB/s of 864
    assert out["mem_eff"] == pytest.approx(0.3 * 2039 / 864 * 142 / 108)
    assert out["floor_s"] == pytest.approx(10e-6 * 1410 / 2520)  # launch floor in cycles


def test_fa2_fit_holds_the_cta_cost_in_seconds_and_the_traffic_as_a_bound() -> None:
    x = np.zeros(5)
    fa2 = fitting.unpack_prefill(x, fa2=True)
    assert fa2["fix_tiles"] == 0.0 and fa2["fix_s"] == pytest.approx(4e-6)
    assert fa2["overlap_p"] == 8.0  # the CTAs' own loads are in their serial time
    fa3 = fitting.unpack_prefill(x)
    assert fa3["fix_tiles"] == pytest.approx(4.0) and fa3["fix_s"] == 0.0
    assert fa3["overlap_p"] == pytest.approx(4.5)  # fitted: 1 + 7 x sigmoid(0)
