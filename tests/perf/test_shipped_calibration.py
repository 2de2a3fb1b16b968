"""The shipped calibration: every stack/GPU with tables is fitted, its stored held-out report meets
the bounds it was released with, and the plans the simulator builds are priced by it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servesim.perf.calibration import CALIBRATION_PATH, load_calibration
from servesim.perf.op_query import op_time_s
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.specs.dtypes import DType

DOCUMENT = json.loads(Path(CALIBRATION_PATH).read_text(encoding="utf-8"))
HELDOUT = DOCUMENT.get("kernel_report", {}).get("heldout", [])

# Released bounds on H100/H200 (MAPE %, |median signed| %) per family; the issue's targets are
# 10/5 (15/5 for MoE): the rows that miss them are listed in docs/cost-model.md.
_BOUNDS = {
    ("gemm", "bf16"): (8.0, 3.0),
    ("gemm", "fp8"): (9.5, 3.0),  # includes the activation-quantisation kernel's own rows
    # FA3's PackGQA (paged KV without TMA) moves vLLM's bf16 isl 513-4095 to -4.2 %
    ("attention", "bf16"): (9.5, 4.5),
    ("attention", "fp8"): (10.0, 3.5),
    ("collectives", "bf16"): (14.0, 5.0),
    ("collectives", "half"): (14.5, 5.0),
    ("collectives", "int8"): (10.0, 5.5),  # int8 all-reduce fitted apart (no NVLS for 8 bits)
    ("moe", "bf16"): (22.0, 5.0),
    ("moe", "fp8"): (23.0, 10.5),
}


def test_every_stack_and_gpu_with_tables_is_fitted() -> None:
    stacks = DOCUMENT["kernel_stacks"]
    for gpu in ("h100", "h200", "a100", "l40s"):
        entry = stacks["vllm-0.24"][gpu]
        assert {"gemm", "attention", "moe", "collectives"} <= set(entry), gpu
        assert entry["sources"]["gemm"].startswith("aiconfigurator")
    for gpu in ("h100", "h200"):
        assert {"gemm", "attention", "moe", "collectives"} <= set(stacks["sglang-0.5"][gpu])
    assert "h200" in DOCUMENT["power"]


@pytest.mark.parametrize(("family", "dtype"), sorted(_BOUNDS))
def test_stored_heldout_report_meets_its_bounds(family: str, dtype: str) -> None:
    max_mape, max_median = _BOUNDS[(family, dtype)]
    rows = [
        r
        for r in HELDOUT
        if r["family"] == family
        and r["dtype"] == dtype
        and r["gpu"] in ("h100", "h200")
        and "in-sample" not in r["regime"]
    ]
    assert rows, (family, dtype)
    for r in rows:
        assert r["mape"] <= max_mape and abs(r["median_signed"]) <= max_median, r
    # and better than the legacy model on the same rows, where it was scored (the legacy
    # H200 NCCL fits came from APEX+'s own H200 tables and stay competitive there)
    before = [r for r in rows if r.get("before_mape") is not None]
    assert sum(r["before_mape"] > r["mape"] for r in before) >= 0.75 * len(before)


def test_stored_vllm_mxfp4_moe_meets_the_issue_target() -> None:
    # matmul_ogs's one-CTA floor and its EP > 1 routing kernels (docs/cost-model.md, MoE layer):
    # <= 256 tokens balanced was 24.4 / 26.0 % before them
    rows = [
        r
        for r in HELDOUT
        if (r["family"], r["dtype"], r["stack"]) == ("moe", "mxfp4", "vllm-0.24")
        and r["gpu"] in ("h100", "h200")
    ]
    assert len(rows) == 8, rows
    for r in rows:
        assert r["mape"] <= 15.0 and abs(r["median_signed"]) <= 5.0, r


def test_fp8_gemm_is_not_twice_as_fast_as_bf16() -> None:
    # the measured mechanism: ~1.4x at large m on H100 (cutlass fp8 with its quantisation pass)
    shape = {"m": 4096, "n": 8192, "k": 8192}
    bf16 = op_time_s("h100-sxm", "gemm", dtype="bf16", **shape).time_s
    fp8 = op_time_s("h100-sxm", "gemm", dtype="fp8", **shape).time_s
    assert 1.2 < bf16 / fp8 < 1.7
    # and at one token the fp8 path's quantisation kernel makes it no faster than bf16 / 2
    small = {"m": 1, "n": 4096, "k": 4096}
    one_bf16 = op_time_s("h100-sxm", "gemm", dtype="bf16", **small).time_s
    one_fp8 = op_time_s("h100-sxm", "gemm", dtype="fp8", **small).time_s
    assert one_fp8 > 0.5 * one_bf16


def test_decode_attention_streams_large_kv_near_hbm_bandwidth() -> None:
    gpu = get_gpu("h100-sxm")
    result = op_time_s(gpu, "decode-attention", batch=64, context=8192, num_heads=8, num_kv_heads=1)
    kv_bytes = 64 * 8192 * 2 * 128 * 2.0
    achieved = kv_bytes / result.time_s / gpu.hbm_bandwidth_bytes_per_s
    assert 0.7 < achieved < 0.98, achieved  # the old curve: ~0.5 at this context
    assert "measured" in result.source


def test_v1_plans_are_priced_by_measured_fits() -> None:
    perf = RooflinePerfModel(load_calibration())
    plan = ReplicaPlan(
        resolve_model("llama-3.1-70b"),
        get_gpu("h100-sxm"),
        tp=4,
        weight_dtype=DType.FP8,
        activation_dtype=DType.FP8,
        kernel_stack="vllm-0.24",
        host_profile="none",
    )
    sources = perf.kernel_sources(plan)
    assert all("measured" in sources[f] for f in ("gemm", "attention", "collectives"))
    legacy = ReplicaPlan(**{**_fields(plan), "kernel_stack": "vllm-0.6"})
    batch = BatchShape.from_lists(prefill=[(2048, 0)])
    # the legacy model prices fp8 prefill GEMMs at ~2x bf16: measured kernels are slower
    assert perf.iteration_time(plan, batch).total_s > perf.iteration_time(legacy, batch).total_s


def _fields(plan: ReplicaPlan) -> dict:
    return {name: getattr(plan, name) for name in plan.__dataclass_fields__}


@pytest.mark.slow
def test_shipped_fit_is_what_the_tables_give() -> None:
    """The packaged figures are reproducible: refitting one stack/GPU from the shared tables gives
    byte-identical parameters (deterministic fits, and a calibration file that is not stale)."""
    from servesim.core.paths import shared_data_dir
    from servesim.perf.fitting import gemm
    from servesim.perf.fitting.tables import aic_root

    data = shared_data_dir()
    if data is None:
        pytest.skip("needs ../shared/data (aiconfigurator tables)")
    rows = gemm.load_rows(aic_root(data), "h200_sxm", "vllm", "0.24.0")
    params = gemm.fit(rows, get_gpu("h200-sxm"))
    shipped = DOCUMENT["kernel_stacks"]["vllm-0.24"]["h200"]["gemm"]
    assert json.dumps(params, sort_keys=True) == json.dumps(shipped, sort_keys=True)


# Leave-one-GPU-out per family as released with the transfer rules (MAPE %, +1 of slack for a
# refit of other families): the cross-architecture targets must not fall back to the old rule.
_LOGO_AFTER = {
    ("a100", "gemm"): 13.7,  # the wave tail Hopper hides and sm_80 / sm_89 cuBLAS does not
    # FA2's unsplit MHA / windowed decode (one CTA per sequence and head, cta_bw from the other
    # FA2 GPU) and its windowed re-reads from L2: A100 22.1 -> 21.1, L40S 22.9 -> 19.0; the KV
    # stream's HBM efficiency from the other FA2 GPU: A100 21.1 / -4.7 -> 20.0 / +0.1, L40S
    # 19.0 / -4.5 -> 19.3 / -1.1
    ("a100", "decode_attention"): 20.5,
    ("a100", "prefill_attention"): 22.5,  # FA2 tiles / residency (attention_tiles)
    ("a100", "collectives"): 16.5,
    ("l40s", "gemm"): 25.7,
    ("l40s", "decode_attention"): 20.0,
    ("h100", "prefill_attention"): 9.0,  # same die: the prefill traffic keeps its rate
    ("h200", "prefill_attention"): 9.5,
    ("h100", "decode_attention"): 8.5,  # the fp8 KV cap carries between H100 and H200
    ("h200", "decode_attention"): 8.5,
    ("l40s", "prefill_attention"): 25.0,  # and FlashInfer's GQA packing (fp8 KV)
    ("l40s", "collectives"): 22.0,  # 8 GPUs cross the sockets (transfer.host_ring_bus_bytes_per_s)
    # MoE between the two Hopper GPUs: the streaming keeps the donor's absolute rate (median
    # signed within 2% both ways; it was +5.8 / -2.5 with the bandwidth-fraction rule)
    # (12.4 / 12.2 once the tables' L2 condition is its own term, opmodels.moe_l2)
    ("h100", "moe"): 13.0,
    ("h200", "moe"): 12.8,
    # MoE fixed costs (the fused kernel's and the router's) carried by the SM clock ratio
    # (L40S 46.1 with fixed costs kept in seconds); A100 (a vLLM 0.14 table) 25.0 / -21.0
    # before the old default tiles on its shapes without a tuned file (opmodels.moe_configs);
    # 18.9 -> 19.4 once those tiles' rate comes with their serial K loop (moe_tiles.kloop_steps)
    # and the overlap SGLang's fit learnt them in (20.0 refitted under vLLM's own p, 23.7 bare)
    ("a100", "moe"): 20.0,
    # 42.5 -> 36.9 with the tables' L2 condition (L40S's 96 MB L2 holds many rows' experts)
    ("l40s", "moe"): 38.0,
}


def test_stored_leave_one_gpu_out_summary_meets_the_transfer_rules() -> None:
    summary = DOCUMENT.get("kernel_report", {}).get("leave_one_gpu_out_summary")
    if not summary:
        pytest.skip("this calibration predates the per-family leave-one-GPU-out summary")
    rows = {(r["gpu"], r["part"]): r for r in summary if r["stack"] == "vllm-0.24"}
    for gpu in ("h100", "h200", "a100", "l40s"):
        for part in ("gemm", "prefill_attention", "decode_attention", "collectives"):
            assert (gpu, part) in rows, (gpu, part)
    for key, bound in _LOGO_AFTER.items():
        row = rows[key]
        assert row["mape"] <= bound, row
    for gpu in ("h100", "h200"):
        assert abs(rows[(gpu, "moe")]["median_signed"]) <= 2.5, rows[(gpu, "moe")]
    assert abs(rows[("a100", "moe")]["median_signed"]) <= 5.0, rows[("a100", "moe")]
    # the rules beat the data-sheet-only rule where architectures differ (summed over families)
    for gpu in ("a100", "l40s"):
        mine = [r for (g, _), r in rows.items() if g == gpu and r.get("before_mape") is not None]
        assert sum(r["mape"] for r in mine) < sum(r["before_mape"] for r in mine), gpu
    assert rows[("l40s", "prefill_attention")]["source"] == "a100"  # FlashAttention 2 donor
