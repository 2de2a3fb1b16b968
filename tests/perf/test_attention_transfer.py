"""Attention transfer rules between GPUs (``opmodels.transfer._adapt_attention``): the prefill
traffic term on one die keeps its absolute rate, the fp8 KV cap moves with the SM clock."""

from __future__ import annotations

import pytest

from servesim.perf.opmodels.transfer import adapt_params
from servesim.specs.catalog import get_gpu

H100, H200, A100 = (get_gpu(n) for n in ("h100-sxm", "h200-sxm", "a100-80gb"))

_PREFILL = {"floor_s": 10e-6, "mma_eff": 0.6, "fix_tiles": 0.1, "mem_eff": 0.3, "overlap_p": 1.3}
_DECODE = {
    "floor_s": 12e-6,
    "hbm_eff": 0.85,
    "kv_bw_per_sm": 18e9,
    "l2_bw_per_sm": 2e10,
    "l2_frac": 0.8,
    "row_flops": 1000.0,
    "kv_row_flops": 2e5,
    "overlap_p": 1.3,
}


def _attention(mem_eff: float = 0.3) -> dict:
    return {"prefill": {"fp8": {**_PREFILL, "mem_eff": mem_eff}}, "decode": {"fp8": _DECODE}}


def test_prefill_traffic_keeps_its_absolute_rate_on_the_same_die() -> None:
    # H200 -> H100: same 132 SMs and clock, 4.8 vs 3.35 TB/s HBM: 0.3 x 4.8 TB/s = 1.44 TB/s
    # is 0.4299 of the H100's HBM
    out = adapt_params("attention", _attention(), H200, H100)["prefill"]["fp8"]
    assert out["mem_eff"] == pytest.approx(0.3 * 4.8 / 3.35)
    back = adapt_params("attention", _attention(), H100, H200)["prefill"]["fp8"]
    assert back["mem_eff"] == pytest.approx(0.3 * 3.35 / 4.8)
    # never beyond the target's HBM
    full = adapt_params("attention", _attention(0.9), H200, H100)["prefill"]["fp8"]
    assert full["mem_eff"] == 1.0


def test_prefill_traffic_keeps_the_hbm_fraction_across_architectures() -> None:
    out = adapt_params("attention", _attention(), H100, A100)["prefill"]["fp8"]
    assert out["mem_eff"] == 0.3


def test_fp8_kv_cap_is_a_rate_per_sm_cycle() -> None:
    out = adapt_params("attention", _attention(), H100, A100)["decode"]["fp8"]
    assert out["kv_bw_per_sm"] == pytest.approx(18e9 * 1410 / 1980)
    assert out["hbm_eff"] == 0.85
    same = adapt_params("attention", _attention(), H100, H200)["decode"]["fp8"]
    assert same["kv_bw_per_sm"] == 18e9
    uncapped = {"prefill": {}, "decode": {"bf16": {**_DECODE, "kv_bw_per_sm": 0.0}}}
    assert adapt_params("attention", uncapped, H100, A100)["decode"]["bf16"]["kv_bw_per_sm"] == 0


def test_window_gqa_unpacking_follows_the_target_kernel() -> None:
    l40s = get_gpu("l40s")
    both = {"prefill": {}, "decode": {"bf16": dict(_DECODE), "fp8": dict(_DECODE)}}
    out = adapt_params("attention", both, H100, l40s)["decode"]
    assert out["bf16"]["window_unpacks_gqa"] is True  # FA2 on Ada
    assert out["fp8"]["window_unpacks_gqa"] is False  # FlashInfer for an fp8 KV cache
    hopper = adapt_params("attention", both, H100, H200)["decode"]
    assert hopper["bf16"]["window_unpacks_gqa"] is False


def test_fa2_unsplit_cta_rate_comes_from_a_donor_of_the_same_kernel() -> None:
    from servesim.perf.opmodels.transfer import borrow

    l40s = get_gpu("l40s")
    hopper = {"prefill": {"bf16": dict(_PREFILL)}, "decode": {"bf16": {**_DECODE, "cta_bw": 0.0}}}
    ampere = {
        "prefill": {"bf16": {**_PREFILL, "fix_tiles": 0.0, "fix_s": 1.6e-6}},
        "decode": {"bf16": {**_DECODE, "kv_bw_per_sm": 0.0, "cta_bw": 22e9}},
    }
    donors = {"h100": (H100, hopper), "a100": (A100, ampere)}
    found = borrow("attention", l40s, donors)
    assert found is not None
    # decode from the nearest GPU (H100), which always splits; the unsplit rate per CTA from
    # the other FA2 GPU, in bytes/s (latency-bound: not scaled by the clock)
    assert found.donors == {"prefill": "a100", "decode": "h100"}
    assert found.params["decode"]["bf16"]["cta_bw"] == 22e9
    assert found.params["decode"]["bf16"]["row_flops"] != _DECODE["row_flops"]  # H100's, adapted
    # a Hopper target splits whatever its donor did
    h200 = borrow("attention", H200, {"a100": (A100, ampere)})
    assert h200 is not None and h200.params["decode"]["bf16"]["cta_bw"] == 0.0
    # no FA2 donor: nothing to carry, the target's decode stays unbounded by CTAs
    alone = borrow("attention", l40s, {"h100": (H100, hopper)})
    assert alone is not None and alone.params["decode"]["bf16"]["cta_bw"] == 0.0


def test_decode_stream_efficiency_comes_from_a_donor_of_the_same_kernel() -> None:
    from servesim.perf.opmodels.transfer import borrow

    l40s = get_gpu("l40s")
    hopper = {"prefill": {"bf16": dict(_PREFILL)}, "decode": {"bf16": {**_DECODE, "hbm_eff": 0.89}}}
    ada = {
        "prefill": {"bf16": {**_PREFILL, "fix_tiles": 0.0, "fix_s": 1.6e-6}},
        "decode": {"bf16": {**_DECODE, "hbm_eff": 0.77}},
    }
    found = borrow("attention", A100, {"h100": (H100, hopper), "l40s": (l40s, ada)})
    assert found is not None
    # the rest of decode from the nearest GPU (H100); the KV stream's fraction of the HBM from
    # the other FlashAttention 2 GPU, for a KV format it has no fit of too (its bf16 one)
    assert found.donors["decode"] == "h100"
    assert found.params["decode"]["bf16"]["hbm_eff"] == 0.77
    assert found.params["decode"]["bf16"]["row_flops"] != _DECODE["row_flops"]  # H100's, adapted
    fp8 = {**hopper, "decode": {"bf16": hopper["decode"]["bf16"], "fp8": dict(_DECODE)}}
    both = borrow("attention", A100, {"h100": (H100, fp8), "l40s": (l40s, ada)})
    assert both is not None and both.params["decode"]["fp8"]["hbm_eff"] == 0.77
    # no donor of the target's kernel: the nearest GPU's efficiency stays
    alone = borrow("attention", A100, {"h100": (H100, hopper)})
    assert alone is not None and alone.params["decode"]["bf16"]["hbm_eff"] == 0.89
