"""``summarize(records, slo) -> Summary``: the figures a run is judged by.

Definitions match ``vllm bench serve`` (``vllm/benchmarks/serve.py``, ``calculate_metrics``) so
a simulated run and a measured one compare like for like:

- **TTFT**: first output token time - arrival time, queueing included; completed requests.
- **TPOT** (per request): ``(e2e - ttft) / (output_tokens - 1)``; requests with a single output
  token are excluded from the distribution (for the SLO check their TPOT is 0, as in vllm).
- **ITL / TBT**: the distribution over *all* gaps between consecutive output tokens of all
  requests (not a per-request mean), from the engine's weighted gap samples, exactly.
- **E2E latency**: completion - arrival. **Queueing delay**: first scheduled - arrival.
- Percentiles: numpy ``linear`` (``np.percentile``), as vllm; ``std`` is the population std.
- **Duration** (vllm's "Benchmark duration"): from the first arrival to the last completion;
  when the run was cut short (requests ``NOT_FINISHED``) it ends at ``records.end_s``.
- **Throughput**: completed requests, their input tokens, their output tokens, per second of
  duration (vllm counts successful requests only).
- SLO attainment and goodput: ``servesim.metrics.slo``; utilisation, cost and energy:
  ``servesim.metrics.efficiency``; KV utilisation and batch size over time:
  ``servesim.metrics.timeseries``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from servesim.cluster.deployment import Deployment
from servesim.engine.profiles import EngineProfile
from servesim.engine.records import RejectReason, SimulationRecords
from servesim.metrics.efficiency import Efficiency, compute_efficiency
from servesim.metrics.slo import SLOResult, SLOSpec, evaluate_slo
from servesim.metrics.stats import LatencyStats, latency_stats, weighted_latency_stats
from servesim.metrics.streaming import (
    IterationPass,
    RequestPass,
    fold,
    gap_stats,
    request_latencies,
)
from servesim.metrics.timeseries import (
    TimeSeriesStats,
    busy_time_by_replica,
    iteration_spans,
    row_states,
    time_weighted,
)


@dataclass(frozen=True, slots=True)
class EngineLine:
    """The serving engine one pool ran, as a summary states it.

    Attributes:
        pool: the pool's name.
        engine: the engine profile's name (``vllm-v1-async``).
        version: the engine versions the profile stands for (``vLLM >= 0.11 ...``).
        settings: the effective scheduler settings (``EngineProfile.settings_line``).
    """

    pool: str
    engine: str
    version: str
    settings: str

    def to_dict(self) -> dict[str, str]:
        """The four fields by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def text(self) -> str:
        """``engine (version): settings`` in one line."""
        return f"{self.engine} ({self.version}): {self.settings}"


def engine_line(pool: str, profile: EngineProfile, scheduler: Any, cache: Any) -> EngineLine:
    """What a summary says about the engine of ``pool`` (its scheduler and cache configs)."""
    return EngineLine(pool, profile.name, profile.version, profile.settings_line(scheduler, cache))


def engine_lines(deployment: Deployment) -> tuple[EngineLine, ...]:
    """One ``EngineLine`` per pool of ``deployment``, in pool order."""
    return tuple(engine_line(p.name, p.engine, p.scheduler, p.cache) for p in deployment.pools)


