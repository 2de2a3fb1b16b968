"""Memory plan figures and plan checks."""

from __future__ import annotations

from dataclasses import replace

import pytest
from factories import a100, h100, llama31_8b, llama31_70b, mixtral_8x7b

from servesim.core.errors import ConfigError, InfeasibleError
from servesim.perf.memory import CUDA_CONTEXT_BYTES, check_plan
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import ReplicaPlan
from servesim.specs.dtypes import DType

GB = 1e9


def test_llama31_8b_h100_bf16(perf: RooflinePerfModel) -> None:
    mem = perf.memory_plan(ReplicaPlan(llama31_8b(), h100()))
    # 8.03 B parameters x 2 bytes
    assert mem.weight_bytes == pytest.approx(16.06 * GB, rel=0.01)
    assert mem.usable_bytes == int(80 * 1024**3 * 0.9)
    assert mem.overhead_bytes == CUDA_CONTEXT_BYTES
    rest = mem.usable_bytes - mem.weight_bytes - mem.activation_bytes - mem.overhead_bytes
    assert mem.kv_cache_bytes == rest
    assert mem.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2  # 128 KiB per token
    assert mem.num_kv_blocks == rest // (16 * 131072)
    assert mem.max_kv_tokens == mem.num_kv_blocks * 16


def test_kv_heads_split_then_replicated(perf: RooflinePerfModel) -> None:
    tp8 = perf.memory_plan(ReplicaPlan(llama31_70b(), h100(), tp=8))
    assert tp8.kv_bytes_per_token == 80 * 2 * 1 * 128 * 2
    tp16 = perf.memory_plan(ReplicaPlan(llama31_70b(), h100(), tp=16))
    assert tp16.kv_bytes_per_token == tp8.kv_bytes_per_token  # 1 head each: replicated


def test_quantised_weights_and_kv(perf: RooflinePerfModel) -> None:
    bf16 = perf.memory_plan(ReplicaPlan(llama31_8b(), h100()))
    int4 = perf.memory_plan(ReplicaPlan(llama31_8b(), h100(), weight_dtype=DType.INT4))
    fp8kv = perf.memory_plan(ReplicaPlan(llama31_8b(), h100(), kv_dtype=DType.FP8))
    assert int4.weight_bytes < 0.45 * bf16.weight_bytes  # embeddings/LM head stay 16-bit
    assert fp8kv.kv_bytes_per_token == bf16.kv_bytes_per_token / 2
    assert fp8kv.num_kv_blocks == pytest.approx(2 * bf16.num_kv_blocks, rel=1e-3)


def test_activation_reserve_grows_with_batched_tokens(perf: RooflinePerfModel) -> None:
    plan = ReplicaPlan(llama31_8b(), h100())
    small = perf.memory_plan(plan, max_num_batched_tokens=2048)
    big = perf.memory_plan(plan, max_num_batched_tokens=32768)
    assert big.activation_bytes > small.activation_bytes
    assert big.num_kv_blocks < small.num_kv_blocks


def test_infeasible_plan_names_breakdown(perf: RooflinePerfModel) -> None:
    with pytest.raises(InfeasibleError, match=r"weights 131\.\d+ GiB .* usable 72\.00 GiB"):
        perf.memory_plan(ReplicaPlan(llama31_70b(), a100()))


def test_utilization_bounds(perf: RooflinePerfModel) -> None:
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        perf.memory_plan(ReplicaPlan(llama31_8b(), h100()), gpu_memory_utilization=1.5)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tp": 3}, "tp"),
        ({"tp": 0}, "tp"),
        ({"pp": 81}, "pp"),
        ({"ep": 2}, "ep"),
        ({"activation_dtype": DType.FP8}, "activation_dtype"),
    ],
)
def test_check_plan_rejects(changes: dict, field: str) -> None:
    base = ReplicaPlan(llama31_70b(), h100() if field != "activation_dtype" else a100(), tp=4)
    with pytest.raises(ConfigError) as info:
        check_plan(replace(base, **changes))
    assert info.value.field == field


def test_check_plan_ep() -> None:
    moe = ReplicaPlan(mixtral_8x7b(), h100(), tp=8, ep=8)
    check_plan(moe)
    with pytest.raises(ConfigError, match="exceeds the 8 experts"):
        check_plan(replace(moe, tp=16, ep=16))
    with pytest.raises(ConfigError, match="must divide tp"):
        check_plan(replace(moe, tp=2, ep=4))


def test_uneven_pp_allowed_and_stage_weights_differ(perf: RooflinePerfModel) -> None:
    mem = perf.memory_plan(ReplicaPlan(llama31_70b(), h100(), tp=4, pp=3))
    assert mem.num_kv_blocks > 0


def test_pp_split_follows_vllm() -> None:
    from servesim.perf.shapes import stage_layer_ranges

    assert [len(r) for r in stage_layer_ranges(80, 3)] == [27, 27, 26]
    assert [len(r) for r in stage_layer_ranges(10, 4)] == [2, 3, 3, 2]
    assert stage_layer_ranges(7, 3)[-1].stop == 7
