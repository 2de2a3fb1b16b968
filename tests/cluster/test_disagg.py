"""Disaggregation details: decode-side admission waits for memory; runs are deterministic."""

from __future__ import annotations

import numpy as np

from servesim.api import simulate
from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
from servesim.engine.records import RejectReason
from servesim.perf import RooflinePerfModel
from servesim.workload.request import Request


def test_decode_admission_waits_for_kv_memory() -> None:
    perf = RooflinePerfModel()
    cfg = DeploymentConfig.model_validate(
        {
            "pools": [
                {"name": "p", "role": "prefill"},
                # 300 blocks of 16 tokens: two 2,000-token requests at a time
                {"name": "d", "role": "decode", "cache": {"num_kv_blocks": 300}},
            ]
        }
    )
    dep = build_deployment(cfg, "llama-3.1-8b", perf)
    reqs = [Request(i, 0.0, 2000, 200) for i in range(6)]
    run = run_cluster(reqs, dep, perf, check_invariants=True)
    cols = run.records.requests.view()
    assert (cols["reject_reason"] == RejectReason.NONE).all()
    assert (cols["num_emitted_tokens"] == 200).all()
    it = run.records.iterations.view()
    decode = it["replica_id"] == 1
    assert it["num_kv_blocks_used"][decode].max() <= 300
    assert it["num_decode_seqs"][decode].max() == 2  # never more than memory allows
    # the last pair waited for the first two pairs to finish decoding
    gaps = np.sort(cols["max_tbt_s"])
    assert gaps[-1] > 100 * gaps[0]


def test_same_seed_same_disaggregated_run() -> None:
    config = {
        "disagg": "1P:2D",
        "router": "random",
        "num_requests": 80,
        "workload": {"preset": "sharegpt-vidur", "rate_per_s": 8.0},
    }
    assert simulate(config).to_json() == simulate(config).to_json()