@dataclass(frozen=True, slots=True)
class Summary:
    """Everything ``summarize`` reports about one run (times in seconds).

    Attributes:
        num_requests: requests in the records.
        num_completed: requests that finished.
        rejected_by_reason: count per ``RejectReason`` name (lowercase), every reason listed.
        start_s, end_s, duration_s: the measurement window (module docstring).
        offered_rate_per_s: arrivals per second, ``(n - 1) / (last - first arrival)``
            (None with fewer than two requests or all arriving at once).
        total_input_tokens, total_output_tokens: prompt / output tokens of completed requests.
        request_throughput_per_s, input_throughput_tokens_per_s,
        output_throughput_tokens_per_s, total_throughput_tokens_per_s: per second of duration.
        ttft, tpot, itl, e2e, queueing: latency distributions.
        slo: attainment and goodput (None when no SLO was given).
        kv_utilization: fraction of KV blocks in use over time.
        batch_size: sequences per iteration over time (mean per replica).
        efficiency: MFU, MBU, cost and energy.
        num_preemptions: preemptions over all requests.
        prefix_cache_hit_rate: prompt tokens served from the prefix cache / prompt tokens of
            scheduled requests (None when nothing was scheduled).
        num_replicas: replicas in the run.
        counters: the engine's named counters.
        engines: the serving engine of each pool, its version and effective settings
            (empty when the caller did not say).
    """

    num_requests: int
    num_completed: int
    rejected_by_reason: Mapping[str, int]
    start_s: float
    end_s: float
    duration_s: float
    offered_rate_per_s: float | None
    total_input_tokens: int
    total_output_tokens: int
    request_throughput_per_s: float
    input_throughput_tokens_per_s: float
    output_throughput_tokens_per_s: float
    total_throughput_tokens_per_s: float
    ttft: LatencyStats
    tpot: LatencyStats
    itl: LatencyStats
    e2e: LatencyStats
    queueing: LatencyStats
    slo: SLOResult | None
    kv_utilization: TimeSeriesStats
    batch_size: TimeSeriesStats
    efficiency: Efficiency
    num_preemptions: int
    prefix_cache_hit_rate: float | None
    num_replicas: int
    counters: Mapping[str, int]
    engines: tuple[EngineLine, ...] = ()

    @property
    def num_rejected(self) -> int:
        """Requests that did not complete, for any reason."""
        return sum(self.rejected_by_reason.values())

    def to_dict(self) -> dict[str, object]:
        """Deterministic JSON-able mapping (sorted mappings; NaN and inf become None)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


def _window(req: dict[str, np.ndarray], completed: np.ndarray, end_s: float) -> tuple[float, float]:
    if req["arrival_s"].size == 0:
        return 0.0, 0.0
    start = float(req["arrival_s"].min())
    unfinished = bool((req["reject_reason"] == RejectReason.NOT_FINISHED).any())
    if unfinished or not completed.any():
        return start, max(start, end_s)
    return start, float(req["completion_s"][completed].max())


def _offered_rate(arrival_s: np.ndarray) -> float | None:
    if arrival_s.size < 2:
        return None
    span = float(arrival_s.max() - arrival_s.min())
    return (arrival_s.size - 1) / span if span > 0 else None


def _over_time(
    records: SimulationRecords, it: dict[str, np.ndarray], window: tuple[float, float]
) -> tuple[TimeSeriesStats, TimeSeriesStats, dict[int, float]]:
    """KV utilisation, batch size and busy time per replica."""
    rid = it["replica_id"]
    start = it["start_s"]
    end = start + it["duration_s"]  # a repeated row's duration covers the whole run
    ids = [r.replica_id for r in records.replicas]
    busy = busy_time_by_replica(rid, start, end, ids)
    # a skipped run's row holds its ticks' mean over its whole run (timeseries.row_states)
    names = ("num_kv_blocks_used", "num_seqs")
    seg_end, values, slope = row_states(it, start, end, iteration_spans(rid, start, end), names)
    used, seqs = values["num_kv_blocks_used"], values["num_seqs"]
    blocks = {r.replica_id: r.num_kv_blocks for r in records.replicas}
    lookup = np.zeros(max(blocks, default=-1) + 1, dtype=np.float64)
    lookup[list(blocks)] = list(blocks.values())
    peak_used = it["num_kv_blocks_used"]  # a run's row: its ticks' most
    kv_peak = float((peak_used / lookup[rid]).max()) if used.size else 0.0
    kv = time_weighted(
        start,
        seg_end,
        used,
        window=window,
        scale=float(sum(blocks.values()) or 1),
        peak=kv_peak,
        slope=slope,
    )
    batch = time_weighted(
        start,
        seg_end,
        seqs,
        window=window,
        scale=float(max(1, len(ids))),
        peak=float(it["num_seqs"].max()) if seqs.size else 0.0,
    )
    return kv, batch, busy


def _throughput(
    req: dict[str, np.ndarray], completed: np.ndarray, duration: float
) -> dict[str, float | int]:
    num_in = int(req["num_prompt_tokens"][completed].sum())
    num_out = int(req["num_output_tokens"][completed].sum())
    num_done = int(completed.sum())

    def rate(x: float) -> float:
        return x / duration if duration > 0 else 0.0

    return {
        "num_completed": num_done,
        "total_input_tokens": num_in,
        "total_output_tokens": num_out,
        "request_throughput_per_s": rate(num_done),
        "input_throughput_tokens_per_s": rate(num_in),
        "output_throughput_tokens_per_s": rate(num_out),
        "total_throughput_tokens_per_s": rate(num_in + num_out),
    }


def _cache_and_rejections(req: dict[str, np.ndarray]) -> dict[str, object]:
    reason = req["reject_reason"]
    scheduled = np.isfinite(req["first_scheduled_s"])
    prompt_scheduled = int(req["num_prompt_tokens"][scheduled].sum())
    hits = int(req["num_prefix_hit_tokens"][scheduled].sum())
    return {
        "rejected_by_reason": {
            r.name.lower(): int((reason == r).sum()) for r in RejectReason if r != RejectReason.NONE
        },
        "num_preemptions": int(req["num_preemptions"].sum()),
        "prefix_cache_hit_rate": hits / prompt_scheduled if prompt_scheduled else None,
    }


def summarize(
    records: SimulationRecords,
    slo: SLOSpec | None = None,
    engines: Iterable[EngineLine] = (),
) -> Summary:
    """Turn a run's records into its summary (definitions in the module docstring);
    ``engines`` (``engine_lines(deployment)``) says which engine each pool ran.

    A table that spilled to disk (a long run) is read a chunk at a time with streaming
    aggregates and sketches (``servesim.metrics.streaming``: percentiles within relative
    error ``sketch.DEFAULT_RELATIVE_ACCURACY``); tables in memory give exact figures.
    """
    if records.requests.is_spilled:
        figures = _chunked_request_figures(records, slo)
    else:
        figures = _request_figures(records, slo)
    start_s, end_s = figures["start_s"], figures["end_s"]
    duration = end_s - start_s
    num_out = int(figures["total_output_tokens"])
    if records.iterations.is_spilled:
        iterations = IterationPass(records.replicas, (start_s, end_s))
        fold(records.iterations.chunks(), iterations)
        iterations.finish()
        kv, batch = iterations.over_time()
        efficiency = iterations.efficiency(duration, num_out)
    else:
        # Views, not copies: a long run's tables are the largest thing in memory, and nothing
        # here writes into them.
        it = records.iterations.view(copy=False)
        kv, batch, busy = _over_time(records, it, (start_s, end_s))
        efficiency = compute_efficiency(it, records.replicas, busy, duration, num_out)
    if records.token_gaps.is_spilled:
        itl = gap_stats(records.token_gaps.chunks())
    else:
        itl = weighted_latency_stats(*records.token_gaps.arrays(copy=False))
    return Summary(
        itl=itl,
        kv_utilization=kv,
        batch_size=batch,
        efficiency=efficiency,
        num_replicas=len(records.replicas),
        counters=dict(records.counters),
        engines=tuple(engines),
        **figures,
    )


def _request_figures(records: SimulationRecords, slo: SLOSpec | None) -> dict[str, Any]:
    """The request table's summary fields, from the table in memory (exact)."""
    req = records.requests.view(copy=False)
    completed = (req["reject_reason"] == RejectReason.NONE) & np.isfinite(req["completion_s"])
    start_s, end_s = _window(req, completed, records.end_s)
    duration = end_s - start_s
    ttft, e2e, tpot_slo = request_latencies(req, completed)
    multi = completed & (req["num_output_tokens"] > 1)
    slo_result = None
    if slo is not None:
        slo_result = evaluate_slo(
            slo,
            ttft_s=ttft,
            tpot_s=tpot_slo,
            completed=completed,
            class_index=req["slo_class_index"],
            class_names=records.slo_classes,
            duration_s=duration,
        )
    return {
        "num_requests": int(completed.size),
        "start_s": start_s,
        "end_s": end_s,
        "duration_s": duration,
        "offered_rate_per_s": _offered_rate(req["arrival_s"]),
        "ttft": latency_stats(ttft[completed]),
        "tpot": latency_stats(tpot_slo[multi]),
        "e2e": latency_stats(e2e[completed]),
        "queueing": latency_stats((req["first_scheduled_s"] - req["arrival_s"])[completed]),
        "slo": slo_result,
        **_throughput(req, completed, duration),
        **_cache_and_rejections(req),
    }


