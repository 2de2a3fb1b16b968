"""KV transfer cost, hand-computed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.cluster import kv_transfer_bytes, kv_transfer_s
from servesim.perf.types import ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.specs.dtypes import DType
from servesim.specs.gpu import LinkSpec

LINK = LinkSpec(name="test", bandwidth_bytes_per_s=50e9, latency_s=1e-5)


def test_llama_8b_kv_bytes() -> None:
    plan = ReplicaPlan(model=resolve_model("llama-3.1-8b"), gpu=get_gpu("h100-sxm"))
    # 32 layers x (K + V) x 8 KV heads x 128 dims x 2 bytes = 128 KiB per token
    assert kv_transfer_bytes(plan, 1000) == 1000 * 131072
    fp8 = ReplicaPlan(
        model=plan.model, gpu=plan.gpu, kv_dtype=DType.FP8, activation_dtype=DType.BF16
    )
    assert kv_transfer_bytes(fp8, 1000) == 1000 * 65536


def test_time_is_bytes_over_parallel_bandwidth_plus_latency() -> None:
    assert kv_transfer_s(1e9, LINK, 1) == pytest.approx(0.02 + 1e-5)
    assert kv_transfer_s(1e9, LINK, 4) == pytest.approx(0.005 + 1e-5)
    assert kv_transfer_s(0, LINK, 1) == 0.0


def test_layerwise_overlap_hides_what_the_prefill_covers() -> None:
    # 20 ms of wire time, 32 layers: a 15 ms prefill hides 15 ms; a long one hides all but
    # the last layer's share
    assert kv_transfer_s(1e9, LINK, 1, compute_s=0.015, num_layers=32, overlap=True) == (
        pytest.approx(0.005 + 1e-5)
    )
    assert kv_transfer_s(1e9, LINK, 1, compute_s=1.0, num_layers=32, overlap=True) == (
        pytest.approx(0.02 / 32 + 1e-5)
    )


@given(st.floats(1, 1e11), st.floats(0, 1), st.integers(1, 8))
def test_overlap_never_costs_more(num_bytes: float, compute_s: float, streams: int) -> None:
    plain = kv_transfer_s(num_bytes, LINK, streams)
    hidden = kv_transfer_s(
        num_bytes, LINK, streams, compute_s=compute_s, num_layers=32, overlap=True
    )
    assert LINK.latency_s <= hidden <= plain
