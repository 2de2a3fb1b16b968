"""MLA attention kernel model: latent-KV bytes and FLOPs by hand, the fit against the tables,
and held-out folds that hold out whole head counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from servesim.perf.calibration import CALIBRATION_PATH, load_calibration
from servesim.perf.fitting import mla as mla_fit
from servesim.perf.fitting.heldout import holdout_folds
from servesim.perf.opmodels.grid import LogGrid
from servesim.perf.opmodels.mla import (
    MLAFits,
    MLAPhaseFit,
    decode_bytes,
    decode_flops,
    mla_decode_s,
    prefill_flops,
)
from servesim.perf.shapes import LayerShapes, layer_shapes
from servesim.specs.catalog import get_gpu


def test_decode_reads_the_latent_once_per_token_for_all_heads() -> None:
    # 64 seqs x 4096 tokens, 16 heads, bf16 KV: latent 512 + 64 = 576 values per token
    # (not per head): 64*4096*576*2 = 301,989,888 B; queries + outputs 64*16*(576+512)*2
    # = 2,228,224 B
    assert decode_bytes(64, 64 * 4096, 16, 2.0, 512, 64) == 301_989_888 + 2_228_224
    # fp8 KV halves the latent bytes only
    assert decode_bytes(64, 64 * 4096, 16, 1.0, 512, 64) == 150_994_944 + 2_228_224
    # per token and head: 2 x 576 (QK^T over latent + rope) + 2 x 512 (PV over the latent)
    assert decode_flops(64 * 4096, 16, 512, 64) == 2 * 262_144 * 16 * 1088


def test_prefill_uses_decompressed_heads() -> None:
    # 1 seq of 1024 tokens, causal: 1024*1025/2 pairs; 2*(192 + 128) FLOPs per pair and head
    pairs = 1024 * 1025 / 2
    assert prefill_flops(pairs, 128, 192, 128) == 2 * pairs * 128 * 320


def test_decode_is_floor_plus_roofline_without_correction() -> None:
    gpu = get_gpu("h200-sxm")
    flat = MLAPhaseFit(10e-6, LogGrid(((0.0,), (0.0,), (0.0,)), (0.0,)))
    t = mla_decode_s(flat, gpu, num_seqs=64, context_tokens=64 * 4096, heads=16, kv_bytes=2.0)
    memory = (301_989_888 + 2_228_224) / gpu.hbm_bandwidth_bytes_per_s
    assert t == pytest.approx(10e-6 + memory)  # 16 heads: memory-bound on H200


def test_fits_key_by_kv_dtype() -> None:
    fit = {"floor_s": 1e-5, "grid": {"axes": [[0.0], [0.0], [0.0]], "values": [0.0]}}
    fits = MLAFits.from_dict({"decode_bf16": fit})
    assert fits.get("decode", 2.0) is not None
    assert fits.get("decode", 1.0) is None


def _rows(shared_data: Path) -> dict[str, np.ndarray]:
    rows = mla_fit.load_rows(
        shared_data / "profiling" / "aiconfigurator", "h200_sxm", "sglang", "0.5.14"
    )
    assert rows is not None
    return rows


def test_shipped_fit_reproduces_a_table_row(shared_data: Path) -> None:
    # SGLang 0.5.14 H200 generation_mla_perf: 128 heads, 256 seqs, step 8191 (8192 cached
    # tokens each), bf16 KV: 0.9948 ms
    source = load_calibration().kernel_stacks["sglang-0.5"]["h200"]["mla"]
    fit = MLAFits.from_dict(source).get("decode", 2.0)
    assert fit is not None
    gpu = get_gpu("h200-sxm")
    t = mla_decode_s(fit, gpu, num_seqs=256, context_tokens=256 * 8192, heads=128, kv_bytes=2.0)
    assert t == pytest.approx(0.9948e-3, rel=0.10)
    rows = _rows(shared_data)
    hit = (
        (rows["op"] == "mla_decode")
        & (rows["num_heads"] == 128)
        & (rows["num_seqs"] == 256)
        & (rows["tokens_per_seq"] == 8192)
        & (rows["dtype"] == "bf16")
    )
    assert rows["latency_s"][hit][0] == pytest.approx(0.9948e-3, rel=1e-3)


def test_heldout_folds_hold_out_whole_head_counts(shared_data: Path) -> None:
    rows = _rows(shared_data)
    heads = rows["num_heads"]
    folds = holdout_folds(list(rows["shape_key"]))
    assert len(folds) == 4
    for test in folds:
        assert not set(heads[test]) & set(heads[~test])
    assert sorted(int(h) for t in folds for h in set(heads[t])) == [1, 2, 4, 8, 16, 32, 64, 128]


def test_shipped_heldout_rows_meet_the_attention_target() -> None:
    document = json.loads(CALIBRATION_PATH.read_text(encoding="utf-8"))
    rows = [r for r in document["kernel_report"]["heldout"] if r.get("family") == "mla"]
    assert {(r["gpu"], r["op"], r["dtype"]) for r in rows} >= {
        (g, p, d)
        for g in ("h100", "h200")
        for p in ("mla_decode", "mla_prefill")
        for d in ("bf16", "fp8")
    }
    for r in rows:
        assert r["mape"] <= 10.0 and abs(r["median_signed"]) <= 5.0, r


def _deepseek_tp8() -> LayerShapes:
    from servesim.specs.catalog import resolve_model

    return layer_shapes(resolve_model("deepseek-v3"), 8)


def test_sglang_prices_mla_decode_from_its_fit_and_vllm_keeps_the_analytic_model() -> None:
    from servesim.perf import attention as analytic
    from servesim.perf.kernel_set import KernelSet
    from servesim.perf.types import BatchShape

    shapes = _deepseek_tp8()
    assert shapes.is_mla and shapes.num_q_heads == 16  # 128 heads / TP 8
    gpu = get_gpu("h200-sxm")
    calibration = load_calibration()
    batch = BatchShape(
        num_decode_seqs=32, decode_context_tokens=32 * 4096, max_decode_context_tokens=4096
    )
    fit = MLAFits.from_dict(calibration.kernel_stacks["sglang-0.5"]["h200"]["mla"])
    expected = mla_decode_s(
        fit.get("decode", 2.0), gpu, num_seqs=32, context_tokens=32 * 4096, heads=16, kv_bytes=2.0
    )
    sglang = KernelSet(calibration, "sglang-0.5", gpu).attention_s(shapes, batch, None, 2.0)[1]
    assert sglang.time_s == pytest.approx(expected)
    vllm = KernelSet(calibration, "vllm-0.24", gpu)
    args = (vllm.legacy.attention, None, 2.0, vllm.peak16, vllm.bw)
    assert vllm.attention_s(shapes, batch, None, 2.0)[1].time_s == pytest.approx(
        analytic.decode_attention(shapes, batch, *args).time_s
    )


def test_shipped_leave_one_gpu_out_between_hopper_gpus() -> None:
    # H100 <-> H200 with the fit unchanged (no MLA transfer rule): 8.1% / 7.3% MAPE as released,
    # +1 of slack for a refit
    document = json.loads(CALIBRATION_PATH.read_text(encoding="utf-8"))
    summary = document["kernel_report"]["leave_one_gpu_out_summary"]
    rows = {r["gpu"]: r for r in summary if r["part"] == "mla" and r["stack"] == "sglang-0.5"}
    assert rows["h100"]["source"] == "h200" and rows["h100"]["mape"] <= 9.1
    assert rows["h200"]["source"] == "h100" and rows["h200"]["mape"] <= 8.4
