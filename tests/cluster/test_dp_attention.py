"""DP-attention pools (``dp_attention``): ranks, GPUs, groups, checks, the vLLM DP router,
and a cluster run whose ranks step in lockstep."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.cluster import DeploymentConfig, DeploymentError, build_deployment, run_cluster
from servesim.cluster.routers import DPLeastLoadedRouter
from servesim.engine.dp_group import DPGroupSpec, rank_memory_plan
from servesim.engine.simulation import ReplicaView
from servesim.perf import RooflinePerfModel
from servesim.perf.dp_cost import GroupSpan
from servesim.perf.memory import GIB
from servesim.specs.gpu import LinkSpec
from servesim.workload.request import Request

PERF = RooflinePerfModel()
MODEL = "qwen3-30b-a3b"


def build(pools: list[dict], **extra: object):  # type: ignore[no-untyped-def]
    config = DeploymentConfig.model_validate({"pools": pools, **extra})
    return build_deployment(config, MODEL, PERF)


def test_a_dp_pool_runs_tp_x_dp_gpus_per_replica_as_ranks() -> None:
    dep = build([{"name": "dp", "replicas": 2, "dp_attention": 4, "tp": 1, "ep": 4}])
    pool = dep.pools[0]
    assert pool.num_replicas == 8 and dep.num_gpus == 8 and pool.plan.ep == 1
    assert dep.dp_groups() == [DPGroupSpec(0, 4), DPGroupSpec(4, 4)]
    assert len(dep.setups()) == 8


def test_dp_pool_problems_are_one_line_each() -> None:
    with pytest.raises(DeploymentError) as err:
        build(
            [
                {"name": "a", "dp_attention": 8, "tp": 1, "ep": 4},
                {"name": "b", "dp_attention": 2, "tp": 1, "autoscale": {"min_replicas": 1}},
            ]
        )
    problems = err.value.problems
    assert "pool 'a': ep=4 must be tp x dp_attention = 8 (vLLM's EP = TP x DP) or 1" in problems
    assert "pool 'b': dp_attention=2 with autoscale is not modelled" in problems
    with pytest.raises(DeploymentError, match="has no experts"):
        build_deployment(
            DeploymentConfig.model_validate({"pools": [{"dp_attention": 2}]}), "llama-3.1-8b", PERF
        )


def test_dp_rank_memory_holds_one_eighth_of_the_experts() -> None:
    # Qwen3-30B-A3B bf16 at tp=1: 48 layers x 128 experts x 3 x 2048 x 768 x 2 B of experts;
    # a rank of dp_attention=8 keeps 16 of the 128 per layer, so 7/8 of those bytes go to KV
    dep1 = build([{"dp_attention": 8, "tp": 1}])
    pool = dep1.pools[0]
    mem = rank_memory_plan(pool.plan, 8, pool.cache, 8192)
    plain = PERF.memory_plan(pool.plan, max_num_batched_tokens=8192)
    experts = 48 * 128 * 3 * 2048 * 768 * 2
    assert plain.weight_bytes - mem.weight_bytes == experts * 7 // 8
    assert mem.kv_cache_bytes - plain.kv_cache_bytes == experts * 7 // 8
    assert mem.weight_bytes < 10 * GIB


def test_dp_least_loaded_scores_waiting_four_times_running() -> None:
    def view(i: int, queued: int, running: int) -> ReplicaView:
        return ReplicaView(i, queued, running, 0.0, 0)

    router = DPLeastLoadedRouter()
    request = Request(0, 0.0, 10, 1)
    # scores 4*1+0=4, 4*0+5=5, 4*0+4=4: the first lowest wins
    assert router.route(request, [view(0, 1, 0), view(1, 0, 5), view(2, 0, 4)]) == 0
    assert router.route(request, [view(0, 1, 1), view(1, 0, 5), view(2, 0, 4)]) == 2


def test_cluster_ranks_step_in_lockstep() -> None:
    dep = build([{"dp_attention": 4, "tp": 1, "ep": 4}], router={"kind": "dp_least_loaded"})
    requests = [Request(i, 0.01 * i, 200 + 37 * i, 20 + i) for i in range(24)]
    run = run_cluster(requests, dep, PERF, seed=0)
    it = run.records.iterations.view()
    assert np.all(np.isfinite(run.records.requests.view()["completion_s"]))
    # every step that starts at one instant ends at one instant, on every rank it runs on
    ends: dict[float, set[float]] = {}
    for start, duration in zip(it["start_s"], it["duration_s"], strict=True):
        ends.setdefault(float(start), set()).add(float(start + duration))
    assert all(len(e) == 1 for e in ends.values())
    assert len(set(it["replica_id"])) == 4  # the router spread the requests over the ranks
    again = run_cluster(requests, dep, PERF, seed=0).records.iterations.view()
    assert np.array_equal(again["duration_s"], it["duration_s"])  # deterministic


def test_the_pool_s_all2all_backend_prices_the_group() -> None:
    requests = [Request(i, 0.0, 300, 4) for i in range(4)]
    durations = []
    for backend in ("allgather_reducescatter", "deepep_low_latency"):
        pool = {"dp_attention": 4, "tp": 1, "all2all_backend": backend}
        dep = build([pool], router={"kind": "dp_least_loaded"})
        assert dep.dp_groups() == [DPGroupSpec(0, 4, backend)]
        run = run_cluster(requests, dep, PERF, seed=0)
        durations.append(run.records.iterations.view()["duration_s"][0])
    assert durations[0] != durations[1]


def test_a_group_wider_than_a_server_spans_the_network_of_its_nodes() -> None:
    # 16 ranks of tp=1 on 8-GPU H100 servers: two servers, 8 GPUs each, on their usual
    # one-NIC-per-GPU InfiniBand NDR (50 GB/s, 5 us: specs/catalog/networks.yaml)
    dep = build([{"dp_attention": 16, "tp": 1}])
    ib = LinkSpec(name="ib-ndr-400", bandwidth_bytes_per_s=50e9, latency_s=5e-6)
    assert dep.dp_groups() == [DPGroupSpec(0, 16, span=GroupSpan(ib, 8))]
    # RoCE servers of 6 GPUs: ranks 0-5 on the first, 6-7 on the second (2 GPUs there)
    roce = build(
        [{"dp_attention": 8, "tp": 1}],
        nodes=[{"gpu": "h100-sxm", "count": 2, "gpus_per_node": 6, "network": "roce-200"}],
    )
    (group,) = roce.dp_groups()
    assert group.span == GroupSpan(LinkSpec("roce-200", 25e9, 8e-6), 2)
    # a server of 16 GPUs holds the whole group: NVLink, no span
    big = build([{"dp_attention": 16, "tp": 1}], nodes=[{"gpu": "h100-sxm", "gpus_per_node": 16}])
    assert big.dp_groups()[0].span is None


def test_the_network_slows_the_group_step() -> None:
    requests = [Request(i, 0.0, 300, 2) for i in range(16)]
    durations = []
    for nodes in ([{"gpu": "h100-sxm", "gpus_per_node": 16}], None):
        extra = {"nodes": nodes} if nodes else {}
        dep = build([{"dp_attention": 16, "tp": 1}], router={"kind": "dp_least_loaded"}, **extra)
        run = run_cluster(requests, dep, PERF, seed=0)
        durations.append(run.records.iterations.view()["duration_s"][0])
    assert durations[1] > durations[0]


def test_the_dense_layers_run_where_the_engine_runs_them() -> None:
    # auto: SGLang runs a DP group's dense MLP over the whole group, vLLM at the rank's tp
    sglang = build([{"dp_attention": 4, "tp": 1, "engine": "sglang"}])
    vllm = build([{"dp_attention": 4, "tp": 1, "engine": "vllm-v1"}])
    assert sglang.pools[0].dense_mlp == "group" and sglang.dp_groups()[0].dense_mlp == "group"
    assert vllm.pools[0].dense_mlp == "rank"
    one = build([{"dp_attention": 4, "tp": 1, "engine": "sglang", "dense_mlp": "replicated"}])
    assert one.dp_groups()[0].dense_mlp == "replicated"
    with pytest.raises(DeploymentError) as err:
        build(
            [
                {
                    "name": "v",
                    "dp_attention": 4,
                    "tp": 1,
                    "engine": "vllm-v1",
                    "dense_mlp": "group",
                },
                {"name": "s", "dp_attention": 2, "tp": 2, "engine": "sglang", "dense_mlp": "rank"},
            ]
        )
    problems = " | ".join(err.value.problems)
    assert "pool 'v': dense_mlp=group is SGLang's" in problems
    assert "pool 's': dense_mlp=rank at tp=2: SGLang's --moe-dense-tp-size takes 1" in problems
