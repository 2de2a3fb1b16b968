"""Multi-LoRA serving: adapter sizes, PCIe load time, GPU slots, SGMV cost, routing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from servesim.cluster.routers import AdapterAffinityRouter
from servesim.core.errors import ConfigError, ServesimError
from servesim.engine import VLLMSchedulerConfig
from servesim.engine.config import LoRAConfig
from servesim.engine.lora import AdapterCache
from servesim.engine.setup import ReplicaSetup
from servesim.engine.simulation import ReplicaView
from servesim.perf.lora import adapter_bytes, module_dims, sgmv_cost
from tests.engine.fakes import LinearPerf, assert_all_served, plan, req, rows, run
from tests.engine.fakes import setup as make_setup

V1 = VLLMSchedulerConfig(version="v1")
# Llama-3.1-8B, rank 16 on q, k, v, o: per layer (4096+4096) + (4096+1024) * 2 + (4096+4096)
# = 26,624 params per unit rank; x 32 layers x 16 x 2 bytes
ADAPTER_BYTES = 26_624 * 32 * 16 * 2  # 27,262,976


def _setup(lora: LoRAConfig | None, **cache: object) -> ReplicaSetup:
    return dataclasses.replace(make_setup(V1, **cache), lora=lora)


def test_adapter_bytes_hand_computed() -> None:
    model = plan().model
    assert module_dims(model, "k_proj") == (4096, 1024)
    assert module_dims(model, "down_proj") == (14336, 4096)
    assert adapter_bytes(model, 16, ("q_proj", "k_proj", "v_proj", "o_proj")) == ADAPTER_BYTES
    with pytest.raises(ConfigError):
        module_dims(model, "lm_head")


def test_swap_time_over_pcie_hand_computed() -> None:
    # H100 SXM host link: PCIe 5.0 x16, 63 GB/s and 5 us per copy
    cache = AdapterCache(LoRAConfig(), plan())
    assert cache.load_time_s(ADAPTER_BYTES, 1) == pytest.approx(ADAPTER_BYTES / 63e9 + 5e-6)
    assert cache.load_time_s(ADAPTER_BYTES, 1) == pytest.approx(437.75e-6, rel=1e-4)
    # TP 2: each GPU copies its half over its own link
    tp2 = AdapterCache(LoRAConfig(), dataclasses.replace(plan(), tp=2))
    assert tp2.load_time_s(ADAPTER_BYTES, 1) == pytest.approx(ADAPTER_BYTES / 2 / 63e9 + 5e-6)
    assert cache.load_time_s(0, 0) == 0.0


def test_slots_are_lru_over_unpinned_adapters() -> None:
    cache = AdapterCache(LoRAConfig(max_loras=2), plan())
    cache.acquire("a")
    cache.acquire("b")
    assert not cache.can_acquire("c")  # both pinned
    assert cache.can_acquire("a") and cache.can_acquire(None)
    cache.release("a")
    cache.acquire("c")  # evicts a (unpinned)
    assert cache.resident() == {"b", "c"}
    assert cache.take_step_loads() == (3, 3 * ADAPTER_BYTES)
    assert cache.take_step_loads() == (0, 0)
    cache.acquire("b")  # resident: no load
    assert cache.num_loads == 3
    with pytest.raises(ServesimError, match="can_pin"):
        cache.acquire("d")  # b and c pinned: a scheduler that did not check


def test_sgmv_cost_hand_computed() -> None:
    model = plan().model
    modules = ("q_proj", "k_proj", "v_proj", "o_proj")
    cost = sgmv_cost(
        model,
        tp=1,
        peak_flops_per_s=1e15,
        hbm_bytes_per_s=1e12,
        modules=modules,
        tokens_by_rank={16: 10},
        adapters_by_rank={16: 1},
    )
    flops = 2 * 10 * 16 * 26_624 * 32
    # weights once + per token input read and output read/write: (4096 + 2*4096)*2
    # + (4096 + 2*1024)*2 = 36,864 values per layer, 16-bit
    nbytes = ADAPTER_BYTES + 2 * 10 * 36_864 * 32
    assert cost.flops == flops and cost.hbm_bytes == nbytes
    assert cost.time_s == pytest.approx(max(flops / 0.3e15, nbytes / 0.7e12))
    # two adapters of the batch read twice the weights
    two = sgmv_cost(
        model,
        tp=1,
        peak_flops_per_s=1e15,
        hbm_bytes_per_s=1e12,
        modules=modules,
        tokens_by_rank={16: 10},
        adapters_by_rank={16: 2},
    )
    assert two.hbm_bytes == nbytes + ADAPTER_BYTES


def test_slots_shrink_the_kv_pool() -> None:
    # 8 slots x 26 MiB = 104 blocks of 16 tokens x 128 KiB
    recs = run([req(0, 0.0, 16, 4, adapter_id="a")], LinearPerf(), _setup(LoRAConfig()))
    assert recs.replicas[0].num_kv_blocks == 1000 - 104


def test_loads_cost_time_and_requests_wait_for_a_slot() -> None:
    # one slot, two adapters: b waits until a's request has finished; c (no adapter) is
    # admitted past it
    requests = [
        req(0, 0.0, 16, 10, adapter_id="a"),
        req(1, 0.001, 16, 10, adapter_id="b"),
        req(2, 0.002, 16, 10),
    ]
    perf = LinearPerf(a=0.01, b=0.0, c=0.0)
    recs = run(requests, perf, _setup(LoRAConfig(max_loras=1)))
    assert_all_served(recs)
    cols = rows(recs)
    assert cols["first_scheduled_s"][1] >= cols["completion_s"][0] - 1e-12
    assert cols["first_scheduled_s"][2] < cols["completion_s"][0]
    assert recs.counters["lora_loads"] == 2
    assert recs.counters["lora_load_bytes"] == 2 * ADAPTER_BYTES
    plain = rows(run(requests, perf, _setup(None)))
    # with LoRA the first step carries a's copy (437.75 us) and its SGMV kernels
    assert cols["first_token_s"][0] > plain["first_token_s"][0] + 437e-6


def test_many_adapters_keep_every_invariant() -> None:
    rng = np.random.default_rng(0)
    requests = [
        req(
            i,
            i * 0.004,
            int(rng.integers(16, 200)),
            int(rng.integers(5, 60)),
            adapter_id=f"lora-{int(rng.zipf(1.5)) % 20}" if i % 4 else None,
        )
        for i in range(150)
    ]
    for mode in ("recompute", "swap"):
        lora = LoRAConfig(max_loras=4, rank_by_adapter={"lora-1": 64})
        recs = run(requests, LinearPerf(), _setup(lora, num_kv_blocks=80, preemption_mode=mode))
        assert_all_served(recs)
        assert recs.counters["lora_loads"] > 4


def _view(i: int, load: int, adapters: set[str]) -> ReplicaView:
    return ReplicaView(i, 0, load, 0.0, 0, adapters=frozenset(adapters))


def test_adapter_affinity_router() -> None:
    router = AdapterAffinityRouter(max_extra_requests=3)
    views = [_view(0, 2, set()), _view(1, 4, {"a"}), _view(2, 9, {"b"})]
    assert router.route(req(0, 0.0, 8, 8, adapter_id="a"), views) == 1  # holder, 2 extra
    assert router.route(req(0, 0.0, 8, 8, adapter_id="b"), views) == 0  # holder too loaded
    assert router.route(req(0, 0.0, 8, 8, adapter_id="c"), views) == 0  # nobody holds it
    assert router.route(req(0, 0.0, 8, 8), views) == 0
    with pytest.raises(ConfigError):
        AdapterAffinityRouter(max_extra_requests=-1)