def _chunked_request_figures(records: SimulationRecords, slo: SLOSpec | None) -> dict[str, Any]:
    """The request table's summary fields, streamed over its chunks (a spilled table)."""
    rows = RequestPass(slo, list(records.slo_classes))
    fold(records.requests.chunks(), rows)
    start_s, end_s = rows.window(records.end_s)
    duration = end_s - start_s

    def rate(x: float) -> float:
        return x / duration if duration > 0 else 0.0

    num_in, num_out, num_done = rows.num_input_tokens, rows.num_output_tokens, rows.num_completed
    return {
        "num_requests": rows.num_requests,
        "start_s": start_s,
        "end_s": end_s,
        "duration_s": duration,
        "offered_rate_per_s": rows.offered_rate(),
        **rows.latencies(),
        "slo": rows.slo_result(duration),
        "num_completed": num_done,
        "total_input_tokens": num_in,
        "total_output_tokens": num_out,
        "request_throughput_per_s": rate(num_done),
        "input_throughput_tokens_per_s": rate(num_in),
        "output_throughput_tokens_per_s": rate(num_out),
        "total_throughput_tokens_per_s": rate(num_in + num_out),
        "rejected_by_reason": {
            r.name.lower(): rows.rejected.get(r, 0) for r in RejectReason if r != RejectReason.NONE
        },
        "num_preemptions": rows.num_preemptions,
        "prefix_cache_hit_rate": (
            rows.num_hit_tokens / rows.num_prompt_scheduled if rows.num_prompt_scheduled else None
        ),
    }
