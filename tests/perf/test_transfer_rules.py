"""Cross-GPU transfer rules (``opmodels.transfer``): donors by trait, clock / SM / link rules,
the runtime borrowing through them, and W4A8 priced by its packed weights."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from servesim.core.errors import ConfigError
from servesim.perf.calibration import calibration_from_dict, load_calibration
from servesim.perf.kernel_set import KernelSet
from servesim.perf.kernel_shapes import GemmShape
from servesim.perf.opmodels.collectives import CollectiveFit, collective_s
from servesim.perf.opmodels.gemm import GemmFit
from servesim.perf.opmodels.transfer import (
    PCIE_HOST_RING_BUS_BYTES_PER_S,
    adapt_params,
    borrow,
    choose_donor,
    clock_ratio,
    host_ring_bus_bytes_per_s,
)
from servesim.perf.stack_resolve import resolve_family
from servesim.specs.catalog import get_gpu
from servesim.specs.cluster import NodeSpec, default_node, get_network, get_node_preset
from servesim.specs.dtypes import DType

H100, A100, L40S, H200 = (get_gpu(n) for n in ("h100-sxm", "a100-80gb", "l40s", "h200-sxm"))

_PREFILL = {"floor_s": 10e-6, "mma_eff": 0.6, "fix_tiles": 0.4, "mem_eff": 0.5, "overlap_p": 1.2}
_DECODE = {
    "floor_s": 12e-6,
    "hbm_eff": 0.85,
    "l2_bw_per_sm": 2e10,
    "l2_frac": 0.8,
    "row_flops": 1000.0,
    "kv_row_flops": 2e5,
    "overlap_p": 1.3,
}
_ATTENTION = {"prefill": {"bf16": _PREFILL}, "decode": {"bf16": _DECODE}}
_GEMM = {
    "dtype": "fp8",
    "weight_bytes": 1.0,
    "act_bytes": 1.0,
    "out_bytes": 2.0,
    "floor_s": 1e-6,
    "mem_eff": 1.0,
    "mem_latency_s": 0.0,
    "l2_gain": 0.0,
    "l2_frac": 0.2,
    "kloop_s": 0.0,
    "kloop_sat": 1000.0,
    "compute_eff": 0.5,
    "k_half": 0.0,
    "wave_waste": 0.0,
    "overlap": 1.0,
    "row_s": 2e-9,
    "buckets": [[None, 64, 128, 1.0]],
    "quant": None,
}


def _collectives(num_gpus: int) -> dict:
    fit = {
        "collective": "all_reduce",
        "implementation": "nccl",
        "num_gpus": num_gpus,
        "segments": [[6e-6, 30.0], [20e-6, 1.5]],
        "edges_bytes": [[6.4e4, 1.3e5]],
        "ref_link_latency_s": 3e-6,
    }
    return {"nccl": {"fits": [fit]}}


def test_clock_ratio_is_the_data_sheet_boost_clocks() -> None:
    assert clock_ratio(H100, A100) == pytest.approx(1980 / 1410)
    assert clock_ratio(H100, H200) == 1.0
    unknown = dataclasses.replace(H100, name="no-such-gpu")
    assert clock_ratio(H100, unknown) == 1.0


def test_gemm_fixed_costs_scale_with_clock_and_row_work_with_sms_times_clock() -> None:
    out = adapt_params("gemm", {"fp8": _GEMM}, H100, L40S)["fp8"]
    clock = 1980 / 2520
    assert out["floor_s"] == pytest.approx(1e-6 * clock)
    assert out["row_s"] == pytest.approx(2e-9 * clock * 132 / 142)
    assert out["compute_eff"] == 0.5 and _GEMM["floor_s"] == 1e-6  # input left untouched


def test_attention_floors_cta_cost_and_row_work_move_with_the_target() -> None:
    out = adapt_params("attention", _ATTENTION, H100, A100)
    clock = 1980 / 1410
    per_sm = (312e12 / 108) / (989.5e12 / 132)
    assert out["prefill"]["bf16"]["floor_s"] == pytest.approx(10e-6 * clock)
    assert out["prefill"]["bf16"]["fix_tiles"] == pytest.approx(0.4 * clock * per_sm)
    assert out["decode"]["bf16"]["floor_s"] == pytest.approx(12e-6 * clock)
    # per-row work runs on the SMs: SMs x clock ratio, re-expressed in target bf16 flops
    rows = clock * 132 / 108 * 312e12 / 989.5e12
    assert out["decode"]["bf16"]["row_flops"] == pytest.approx(1000.0 * rows)
    assert out["decode"]["bf16"]["hbm_eff"] == 0.85


def test_collective_protocol_regime_keeps_its_bus_bandwidth_on_pcie() -> None:
    out = adapt_params("collectives", _collectives(2), H100, L40S)["nccl"]["fits"][0]
    clock = 1980 / 2520
    ratio = L40S.intra_node_link.bandwidth_bytes_per_s / 450e9
    (a0, s0), (a1, s1) = out["segments"]
    assert a0 == pytest.approx(6e-6 * clock) and a1 == pytest.approx(20e-6 * clock)
    # small messages: the donor's absolute bus bandwidth (clock scaled), not 14x slower
    assert s0 == pytest.approx(max(30.0 * ratio * clock, 1.5))
    assert s1 == pytest.approx(1.5)  # bulk: the link at the donor's bulk efficiency


def test_pcie_groups_beyond_a_pair_are_capped_at_the_host_ring() -> None:
    out = adapt_params("collectives", _collectives(4), H100, L40S)["nccl"]["fits"][0]
    # four GPUs stay on one socket: the host path's 4.5 GB/s on L40S's 31.5 GB/s link, 7
    assert out["segments"][1][1] == pytest.approx(31.5e9 / PCIE_HOST_RING_BUS_BYTES_PER_S)
    assert out["segments"][1][1] == pytest.approx(7.0)
    from_pcie = adapt_params("collectives", _collectives(8), L40S, get_gpu("l4"))
    assert from_pcie["nccl"]["fits"][0]["segments"][1][1] == 1.5  # a PCIe donor's own ring
    same = adapt_params("collectives", _collectives(8), H100, H200)
    assert same == _collectives(8)  # same link and clock: nothing moves


def test_eight_pcie_gpus_cross_the_sockets_and_share_the_host_path() -> None:
    # the default PCIe server holds 4 GPUs per socket: 8 cross, the socket's 4 share 4.5 GB/s
    assert default_node(L40S).gpus_per_socket == 4
    assert host_ring_bus_bytes_per_s(4, 4) == pytest.approx(4.5e9)
    assert host_ring_bus_bytes_per_s(8, 4) == pytest.approx(1.125e9)
    assert host_ring_bus_bytes_per_s(8, None) == pytest.approx(4.5e9)  # one socket
    out = adapt_params("collectives", _collectives(8), H100, L40S)["nccl"]["fits"][0]
    # 31.5 GB/s link / 1.125 GB/s = 28 for the bulk regime and as the protocol regime's floor
    assert out["segments"][1][1] == pytest.approx(28.0)
    assert out["segments"][0][1] == pytest.approx(28.0)  # 30 x 31.5/450 x 0.786 = 1.65 < 28
    # a 256 MB all-reduce over 8 L40S: 2 x 7/8 x 256 MB / 1.125 GB/s = 398.2 ms, plus alpha
    # 20 us x 1980/2520 (clock) x 5/3 (PCIe 4 / NVLink link latency) = 26.2 us
    fit = CollectiveFit.from_dict(out)
    t = collective_s(fit, L40S, 256e6)
    alpha = 20e-6 * 1980 / 2520 * 5 / 3
    assert t == pytest.approx(alpha + 2 * 7 / 8 * 256e6 / 1.125e9, rel=1e-9)


def test_a_node_needs_a_positive_socket_size() -> None:
    with pytest.raises(ConfigError, match="gpus_per_socket"):
        NodeSpec(L40S, 8, "pcie", get_network("eth-100"), num_nics=1, gpus_per_socket=0)
    # NVLink presets name no socket split (their collectives never touch the host)
    assert get_node_preset("hgx-h100").gpus_per_socket is None
    assert default_node(H100).gpus_per_socket is None


def test_host_ring_constant_is_the_v100_pcie_measurement() -> None:
    data = json.loads(Path(load_calibration().path).read_text())
    rows = [
        c
        for c in data["collectives"]
        if (c["gpu"], c["topology"], c["collective"], c["num_gpus"])
        == ("v100", "pcie", "all_reduce", 4)
    ]
    if not rows:
        pytest.skip("the shipped calibration has no V100 PCIe all-reduce fit")
    algbw = max(b for _, b in rows[0]["lines"])
    assert algbw * 2 * 3 / 4 == pytest.approx(PCIE_HOST_RING_BUS_BYTES_PER_S, rel=0.05)


def test_donors_by_trait() -> None:
    pool = {"h100": H100, "a100": A100}
    assert choose_donor("prefill_attention", L40S, pool) == "a100"  # FlashAttention 2
    assert choose_donor("decode_attention", L40S, pool) == "h100"  # nearest rule
    assert choose_donor("gemm", L40S, pool) == "h100"
    assert choose_donor("collectives", L40S, pool) == "h100"  # no PCIe donor: nearest
    assert choose_donor("prefill_attention", H200, {"a100": A100}) == "a100"
    assert choose_donor("gemm", H200, {}) is None


def test_borrow_composes_attention_phases_from_two_donors() -> None:
    found = borrow("attention", L40S, {"h100": (H100, _ATTENTION), "a100": (A100, _ATTENTION)})
    assert found is not None
    assert found.donor == "a100+h100"
    assert found.donors == {"prefill": "a100", "decode": "h100"}
    expected = adapt_params("attention", _ATTENTION, A100, L40S)["prefill"]
    assert found.params["prefill"] == expected
    moe = borrow("moe", L40S, {"h100": (H100, {"x": 1.0})})
    assert moe is not None and moe.params == {"x": 1.0}  # MoE passes unchanged


def test_runtime_borrowing_uses_the_rules() -> None:
    def entry(gpu: object, **families: object) -> dict:
        return {
            "catalog_gpu": gpu.name,  # type: ignore[attr-defined]
            "architecture": gpu.architecture,  # type: ignore[attr-defined]
            "hbm_bytes_per_s": gpu.hbm_bandwidth_bytes_per_s,  # type: ignore[attr-defined]
            "sources": {},
            **families,
        }

    base = json.loads(Path(load_calibration().path).read_text())
    base["kernel_stacks"] = {
        "vllm-0.24": {
            "h100": entry(H100, attention=_ATTENTION, gemm={"fp8": _GEMM}),
            "a100": entry(A100, attention=_ATTENTION),
        }
    }
    cal = calibration_from_dict(base)
    found = resolve_family(cal, "vllm-0.24", L40S, "attention")
    assert found is not None and (found.gpu_key, found.how) == ("a100+h100", "borrowed")
    assert found.params["decode"] == adapt_params("attention", _ATTENTION, H100, L40S)["decode"]
    gemm = resolve_family(cal, "vllm-0.24", L40S, "gemm")
    assert gemm is not None
    assert gemm.params["fp8"]["floor_s"] == pytest.approx(1e-6 * 1980 / 2520)


def test_w4a8_reads_int4_weights_through_the_fp8_kernel() -> None:
    base = json.loads(Path(load_calibration().path).read_text())
    gpu = H100
    entry = {
        "catalog_gpu": gpu.name,
        "architecture": gpu.architecture,
        "hbm_bytes_per_s": gpu.hbm_bandwidth_bytes_per_s,
        "sources": {},
        "gemm": {"fp8": _GEMM},
    }
    base["kernel_stacks"] = {"vllm-0.24": {"h100": entry}}
    kernels = KernelSet(calibration_from_dict(base), "vllm-0.24", gpu)
    m, n, k = 1, 4096, 4096
    bw = gpu.hbm_bandwidth_bytes_per_s
    fp8 = kernels.gemm_s(GemmShape(m, n, k, "fp8", 1.0, 1.0), 0.0)
    w4a8 = kernels.gemm_s(GemmShape(m, n, k, "fp8", 0.515625, 1.0), 0.0)
    # one 64 x 128 tile row over n: 32 tiles on 132 SMs at half the fp8 peak
    waves = math.ceil(n / 128) / gpu.num_sms
    t_c = 2.0 * 64 * 128 * gpu.num_sms * waves * k / (gpu.peak_flops(DType.FP8) * 0.5)

    def hand(weight_bytes: float) -> float:
        t_mem = (k * n * weight_bytes + m * k * 1.0 + m * n * 2.0) / bw
        return 1e-6 + (t_c + t_mem) + 2e-9 * m

    assert fp8 == pytest.approx(hand(1.0))
    assert w4a8 == pytest.approx(hand(0.515625))
    assert GemmFit.from_dict(_GEMM).weight_bytes == 1.0  # the fp8 fit itself is unchanged


def test_leave_one_gpu_out_summary_scores_both_rules() -> None:
    """The stored LOGO summary: the old rule (nearest fit unchanged) beside the new one."""
    import numpy as np

    from servesim.perf.fitting.build import _Part, _transfer_rows

    flat = {
        "collective": "all_reduce",
        "implementation": "nccl",
        "num_gpus": 2,
        "segments": [[10e-6, 0.0]],
        "edges_bytes": [],
        "ref_link_latency_s": 3e-6,
    }
    stacks = {
        "vllm-0.24": {
            "h100": {"collectives": {"nccl": {"fits": [flat]}}},
            "a100": {"collectives": {"nccl": {"fits": [flat]}}},
        }
    }
    measured = 10e-6 * 1980 / 1410  # the same protocol, at the A100's clock
    rows = {
        "latency_s": np.array([measured, measured]),
        "num_bytes": np.array([1e3, 2e3]),
        "num_gpus": np.array([2, 2]),
        "collective": np.array(["all_reduce"] * 2, dtype=object),
        "implementation": np.array(["nccl"] * 2, dtype=object),
        "op": np.array(["nccl_all_reduce"] * 2, dtype=object),
        "dtype": np.array(["half"] * 2, dtype=object),
        "regime": np.array(["<64KB"] * 2, dtype=object),
        "shape_key": np.array(["1", "2"], dtype=object),
    }
    parts = {("vllm-0.24", "a100", "collectives"): [_Part("nccl", "nccl", "2", rows)]}
    gpu_map = {"h100_sxm": ("h100-sxm", "h100"), "a100_sxm": ("a100-80gb", "a100")}
    detail, summary = _transfer_rows(stacks, parts, gpu_map)
    assert len(summary) == 1 and detail[0]["source"] == "h100"
    row = summary[0]
    assert (row["gpu"], row["part"], row["source"], row["before_source"]) == (
        "a100",
        "collectives",
        "h100",
        "h100",
    )
    assert row["mape"] == pytest.approx(0.0, abs=0.01)
    assert row["before_mape"] == pytest.approx(100 * (1 - 1410 / 1980), abs=0.01)


def test_pcie_prices_a_custom_all_reduce_beyond_two_gpus_as_nccl() -> None:
    # vLLM disables its custom all-reduce above 2 PCIe-only GPUs and runs NCCL
    custom = [
        {
            "collective": "all_reduce",
            "implementation": impl,
            "num_gpus": n,
            "segments": [[4e-6, 2.0]],
            "edges_bytes": [],
            "ref_link_latency_s": 3e-6,
        }
        for impl in ("custom_graph", "custom_eager")
        for n in (2, 4)
    ]
    params = {"custom": {"fits": custom}, "nccl": _collectives(4)["nccl"]}
    out = adapt_params("collectives", params, H100, L40S)
    fits = {(f["implementation"], f["num_gpus"]): f for f in out["custom"]["fits"]}
    nccl = out["nccl"]["fits"][0]
    assert fits[("custom_graph", 4)]["segments"] == nccl["segments"]
    assert fits[("custom_graph", 4)]["edges_bytes"] == nccl["edges_bytes"]
    # two GPUs keep the custom kernel (P2P), eager keeps its host floor: 4 us x 1980/2520
    for key in (("custom_graph", 2), ("custom_eager", 4)):
        assert fits[key]["segments"][0][0] == pytest.approx(4e-6 * 1980 / 2520)
    on_nvlink = adapt_params("collectives", params, H100, A100)["custom"]["fits"]
    assert on_nvlink[1]["segments"] == [[4e-6 * 1980 / 1410, 2.0]]  # NVLink: custom kernel kept


def _all_reduce(impl: str, n: int, bulk: float) -> dict:
    return {
        "collective": "all_reduce",
        "implementation": impl,
        "num_gpus": n,
        "segments": [[6e-6, 30.0], [20e-6, bulk]],
        "edges_bytes": [[6.4e4, 1.3e5]],
        "ref_link_latency_s": 3e-6,
    }


def test_a_target_without_nvls_gets_the_donors_ring_bulk_regime() -> None:
    # 8 GPUs: half bulk at link/bus 1.0 (NVLS), int8 ring at 1.3 (30% slower: NVLS);
    # 4 GPUs: half 1.25 against int8 1.3 (4% < NVLS_MIN_GAIN 1.1): no NVLS, kept
    fits = [
        _all_reduce("nccl", 8, 1.0),
        _all_reduce("nccl_int8", 8, 1.3),
        _all_reduce("nccl", 4, 1.25),
        _all_reduce("nccl_int8", 4, 1.3),
    ]
    out = adapt_params("collectives", {"nccl": {"fits": fits}}, H100, A100)["nccl"]["fits"]
    clock = 1980 / 1410
    # bulk: the donor's efficiency on the A100 link (link ratio x clock = 0.94 < 1 keeps it)
    assert out[0]["segments"][1] == pytest.approx([20e-6 * clock, 1.3])
    assert out[2]["segments"][1] == pytest.approx([20e-6 * clock, 1.25])
    assert out[0]["segments"][0][0] == pytest.approx(6e-6 * clock)  # smaller regimes kept
    from servesim.perf.opmodels.transfer import has_nvls

    assert has_nvls(H100) and has_nvls(H200) and not has_nvls(A100) and not has_nvls(L40S)
    same = adapt_params("collectives", {"nccl": {"fits": fits}}, H100, H200)
    assert same["nccl"]["fits"][0]["segments"][1] == [20e-6, 1.0]  # NVLS on both: kept
