"""summarize() on the hand-built run of factories.small_run(); every figure computed by hand.

Requests (arrival, first scheduled, first token, completion, prompt, output):
  r0: 0.0, 0.5, 1.0, 3.0, 100, 5  -> TTFT 1.0, E2E 3.0, TPOT (3-1)/4 = 0.5, queue 0.5
  r1: 1.0, 1.0, 1.5, 2.0,  50, 1  -> TTFT 0.5, E2E 1.0, no TPOT (one token), queue 0.0
  r2: 2.0, 2.5, 4.0, 6.0, 200, 3  -> TTFT 2.0, E2E 4.0, TPOT (4-2)/2 = 1.0, queue 0.5
  r3: rejected (exceeds KV capacity)
Window: first arrival 0.0 to last completion 6.0 -> duration 6 s.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from servesim.cli.simulate_render import _engine_rows
from servesim.cluster import build_deployment
from servesim.config import SimConfig
from servesim.engine.records import RejectReason, SimulationRecords
from servesim.metrics import SLOSpec, SLOTargets, summarize
from servesim.metrics.summary import engine_lines
from servesim.perf.roofline import RooflinePerfModel
from tests.metrics.factories import add_iteration, add_request, replica, small_run


def test_latencies_follow_vllm_definitions() -> None:
    s = summarize(small_run())
    assert s.ttft.count == 3
    assert s.ttft.mean_s == pytest.approx(3.5 / 3)
    assert s.ttft.p50_s == pytest.approx(1.0)
    # linear percentile over [0.5, 1, 2]: p90 at rank 1.8 -> 1 + 0.8 * (2 - 1)
    assert s.ttft.p90_s == pytest.approx(1.8)
    assert s.ttft.p99_s == pytest.approx(1.98)
    assert s.ttft.min_s == 0.5 and s.ttft.max_s == 2.0
    # one-token outputs are excluded from TPOT, as in vllm
    assert s.tpot.count == 2
    assert s.tpot.mean_s == pytest.approx(0.75)
    assert s.tpot.p50_s == pytest.approx(0.75)
    assert s.e2e.mean_s == pytest.approx(8.0 / 3)
    assert s.queueing.mean_s == pytest.approx(1.0 / 3)
    # ITL over all tokens: 4 gaps of 0.5 s and 2 of 1.0 s
    assert s.itl.count == 6
    assert s.itl.mean_s == pytest.approx(4.0 / 6)
    assert s.itl.p50_s == pytest.approx(0.5)
    assert s.itl.p90_s == pytest.approx(1.0)


def test_throughput_over_makespan() -> None:
    s = summarize(small_run())
    assert (s.start_s, s.end_s, s.duration_s) == (0.0, 6.0, 6.0)
    assert s.offered_rate_per_s == pytest.approx(3 / 3.0)  # 4 arrivals over 0..3 s
    assert s.num_requests == 4 and s.num_completed == 3
    assert s.total_input_tokens == 350 and s.total_output_tokens == 9
    assert s.request_throughput_per_s == pytest.approx(0.5)
    assert s.input_throughput_tokens_per_s == pytest.approx(350 / 6)
    assert s.output_throughput_tokens_per_s == pytest.approx(1.5)
    assert s.total_throughput_tokens_per_s == pytest.approx(359 / 6)


def test_rejections_preemptions_prefix_hits() -> None:
    s = summarize(small_run())
    # every reason is listed (stable keys), zero or not
    assert set(s.rejected_by_reason) == {r.name.lower() for r in RejectReason if r}
    assert s.rejected_by_reason["exceeds_kv_capacity"] == 1
    assert s.rejected_by_reason["not_finished"] == 0
    assert s.num_rejected == 1
    assert s.num_preemptions == 1
    assert s.prefix_cache_hit_rate == pytest.approx(32 / 350)
    assert s.counters == {"num_preemptions": 1}


def test_kv_utilisation_and_batch_size_time_weighted() -> None:
    s = summarize(small_run())
    # KV block-seconds: 10*0.5 + 20*0.5 + 10*1.5 + 30*2 = 90 over 100 blocks x 6 s
    assert s.kv_utilization.mean == pytest.approx(0.15)
    assert s.kv_utilization.max == pytest.approx(0.3)
    # sequence-seconds: 0.5 + 1.0 + 1.5 + 2.0 = 5 over 6 s
    assert s.batch_size.mean == pytest.approx(5 / 6)
    assert s.batch_size.max == 2
    series = s.kv_utilization.series
    assert len(series) == 100
    assert sum(series) / len(series) == pytest.approx(0.15)
    # 3.0 s .. 4.0 s the replica is idle: bins there are 0
    t = s.kv_utilization.series_t_s
    assert all(v == 0 for ti, v in zip(t, series, strict=True) if 3.05 < ti < 3.95)


def test_mfu_mbu_cost_energy() -> None:
    e = summarize(small_run()).efficiency
    # busy 0.5..3.0 and 4.0..6.0 = 4.5 s; FLOPs 4e14 + 2e14 + 3e13 + 2e14 = 8.3e14
    # (rows with repeat > 1 carry the run's totals)
    assert e.mfu == pytest.approx(8.3e14 / (1e15 * 4.5))
    # bytes 3e11 + 6e11 + 4.5e12 + 4e12 = 9.4e12
    assert e.mbu == pytest.approx(9.4e12 / (3e12 * 4.5))
    assert e.busy_fraction == pytest.approx(4.5 / 6)
    assert e.gpu_hours == pytest.approx(6 / 3600)
    assert e.cost_usd == pytest.approx(2.0 * 6 / 3600)
    assert e.cost_per_million_output_tokens_usd == pytest.approx(2.0 * 6 / 3600 / 9 * 1e6)
    # idle 100 W outside the 4.5 busy seconds, plus each row's op-by-op energy (perf model)
    energy = 100.0 * 1.5 + 300.0 + 250.0 + 600.0 + 900.0
    assert e.energy_j == pytest.approx(energy)
    assert e.mean_power_w == pytest.approx(energy / 6)
    assert e.energy_per_output_token_j == pytest.approx(energy / 9)


def test_slo_goodput_overall() -> None:
    s = summarize(small_run(), SLOSpec(ttft_s=1.5, tpot_s=0.6))
    assert s.slo is not None
    # r0 meets both; r1 meets (one token -> TPOT 0); r2 misses TTFT; r3 was rejected
    assert s.slo.overall.num_requests == 4
    assert s.slo.overall.num_met == 2
    assert s.slo.overall.attainment == pytest.approx(0.5)
    assert s.slo.overall.goodput_per_s == pytest.approx(2 / 6)
    assert not s.slo.overall.meets_attainment_target


def test_slo_per_class_overrides() -> None:
    spec = SLOSpec(ttft_s=1.5, tpot_s=0.6, classes=(("premium", SLOTargets(ttft_s=0.4)),))
    s = summarize(small_run(), spec)
    assert s.slo is not None
    by_name = {c.slo_class: c for c in s.slo.per_class}
    assert by_name["default"].num_requests == 3
    assert by_name["default"].num_met == 1
    assert by_name["premium"].ttft_target_s == 0.4
    assert by_name["premium"].tpot_target_s == 0.6  # falls back to the default target
    assert by_name["premium"].num_met == 0  # TTFT 0.5 > 0.4
    assert s.slo.overall.num_met == 1


def test_only_ttft_target_checked_when_tpot_missing() -> None:
    s = summarize(small_run(), SLOSpec(ttft_s=10.0, attainment_target=0.75))
    assert s.slo is not None
    assert s.slo.overall.num_met == 3
    assert s.slo.overall.meets_attainment_target


def test_unfinished_run_ends_at_end_s() -> None:
    rec = SimulationRecords(replicas=[replica()], end_s=10.0)
    add_request(rec, arrival=1.0, scheduled=1.0, first=2.0, done=4.0, out=3)
    add_request(rec, arrival=2.0, scheduled=2.0, first=3.0, reason=RejectReason.NOT_FINISHED)
    s = summarize(rec)
    assert (s.start_s, s.end_s, s.duration_s) == (1.0, 10.0, 9.0)
    assert s.rejected_by_reason["not_finished"] == 1
    assert s.num_completed == 1


def test_empty_records_do_not_crash() -> None:
    s = summarize(SimulationRecords(replicas=[replica()]), SLOSpec(ttft_s=1.0))
    assert s.num_requests == 0 and s.ttft.count == 0 and s.ttft.mean_s is None
    assert s.efficiency.mfu is None
    json.dumps(s.to_dict())


def test_to_dict_is_deterministic_json() -> None:
    a = json.dumps(summarize(small_run(), SLOSpec(ttft_s=1.0)).to_dict(), sort_keys=True)
    b = json.dumps(summarize(small_run(), SLOSpec(ttft_s=1.0)).to_dict(), sort_keys=True)
    assert a == b
    d = json.loads(a)
    assert d["ttft"]["p50_s"] == 1.0
    assert d["slo"]["overall"]["num_met"] == 2


def test_nan_becomes_null_in_json() -> None:
    rec = small_run()
    rec.token_gaps.add(math.nan, 1)
    rec.counters["numpy_counter"] = np.int64(3)  # type: ignore[assignment]
    d = summarize(rec).to_dict()
    assert "NaN" not in json.dumps(d)
    assert d["counters"]["numpy_counter"] == 3


def test_two_replicas_pipeline_overlap_not_double_counted() -> None:
    rec = SimulationRecords(replicas=[replica(0), replica(1, num_kv_blocks=300)], end_s=2.0)
    add_request(rec, arrival=0.0, scheduled=0.0, first=1.0, done=2.0, out=2)
    # replica 0: two micro-batches overlapping on 0.5..1.0 -> busy union 0..1.5 = 1.5 s
    add_iteration(rec, start=0.0, duration=1.0, seqs=2, kv_blocks=50, replica_id=0)
    add_iteration(rec, start=0.5, duration=1.0, seqs=4, kv_blocks=100, replica_id=0)
    add_iteration(rec, start=0.0, duration=2.0, seqs=1, kv_blocks=30, replica_id=1)
    s = summarize(rec)
    assert s.efficiency.busy_fraction == pytest.approx((1.5 + 2.0) / 4.0)
    # replica 0 state: 50 blocks on 0..0.5, 100 on 0.5..1.5; replica 1: 30 on 0..2
    assert s.kv_utilization.mean == pytest.approx((25 + 100 + 60) / (400 * 2.0))
    assert s.kv_utilization.max == pytest.approx(1.0)  # replica 0 full at 100/100
    assert s.batch_size.mean == pytest.approx((1 + 4 + 2) / (2 * 2.0))


def _two_pool_config() -> SimConfig:
    pool = {"gpu": "h100-sxm", "tp": 1, "scheduler": {"kind": "vllm", "version": "v1"}}
    return SimConfig.from_dict(
        {
            "model": "llama-3.1-8b",
            "deployment": {
                "pools": [
                    {**pool, "name": "v1", "engine": "vllm-v1-async"},
                    {**pool, "name": "sg", "engine": "sglang"},
                ]
            },
        }
    )


def test_summary_json_names_each_pools_engine_version_and_settings() -> None:
    cfg = _two_pool_config()
    deployment = build_deployment(cfg.effective_deployment(), cfg.model, RooflinePerfModel())
    s = summarize(small_run(), engines=engine_lines(deployment))
    out = json.loads(json.dumps(s.to_dict()))["engines"]
    assert [e["pool"] for e in out] == ["v1", "sg"]
    assert [e["engine"] for e in out] == ["vllm-v1-async", "sglang"]
    assert out[0]["version"].startswith("vLLM >= 0.11")
    assert out[1]["version"] == "SGLang 0.4/0.5"
    assert "chunked prefill on" in out[0]["settings"]
    assert "budget 8192 tokens" in out[0]["settings"]
    assert "schedules 1 step(s) ahead" in out[0]["settings"]
    assert summarize(small_run()).to_dict()["engines"] == []


def test_terminal_header_prints_the_engine_line() -> None:
    cfg = SimConfig.from_dict({"hardware": {"engine": "vllm-v1"}})
    rows = _engine_rows(SimpleNamespace(config=cfg, summary=summarize(small_run())))
    assert len(rows) == 1 and rows[0][0] == "engine"
    assert rows[0][1].startswith("vllm-v1 (vLLM 0.8-0.10 (V1 engine, synchronous scheduling)): ")
    assert "prefix caching on" in rows[0][1]
    two = _engine_rows(SimpleNamespace(config=_two_pool_config(), summary=summarize(small_run())))
    assert [k for k, _ in two] == ["engine (v1)", "engine (sg)"]
