"""The cluster behaviours issue 5 asks to demonstrate, each against a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servesim.api import Result, simulate
from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
from servesim.cluster.autoscale import cold_start_s
from servesim.cluster.config import AutoscaleConfig
from servesim.engine.records import RejectReason
from servesim.metrics import summarize
from servesim.perf import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.workload.request import Request

# vLLM 0.6 without chunked prefill, pinned so the tests do not move with engine defaults
V0 = {"kind": "vllm", "version": "v0", "enable_chunked_prefill": False}


def run(extra: dict[str, Any]) -> Result:
    return simulate({"model": "llama-3.1-8b", **extra})


def throughput(result: Result) -> float:
    return result.summary.request_throughput_per_s


def _saturated_throughput(num_replicas: int) -> float:
    # 1000 req/s offered, far above what either deployment serves: both run saturated.
    n = 400 * num_replicas
    rng = np.random.default_rng(3)
    prompts, outputs = rng.integers(64, 2048, n), rng.integers(16, 512, n)
    reqs = [Request(i, i / 1000, int(prompts[i]), int(outputs[i])) for i in range(n)]
    perf = RooflinePerfModel()
    cfg = DeploymentConfig.model_validate({"pools": [{"replicas": num_replicas}]})
    records = run_cluster(reqs, build_deployment(cfg, "llama-3.1-8b", perf), perf).records
    return summarize(records).request_throughput_per_s


def test_four_round_robin_replicas_give_four_times_the_saturated_throughput() -> None:
    one, four = _saturated_throughput(1), _saturated_throughput(4)
    assert four == pytest.approx(4 * one, rel=0.05)


def test_least_outstanding_beats_round_robin_on_bursty_arrivals() -> None:
    work = {
        "preset": "sharegpt-vidur",
        "arrival": {"kind": "gamma", "rate_per_s": 14.0, "cv": 4.0},
    }
    base = {"workload": work, "num_requests": 1500, "replicas": 4, "scheduler": V0}
    rr = run({**base, "router": "round_robin"})
    lor = run({**base, "router": "least_outstanding_requests"})
    assert lor.summary.ttft.p99_s < 0.8 * rr.summary.ttft.p99_s


def test_prefix_affinity_raises_the_prefix_cache_hit_rate(shared_data: Path) -> None:
    trace = shared_data / "traces" / "mooncake" / "conversation_trace.jsonl"
    base = {
        # a quarter of the trace's rate: the replicas are not overloaded, so what limits reuse
        # is where a conversation's next turn lands, not KV pressure
        "workload": {"trace": {"path": str(trace), "rate_scale": 0.25}},
        "num_requests": 1200,
        "replicas": 4,
        "cache": {"enable_prefix_caching": True},
    }
    rr = run({**base, "router": "round_robin"})
    affinity = run({**base, "router": "prefix_affinity"})
    assert rr.summary.prefix_cache_hit_rate is not None
    # measured: 6.1% vs 4.1% (a single replica's LRU cache holds too little of the trace
    # between a conversation's turns; affinity sends each turn where its history is)
    assert affinity.summary.prefix_cache_hit_rate > 1.3 * rr.summary.prefix_cache_hit_rate


def _mixed_requests(num_long: int) -> list[Request]:
    """Steady short-prompt decodes with ``num_long`` 12k-token prompts arriving among them."""
    reqs = [Request(i, 0.05 * i, 128, 400) for i in range(40)]
    reqs += [Request(100 + k, 0.5 + 0.2 * k, 12_000, 2) for k in range(num_long)]
    reqs.sort(key=lambda r: (r.arrival_s, r.request_id))
    return reqs


def _max_tbt_of_decodes(pools: list[dict[str, Any]], num_long: int) -> float:
    perf = RooflinePerfModel()
    dep = build_deployment(DeploymentConfig.model_validate({"pools": pools}), "llama-3.1-8b", perf)
    records = run_cluster(_mixed_requests(num_long), dep, perf).records
    cols = records.requests.view()
    short = cols["num_prompt_tokens"] == 128
    assert (cols["reject_reason"][short] == RejectReason.NONE).all()
    return float(cols["max_tbt_s"][short].max())


def test_disaggregation_removes_prefill_decode_interference() -> None:
    unified = [{"replicas": 2, "scheduler": V0}]
    disagg = [
        {"name": "p", "role": "prefill", "scheduler": V0},
        {"name": "d", "role": "decode", "scheduler": V0},
    ]
    calm_unified = _max_tbt_of_decodes(unified, 0)
    hit_unified = _max_tbt_of_decodes(unified, 6)
    hit_disagg = _max_tbt_of_decodes(disagg, 6)
    # A 12k-token prefill stalls every decode batched with it on a unified replica ...
    assert hit_unified > 5 * calm_unified
    # ... and never touches the decode replica's iterations.
    assert hit_disagg < 2 * calm_unified


def _transfer_s(prompt: int, nodes: list[dict[str, Any]] | None) -> float:
    perf = RooflinePerfModel()
    cfg = {
        "pools": [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode"}],
        "nodes": nodes,
    }
    dep = build_deployment(DeploymentConfig.model_validate(cfg), "llama-3.1-8b", perf)
    run = run_cluster([Request(0, 0.0, prompt, 4)], dep, perf)
    assert run.stats.transfer_bytes == [prompt * 131072]  # 32 layers x 2 x 8 heads x 128 x 2 B
    return run.stats.transfer_s[0]


def test_kv_transfer_grows_with_prompt_and_shrinks_with_bandwidth() -> None:
    split = [{"gpu": "h100-sxm", "count": 2, "gpus_per_node": 1}]  # one GPU per node: network
    nvlink = [_transfer_s(p, None) for p in (1000, 4000, 16000)]
    network = [_transfer_s(p, split) for p in (1000, 4000, 16000)]
    assert nvlink == sorted(nvlink) and network == sorted(network)
    assert all(n > 5 * v for n, v in zip(network, nvlink, strict=True))
    # 16k tokens = 2.1 GB over one 400 Gb/s NIC (50 GB/s): ~42 ms + latency.
    assert network[2] == pytest.approx(16000 * 131072 / 50e9, rel=0.05)


def test_disaggregated_run_reports_transfers_in_ttft_when_decode_streams() -> None:
    deployment = {
        "pools": [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode"}],
        "nodes": [{"gpu": "h100-sxm", "count": 2, "gpus_per_node": 1}],
        "transfer": {"first_token_at": "decode"},
    }
    result = run({"deployment": deployment, "num_requests": 200})
    kv = result.cluster.transfer_summary(result.records)  # type: ignore[union-attr]
    assert kv["num_transfers"] == 200
    assert 0.0 < kv["mean_share_of_ttft"] < 1.0
    assert result.summary.num_completed == 200


def test_ep_step_time_grows_with_routing_skew() -> None:
    perf = RooflinePerfModel()
    model, gpu = resolve_model("mixtral-8x7b"), get_gpu("h100-sxm")
    shape = BatchShape.from_lists(prefill=[(4096, 0)])
    times = [
        perf.iteration_time(
            ReplicaPlan(model=model, gpu=gpu, tp=8, ep=8, expert_zipf_exponent=z), shape
        ).total_s
        for z in (0.0, 0.5, 1.0, 2.0)
    ]
    assert times == sorted(times) and times[-1] > 1.5 * times[0]


def test_autoscaling_adds_replicas_under_a_load_step_and_pays_only_up_time() -> None:
    low = [Request(i, 0.5 * i, 256, 64) for i in range(60)]  # 2 req/s for 30 s
    high = [Request(60 + i, 30.0 + 0.02 * i, 1024, 256) for i in range(3000)]  # 50 req/s
    perf = RooflinePerfModel()
    pool = {
        "replicas": 4,
        "autoscale": {
            "min_replicas": 1,
            "scale_up_threshold": 4,
            "scale_down_threshold": 0.5,
            "interval_s": 2.0,
            "startup_s": 5.0,
        },
    }
    cfg = DeploymentConfig.model_validate(
        {"pools": [pool], "router": {"kind": "least_outstanding_requests"}}
    )
    dep = build_deployment(cfg, "llama-3.1-8b", perf)
    result = run_cluster(low + high, dep, perf)
    stats, end_s = result.stats, result.records.end_s
    assert stats.num_scale_ups >= 2
    up = np.asarray(stats.replica_up_s)
    assert (up <= end_s).all() and up[0] > 30.0
    assert (up[1:] <= end_s - 30.0).all()  # started only after the step
    assert stats.num_scale_downs >= 1  # drained when the step ended
    assert stats.gpu_hours == pytest.approx(up.sum() / 3600)
    assert stats.gpu_hours < 4 * end_s / 3600
    cols = result.records.requests.view()
    assert set(np.unique(cols["replica_id"][cols["arrival_s"] < 30.0])) == {0}


def test_load_aware_routers_beat_round_robin_on_heterogeneous_pools() -> None:
    # two H100 and two A100 replicas: round robin overloads the slower ones
    pools = [
        {"name": "fast", "replicas": 2, "gpu": "h100-sxm", "scheduler": V0},
        {"name": "slow", "replicas": 2, "gpu": "a100-80gb", "scheduler": V0},
    ]
    p99 = {}
    for router in ("round_robin", "least_outstanding_requests", "slo_aware"):
        result = run(
            {
                "deployment": {"router": {"kind": router}, "pools": pools},
                "workload": {"preset": "sharegpt-vidur", "rate_per_s": 10.0},
                "num_requests": 1500,
            }
        )
        p99[router] = result.summary.ttft.p99_s
    # measured: 16.0 s, 0.69 s, 2.8 s
    assert p99["least_outstanding_requests"] < 0.2 * p99["round_robin"]
    assert p99["slo_aware"] < 0.5 * p99["round_robin"]


def test_cold_start_is_weight_load_plus_startup_and_gates_routing() -> None:
    config = AutoscaleConfig(storage_bandwidth_bytes_per_s=2e9, startup_s=30.0)
    assert cold_start_s(16e9, config) == pytest.approx(38.0)
    low = [Request(i, 0.5 * i, 256, 64) for i in range(20)]
    high = [Request(20 + i, 10.0 + 0.02 * i, 1024, 256) for i in range(2000)]
    perf = RooflinePerfModel()
    pool = {
        "replicas": 2,
        "autoscale": {
            "min_replicas": 1,
            "scale_up_threshold": 4,
            "interval_s": 1.0,
            "startup_s": 10.0,
            "metric": "queue_length",
        },
    }
    dep = build_deployment(DeploymentConfig.model_validate({"pools": [pool]}), "llama-3.1-8b", perf)
    run = run_cluster(low + high, dep, perf)
    events = run.stats.scale_events
    start = next(t for t, r, e in events if r == 1 and e == "start")
    ready = next(t for t, r, e in events if r == 1 and e == "ready")
    weights = dep.pools[0].plan.model.weight_bytes(dep.pools[0].plan.weight_dtype)
    assert ready - start == pytest.approx(weights / 2e9 + 10.0)
    cols = run.records.requests.view()
    on_new = cols["replica_id"] == 1
    assert cols["arrival_s"][on_new].min() >= ready
