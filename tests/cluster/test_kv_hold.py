"""The prefill replica keeps a request's KV until the transfer to the decode replica ends.

llama-3.1-8b holds 131,072 B of KV per token (32 layers x 2 x 8 KV heads x 128 x 2 B). Two
single-GPU nodes joined by 25 GbE (3.125 GB/s, 20 us; catalog ``eth-25``): a 1,600-token prompt
(100 blocks of 16 tokens) takes 1600 x 131072 / 3.125e9 + 20e-6 = 67.149 ms to move. With 150
KV blocks the prefill replica holds one such prompt and a 32-block share of the next (its
512-token chunks), so the next prompt's prefill stalls until the first one's KV leaves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from servesim.cluster import ClusterRun, DeploymentConfig, build_deployment, run_cluster
from servesim.perf import RooflinePerfModel
from servesim.workload.request import Request

PERF = RooflinePerfModel()
PROMPT = 1600
KV_BYTES_PER_TOKEN = 131072
ETH25_BYTES_PER_S = 3.125e9
ETH25_LATENCY_S = 20e-6
WIRE_S = PROMPT * KV_BYTES_PER_TOKEN / ETH25_BYTES_PER_S


def _run(
    num_requests: int,
    num_output_tokens: int,
    *,
    prefill_blocks: int,
    decode_blocks: int = 4000,
    overlap: bool = False,
) -> ClusterRun:
    config: dict[str, Any] = {
        "pools": [
            {"name": "p", "role": "prefill", "cache": {"num_kv_blocks": prefill_blocks}},
            {"name": "d", "role": "decode", "cache": {"num_kv_blocks": decode_blocks}},
        ],
        "nodes": [{"gpu": "h100-sxm", "count": 2, "gpus_per_node": 1, "network": "eth-25"}],
        "transfer": {"layerwise_overlap": overlap},
    }
    dep = build_deployment(DeploymentConfig.model_validate(config), "llama-3.1-8b", PERF)
    reqs = [Request(i, 0.0, PROMPT, num_output_tokens) for i in range(num_requests)]
    return run_cluster(reqs, dep, PERF, check_invariants=True)


def _prefill_iterations(run: ClusterRun) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    it = run.records.iterations.view()
    mine = it["replica_id"] == 0
    start = it["start_s"][mine]
    return start, start + it["duration_s"][mine], it["num_kv_blocks_used"][mine]


def _gaps(start: np.ndarray, end: np.ndarray) -> list[int]:
    """Indices i where the prefill replica idles between iteration i and i + 1."""
    return [i for i in range(len(start) - 1) if start[i + 1] > end[i] + 1e-12]


@pytest.mark.parametrize("overlap", [False, True])
def test_next_prefill_waits_for_the_kv_transfer_to_end(overlap: bool) -> None:
    run = _run(2, 4, prefill_blocks=150, overlap=overlap)
    start, end, used = _prefill_iterations(run)
    # Exactly one stall: after request 0's last chunk, until its KV has left.
    (i,) = _gaps(start, end)
    prefill_end_s = end[i]
    if overlap:  # layer-wise sends hide all but the part that outlasts the prefill
        exposed_s = max(WIRE_S / 32, WIRE_S - prefill_end_s) + ETH25_LATENCY_S
    else:
        exposed_s = WIRE_S + ETH25_LATENCY_S
    assert run.stats.transfer_s[0] == pytest.approx(exposed_s, rel=1e-12)
    # The 100 blocks are released exactly when the transfer ends, and not before.
    assert start[i + 1] == pytest.approx(prefill_end_s + exposed_s, abs=1e-12)
    assert used[i] == 128  # request 0's 100 blocks + request 1's first chunk (28 of 32 blocks)
    assert used[i + 1] == 128 - 100 + 32  # request 0's blocks gone, request 1's next chunk
    cols = run.records.requests.view()
    assert list(cols["decode_replica_id"]) == [1, 1]
    assert list(cols["replica_id"]) == [0, 0]
    assert (cols["num_emitted_tokens"] == 4).all()


def test_source_holds_the_kv_while_the_decode_replica_waits_for_memory() -> None:
    # Decode replica: 150 blocks, room for one 1,700-token request at a time. Prefill
    # replica: 210 blocks, two prompts. Request 1's KV arrives while request 0 decodes: the
    # prefill replica keeps it until the decode replica admits request 1 (when request 0
    # ends), so request 3's prefill cannot start before then.
    run = _run(4, 100, prefill_blocks=210, decode_blocks=150)
    cols = run.records.requests.view()
    assert (cols["num_emitted_tokens"] == 100).all()
    it = run.records.iterations.view()
    dec = it["replica_id"] == 1
    assert it["num_decode_seqs"][dec].max() == 1
    dec_end = it["start_s"][dec] + it["duration_s"][dec]
    start, end, used = _prefill_iterations(run)
    gaps = _gaps(start, end)
    assert len(gaps) == 2
    # first stall: request 0's KV is held until its transfer ends (the decode replica is
    # empty), one transfer time after the iteration that finished request 0's prompt
    first = gaps[0]
    handoff_s = start[first + 1] - (WIRE_S + ETH25_LATENCY_S)
    assert np.abs(end[:first] - handoff_s).min() < 1e-12
    assert used[first + 1] == 200 - 100 + 32
    # second stall: requests 1 and 2 hold 200 blocks; request 1's are freed only when the
    # decode replica admits it, at the end of the decode iteration that finishes request 0
    second = gaps[1]
    resume_s = start[second + 1]
    assert used[second] == 200 and used[second + 1] == 200 - 100 + 32
    assert cols["first_scheduled_s"][3] == resume_s
    assert np.any(dec_end == resume_s)  # an iteration boundary of the decode replica
    assert resume_s <= cols["completion_s"][0] < resume_s + 0.005  # (V0 output lag)
    request1_transfer_end_s = cols["first_token_s"][1] + WIRE_S
    assert resume_s > request1_transfer_end_s + 0.5  # held ~1 s past its transfer's end
    assert list(cols["decode_replica_id"]) == [1, 1, 1, 1]


def test_decode_replica_id_is_minus_one_without_disaggregation() -> None:
    config = DeploymentConfig.model_validate({"pools": [{"name": "u", "replicas": 2}]})
    dep = build_deployment(config, "llama-3.1-8b", PERF)
    run = run_cluster([Request(i, 0.0, 100, 4) for i in range(4)], dep, PERF)
    cols = run.records.requests.view()
    assert (cols["decode_replica_id"] == -1).all()
    assert sorted(set(cols["replica_id"].tolist())) == [0, 1]


def test_held_kv_under_load_keeps_every_invariant() -> None:
    # Mixed prompts, tight memory on both sides, arrivals that land while transfers are in
    # flight: every step recounts free + used == total and held blocks (check_invariants),
    # promised decode admissions always find their memory, and every request completes.
    rng = np.random.default_rng(7)
    prompts = rng.integers(50, 1500, size=40)
    outputs = rng.integers(2, 60, size=40)
    arrivals = np.cumsum(rng.exponential(0.01, size=40))
    reqs = [Request(i, float(arrivals[i]), int(prompts[i]), int(outputs[i])) for i in range(40)]
    config = DeploymentConfig.model_validate(
        {
            "pools": [
                {"name": "p", "role": "prefill", "replicas": 2, "cache": {"num_kv_blocks": 200}},
                {"name": "d", "role": "decode", "replicas": 2, "cache": {"num_kv_blocks": 250}},
            ],
            "nodes": [{"gpu": "h100-sxm", "count": 4, "gpus_per_node": 1, "network": "eth-25"}],
        }
    )
    dep = build_deployment(config, "llama-3.1-8b", PERF)
    run = run_cluster(reqs, dep, PERF, check_invariants=True)
    cols = run.records.requests.view()
    assert (cols["num_emitted_tokens"] == outputs).all()
    assert set(cols["decode_replica_id"].tolist()) <= {2, 3}
    assert set(cols["replica_id"].tolist()) <= {0, 1}
    it = run.records.iterations.view()
    for replica, limit in ((0, 200), (1, 200), (2, 250), (3, 250)):
        assert it["num_kv_blocks_used"][it["replica_id"] == replica].max() <= limit
