"""Tuned fused-MoE config files and the default tiles (``opmodels.moe_configs``): which rows and
run-time calls pay the default tiles' operand traffic, and the stand-in rate a vLLM fit carries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from servesim.perf.fitting import moe
from servesim.perf.opmodels.moe_configs import (
    SGLANG_TRITON,
    old_vllm_defaults,
    runs_default_tiles,
    vllm_tuned,
)
from servesim.perf.opmodels.moe_layer import moe_layer_s
from tests.perf.factories import toy_gpu, traffic_only_moe_fit

GPU = toy_gpu()
VLLM_OLD = "vllm_fused_moe"
FIT = traffic_only_moe_fit()
# 64 tokens over 8 local experts -> 64 x 64 tiles; 512 pairs, 64 per expert -> 512 rows
SHAPE = dict(num_tokens=64, hidden=128, inter=64, topk=8, num_experts=8, ep=1)
LOAD = dict(assignments=512.0, experts_touched=8.0, padded={16: 512.0, 64: 512.0}, max_pairs=64.0)
# per K element 64 x 2 + 64 x 2 B; 8 M tiles; gate-up 2 N tiles x K 128, down 2 x K 64
TRAFFIC_S = 512 / 64 * 256 * (256 + 128) / 8e12


def test_tuned_files_looked_up_per_gpu() -> None:
    # Mixtral 8x7B at TP 2 (width 7168) has an A100 file, at TP 1 (14336) none
    assert vllm_tuned("a100-80gb", "bf16", 8, 7168) is True
    assert vllm_tuned("a100-80gb", "bf16", 8.0, 14336.0) is False
    # Qwen3-30B-A3B (128 experts, width 768): an H100 file, no A100 one
    assert vllm_tuned("h100-sxm", "bf16", 128, 768) is True
    assert vllm_tuned("a100-80gb", "bf16", 128, 768) is False
    # a GPU nobody looked up: unknown
    assert vllm_tuned("h200-sxm", "bf16", 8, 7168) is None


def test_vllm_new_defaults_start_after_0_14() -> None:
    assert old_vllm_defaults("0.14.0")
    assert not old_vllm_defaults("0.22.0")
    assert not old_vllm_defaults("0.24.0")
    assert not old_vllm_defaults(None)  # the run time's stack (vllm-0.24)


def test_which_kernels_run_the_default_tiles() -> None:
    # SGLang's Triton kernel: wherever SGLang ships no tuned file (its default is vLLM's old
    # one): Mixtral at TP 2 has an H100 file (triton_3_3_1), at TP 1 none was found
    assert not runs_default_tiles(SGLANG_TRITON, "h100-sxm", "bf16", 8, 7168, "0.5.14")
    assert runs_default_tiles(SGLANG_TRITON, "h100-sxm", "bf16", 8, 14336, "0.5.14")
    assert not runs_default_tiles(SGLANG_TRITON, "h200-sxm", "bf16", 8, 14336, "0.5.14")
    # block-fp8 files are looked up under their own name (dtype=fp8_w8a8,block_shape=..): no
    # list, default tiles; a GPU without a list (L40S): default tiles, as before
    assert runs_default_tiles(SGLANG_TRITON, "h100-sxm", "fp8_block", 8, 7168, "0.5.14")
    assert runs_default_tiles(SGLANG_TRITON, "l40s", "bf16", 8, 7168, "0.5.14")
    # vLLM 0.14 on A100: only the shapes without a file
    assert runs_default_tiles(VLLM_OLD, "a100-80gb", "bf16", 8, 14336, "0.14.0")
    assert not runs_default_tiles(VLLM_OLD, "a100-80gb", "bf16", 8, 7168, "0.14.0")
    # vLLM 0.22 / 0.24 and the run time: new defaults, no file needed
    assert not runs_default_tiles(VLLM_OLD, "a100-80gb", "bf16", 8, 14336, "0.22.0")
    assert not runs_default_tiles(VLLM_OLD, "a100-80gb", "bf16", 8, 14336)
    # an old vLLM on a GPU nobody looked up: priced tuned; Marlin never runs them
    assert not runs_default_tiles(VLLM_OLD, "l40s", "bf16", 8, 14336, "0.14.0")
    assert not runs_default_tiles("sglang_marlin_moe", "h100-sxm", "int4", 8, 14336, "0.5.14")


def test_run_time_charges_the_traffic_to_sglang_not_to_vllm() -> None:
    sglang = moe_layer_s(replace(FIT, kernel=SGLANG_TRITON), GPU, **SHAPE, **LOAD)
    assert sglang == pytest.approx(30e-6 + TRAFFIC_S, rel=1e-6)
    # the same layer where SGLang ships a tuned file for (8 local experts, width 7168) on H100
    h100 = replace(GPU, name="h100-sxm")
    tuned = moe_layer_s(
        replace(FIT, kernel=SGLANG_TRITON), h100, **{**SHAPE, "inter": 7168}, **LOAD
    )
    untuned = moe_layer_s(
        replace(FIT, kernel=SGLANG_TRITON), GPU, **{**SHAPE, "inter": 7168}, **LOAD
    )
    assert tuned == pytest.approx(30e-6, rel=1e-6)
    assert untuned > tuned
    # a vLLM fit that carries the old defaults' rate for older tables: vllm-0.24 runs the new
    # defaults, so no traffic term at run time
    vllm = moe_layer_s(replace(FIT, kernel=VLLM_OLD), GPU, **SHAPE, **LOAD)
    assert vllm == pytest.approx(30e-6, rel=1e-6)


def _rows(default_tiles: float) -> dict[str, np.ndarray]:
    one = np.ones(1)
    return {
        "latency_s": one,
        "dtype": np.array(["bf16"], dtype=object),
        "num_tokens": 64 * one,
        "hidden": 128 * one,
        "inter": 64 * one,
        "topk": 8 * one,
        "num_experts": 8 * one,
        "ep": one,
        "num_matrices": 3 * one,
        "assignments": 512 * one,
        "experts_touched": 8 * one,
        "max_expert": 64 * one,
        "padded_16": 512 * one,
        "padded_64": 512 * one,
        "default_tiles": default_tiles * one,
    }


def test_fit_mirror_charges_the_traffic_only_to_flagged_rows() -> None:
    params = {"bf16": replace(FIT, kernel=VLLM_OLD).to_dict()}
    assert moe.predict(params, GPU, _rows(1.0))[0] == pytest.approx(30e-6 + TRAFFIC_S, rel=1e-6)
    assert moe.predict(params, GPU, _rows(0.0))[0] == pytest.approx(30e-6, rel=1e-6)


def test_vllm_fit_takes_the_stand_in_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    donor = replace(FIT, kernel=SGLANG_TRITON, traffic_eff=4.5, kloop_s=3e-7, overlap_p=1.5)
    monkeypatch.setattr(moe, "_stand_in_tile_fit", lambda name: donor)
    bare = replace(FIT, traffic_eff=0.0)
    fits = {
        "bf16": replace(bare, kernel=VLLM_OLD),
        "int4": replace(bare, kernel="vllm_marlin_int4_moe"),
    }
    out = moe._with_old_default_rate(fits, GPU)
    assert out["bf16"].traffic_eff == 4.5
    # the default tiles' K loop and the overlap they were fitted in come with their traffic
    assert (out["bf16"].kloop_s, out["bf16"].tiles_overlap_p) == (3e-7, 1.5)
    assert out["bf16"].overlap_p == FIT.overlap_p  # the tuned kernels' own overlap stays
    assert out["int4"].traffic_eff == 0.0
    assert out["int4"].kloop_s == 0.0
    # a fit that learnt its own rate (A100 vLLM 0.14) keeps it; SGLang's is its own
    own = {"bf16": replace(FIT, kernel=VLLM_OLD, traffic_eff=2.0)}
    assert moe._with_old_default_rate(own, GPU)["bf16"].traffic_eff == 2.0
    sglang = {"bf16": replace(bare, kernel=SGLANG_TRITON)}
    assert moe._with_old_default_rate(sglang, GPU)["bf16"].traffic_eff == 0.0


def test_a100_rows_flag_the_shapes_without_a_file() -> None:
    from servesim.core.paths import shared_data_dir
    from servesim.perf.fitting.tables import aic_root

    data = shared_data_dir()
    if data is None:
        pytest.skip("shared data (../shared/data) not found")
    rows = moe.load_rows(aic_root(data), "a100_sxm", "vllm", "0.14.0")
    local = rows["num_experts"] / rows["ep"]
    tuned = (local == 8) & (rows["inter"] == 7168)
    untuned = (local == 8) & (rows["inter"] == 14336)
    assert tuned.any() and untuned.any()
    assert (rows["default_tiles"][tuned] == 0.0).all()
    assert (rows["default_tiles"][untuned] == 1.0).all()
    h100 = moe.load_rows(aic_root(data), "h100_sxm", "vllm", "0.24.0")
    assert not h100["default_tiles"].any()  # vLLM 0.24: new defaults everywhere
