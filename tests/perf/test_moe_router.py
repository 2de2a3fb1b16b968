"""The MoE router's top-k as its own term (``opmodels.moe_router``): charged at every EP size at
run time, counted in a table row only where aiconfigurator's collector timed it
(``fitting.moe_collectors.router_timed``), fitted where a table tells it apart (SGLang: EP 1
against EP > 1) and set from the measured vLLM 0.24 - 0.22 difference elsewhere."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from servesim.perf.fitting import moe
from servesim.perf.fitting.moe_arrays import formula
from servesim.perf.fitting.moe_collectors import (
    VLLM_ROUTER_S,
    measured_router_s,
    router_timed,
)
from servesim.perf.opmodels.moe_layer import MoELayerFit, moe_layer_s
from servesim.perf.opmodels.moe_router import router_s
from servesim.specs.catalog import get_gpu
from servesim.specs.dtypes import DType
from tests.perf.factories import moe_fit, toy_gpu

GPU = toy_gpu({DType.BF16: 1e15})
# no streaming, weights or math worth a nanosecond: the time is fixed + router
BARE = moe_fit(fixed_s=20e-6, router_fixed_s=8e-6)
LAYER = dict(num_tokens=64, hidden=4096, inter=1024, topk=8, num_experts=128)


def test_router_cost_does_not_shrink_with_ep() -> None:
    # 64 tokens x top 8 = 512 pairs: EP 1 computes them all on 128 experts, EP 8 an even 64 on
    # 16; both ranks route the whole batch, so both pay 20 us fixed + 8 us router
    ep1 = moe_layer_s(BARE, GPU, ep=1, assignments=512.0, experts_touched=128.0, **LAYER)
    ep8 = moe_layer_s(BARE, GPU, ep=8, assignments=64.0, experts_touched=16.0, **LAYER)
    assert ep1 == pytest.approx(28e-6, abs=1e-9)
    assert ep8 == pytest.approx(28e-6, abs=1e-9)
    no_router = replace(BARE, router_fixed_s=0.0)
    ep8_bare = moe_layer_s(no_router, GPU, ep=8, assignments=64.0, experts_touched=16.0, **LAYER)
    assert ep8 - ep8_bare == pytest.approx(8e-6, rel=1e-9)
    assert router_s(8e-6, 0) == 0.0 and router_s(8e-6, 1) == 8e-6


def test_fit_counts_the_router_only_in_rows_that_timed_it() -> None:
    # two rows of one layer: the first timed the router (SGLang EP 1), the second not (EP 8's
    # precomputed top-k); the run-time function charges it in both
    rows = {
        "num_tokens": np.array([64.0, 64.0]),
        "hidden": np.full(2, 4096.0),
        "inter": np.full(2, 1024.0),
        "topk": np.full(2, 8.0),
        "num_experts": np.full(2, 128.0),
        "ep": np.array([1.0, 8.0]),
        "num_matrices": np.full(2, 3.0),
        "assignments": np.array([512.0, 64.0]),
        "experts_touched": np.array([128.0, 16.0]),
        "max_expert": np.array([4.0, 4.0]),
        "padded_16": np.array([2048.0, 256.0]),
        "router_timed": np.array([1.0, 0.0]),
    }
    times = formula(BARE, GPU, rows)
    assert times[0] == pytest.approx(28e-6, abs=1e-9)
    assert times[1] == pytest.approx(20e-6, abs=1e-9)
    del rows["router_timed"]  # rows without the column (the runtime mirror tests): timed
    assert formula(BARE, GPU, rows)[1] == pytest.approx(28e-6, abs=1e-9)


def test_router_timed_follows_each_collector() -> None:
    kernels = np.array(
        ["vllm_unquantizedfusedmoe_triton_tritonexperts", "vllm_fused_moe", "vllm_marlin_int4_moe"]
    )
    # vLLM 0.24 times FusedMoE.forward (router inside) at every EP; the older collector times
    # fused_experts on a precomputed top-k
    assert router_timed("vllm", kernels, np.array([8, 1, 1])).tolist() == [1.0, 0.0, 0.0]
    # SGLang runs select_experts inside the timed call at EP 1 only
    sglang = np.array(["sglang_fused_moe_triton"] * 3)
    assert router_timed("sglang", sglang, np.array([1, 2, 64])).tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="trtllm"):
        router_timed("trtllm", sglang, np.array([1, 1, 1]))


def test_measured_vllm_router_moves_with_the_sm_clock() -> None:
    vllm = np.array(["vllm_unquantizedfusedmoe_triton_tritonexperts"])
    # 8.2 us on H200 (1980 MHz); H100 the same clock; A100 1410 MHz: x 1980 / 1410
    assert measured_router_s(vllm, get_gpu("h100-sxm")) == pytest.approx(8.2e-6)
    assert measured_router_s(vllm, get_gpu("a100-80gb")) == pytest.approx(8.2e-6 * 1980 / 1410)
    # SGLang's tables tell it apart themselves (EP 1 against EP > 1): nothing set
    assert measured_router_s(np.array(["sglang_fused_moe_triton"]), get_gpu("h100-sxm")) == 0.0


def test_router_parameter_is_free_only_where_rows_disagree() -> None:
    rows = {"inter": np.full(3, 1024.0), "kernel": np.full(3, "sglang_fused_moe_triton")}
    mixed = moe._free_mask({**rows, "router_timed": np.array([1.0, 0.0, 0.0])})
    timed = moe._free_mask({**rows, "router_timed": np.ones(3)})
    assert mixed[12] and not timed[12]
    # pinned at its lower bound the parameter reads the base fit's value (vLLM's measured one)
    base = replace(BARE, router_fixed_s=8.2e-6)
    x = moe._x0_for({**rows, "router_timed": np.ones(3)})
    assert moe._unpack(x, base).router_fixed_s == 8.2e-6
    x[12] = np.log(5e-6)
    assert moe._unpack(x, base).router_fixed_s == pytest.approx(5e-6)


def test_router_round_trips_json_and_old_files_read_zero() -> None:
    data = BARE.to_dict()
    assert MoELayerFit.from_dict(data).router_fixed_s == 8e-6
    del data["router_fixed_s"]
    assert MoELayerFit.from_dict(data).router_fixed_s == 0.0


def _floor_s(rows: dict, bandwidth: float) -> float:
    """Median one-token bf16 time of the one-expert rows whose weights read in under 2 us."""
    read = rows["experts_touched"] * rows["num_matrices"] * rows["hidden"] * rows["inter"] * 2
    keep = (rows["dtype"] == "bf16") & (rows["num_tokens"] == 1) & (rows["experts_touched"] <= 1)
    keep &= read / bandwidth < 2e-6
    return float(np.median(rows["latency_s"][keep]))


def test_vllm_router_is_the_h200_collector_difference() -> None:
    from servesim.core.paths import shared_data_dir
    from servesim.perf.fitting.tables import aic_root

    data = shared_data_dir()
    if data is None:
        pytest.skip("shared data absent (../shared/data/profiling/aiconfigurator)")
    root = aic_root(data)
    bandwidth = get_gpu("h200-sxm").hbm_bandwidth_bytes_per_s
    timed = _floor_s(moe.load_rows(root, "h200_sxm", "vllm", "0.24.0"), bandwidth)
    untimed = _floor_s(moe.load_rows(root, "h200_sxm", "vllm", "0.22.0"), bandwidth)
    assert timed == pytest.approx(33.4e-6, abs=0.1e-6)
    assert untimed == pytest.approx(25.2e-6, abs=0.1e-6)
    assert timed - untimed == pytest.approx(VLLM_ROUTER_S, abs=0.15e-6)
