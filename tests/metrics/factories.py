"""Hand-built ``SimulationRecords`` for metrics tests (no engine needed)."""

from __future__ import annotations

import math

from servesim.engine.records import RejectReason, ReplicaInfo, SimulationRecords

NAN = math.nan


def replica(replica_id: int = 0, **overrides: object) -> ReplicaInfo:
    """A 1-GPU replica with round numbers: 100 blocks, $2/h, 700 W TDP, 100 W idle."""
    values: dict[str, object] = {
        "replica_id": replica_id,
        "gpu_name": "test-gpu",
        "num_gpus": 1,
        "num_kv_blocks": 100,
        "block_size_tokens": 16,
        "price_per_gpu_hour_usd": 2.0,
        "tdp_w": 700.0,
        "idle_w": 100.0,
        "peak_flops_per_s": 1e15,
        "hbm_bandwidth_bytes_per_s": 3e12,
    }
    values.update(overrides)
    return ReplicaInfo(**values)  # type: ignore[arg-type]


def add_request(
    records: SimulationRecords,
    *,
    arrival: float,
    scheduled: float = NAN,
    first: float = NAN,
    done: float = NAN,
    prompt: int = 10,
    out: int = 2,
    reason: RejectReason = RejectReason.NONE,
    preemptions: int = 0,
    prefix_hits: int = 0,
    slo_class_index: int = 0,
    replica_id: int = 0,
) -> None:
    """Append one request row."""
    records.requests.append_row(
        request_id=records.requests.size,
        replica_id=replica_id,
        arrival_s=arrival,
        first_scheduled_s=scheduled,
        first_token_s=first,
        completion_s=done,
        num_prompt_tokens=prompt,
        num_output_tokens=out,
        num_emitted_tokens=out if reason == RejectReason.NONE else 0,
        sum_tbt_s=0.0 if math.isnan(first) or math.isnan(done) else done - first,
        max_tbt_s=0.0,
        num_preemptions=preemptions,
        num_prefix_hit_tokens=prefix_hits,
        priority=0,
        user_id=0,
        slo_class_index=slo_class_index,
        reject_reason=int(reason),
    )


def add_iteration(
    records: SimulationRecords,
    *,
    start: float,
    duration: float,
    seqs: int,
    kv_blocks: int,
    flops: float = 0.0,
    hbm_bytes: float = 0.0,
    energy_j: float = 0.0,
    repeat: int = 1,
    replica_id: int = 0,
    kv_block_s: float = 0.0,
    seq_s: float = 0.0,
) -> None:
    """Append one iteration row (with ``repeat`` > 1, duration/flops/bytes/energy are run
    totals; a skipped run's row also has its ticks' integrals ``kv_block_s`` and ``seq_s``)."""
    records.iterations.append_row(
        replica_id=replica_id,
        start_s=start,
        duration_s=duration,
        num_prefill_tokens=0,
        num_decode_seqs=seqs,
        num_seqs=seqs,
        num_kv_blocks_used=kv_blocks,
        num_queued=0,
        flops=flops,
        hbm_bytes=hbm_bytes,
        energy_j=energy_j,
        repeat=repeat,
        kv_block_s=kv_block_s,
        seq_s=seq_s,
    )


def small_run() -> SimulationRecords:
    """Four requests (one rejected) and four iterations on one replica; see test_summary.py."""
    rec = SimulationRecords(replicas=[replica()], slo_classes=["default", "premium"], end_s=6.0)
    add_request(
        rec, arrival=0.0, scheduled=0.5, first=1.0, done=3.0, prompt=100, out=5, prefix_hits=32
    )
    add_request(
        rec, arrival=1.0, scheduled=1.0, first=1.5, done=2.0, prompt=50, out=1, slo_class_index=1
    )
    add_request(
        rec, arrival=2.0, scheduled=2.5, first=4.0, done=6.0, prompt=200, out=3, preemptions=1
    )
    add_request(rec, arrival=3.0, prompt=10_000, out=10, reason=RejectReason.EXCEEDS_KV_CAPACITY)
    add_iteration(
        rec, start=0.5, duration=0.5, seqs=1, kv_blocks=10, flops=4e14, hbm_bytes=3e11,
        energy_j=300.0,
    )  # fmt: skip
    add_iteration(
        rec, start=1.0, duration=0.5, seqs=2, kv_blocks=20, flops=2e14, hbm_bytes=6e11,
        energy_j=250.0,
    )  # fmt: skip
    add_iteration(
        rec, start=1.5, duration=1.5, seqs=1, kv_blocks=10, flops=3e13, hbm_bytes=4.5e12,
        energy_j=600.0, repeat=3,
    )  # fmt: skip
    add_iteration(
        rec, start=4.0, duration=2.0, seqs=1, kv_blocks=30, flops=2e14, hbm_bytes=4e12,
        energy_j=900.0, repeat=2,
    )  # fmt: skip
    rec.token_gaps.add(0.5, 4)
    rec.token_gaps.add(1.0, 2)
    rec.count("num_preemptions", 1)
    return rec
