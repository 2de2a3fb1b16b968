"""A run as a Chrome / Perfetto trace (the Trace Event Format's JSON object form).

Open the file in https://ui.perfetto.dev or chrome://tracing. Layout:

- one process per replica (``pid`` = replica id + 1, named by pool and GPU). Its thread 1
  holds the iterations as complete slices (``ph: X``) named by batch composition
  (``prefill 2 + decode 30``), with tokens, queue length, KV blocks, preemptions and the
  duration split into GPU time (the pipeline stages, collectives included) and host time
  (``host_s``); a run of identical decode
  iterations advanced at once is one slice with ``repeat`` > 1. Child slices ``host`` and
  ``gpu`` show the split where the row is one iteration, and ``comm`` the time of its
  collectives (TP all-reduces, EP all-to-alls, PP sends; ``comm_ms``), summed and drawn at the
  end of the GPU time, where the records carry ``comm_s``.
- counters (``ph: C``) per replica: requests queued, sequences in the batch, KV blocks used.
- each request as an async span (``ph: b/e``, ``cat: request``, ``id``: request id) on the
  replica that took it, with nested phases ``queued`` (arrival to first scheduled),
  ``prefill`` (to the first token; chunks and waits between them included) and ``decode``
  (to completion); ``preempted N x`` is in the span's name and args when it happened (the
  records keep the count per request, not the times). A disaggregated request names its
  decode replica in ``args``; a rejected one is an instant event with the reason.

Times are microseconds of simulated time. Output is deterministic (key-sorted JSON).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from servesim.engine.records import RejectReason, SimulationRecords

_US = 1e6
_ITER_TID = 1
_REQ_TID = 2


def _us(seconds: float) -> float:
    return round(seconds * _US, 3)


def _metadata(records: SimulationRecords) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for info in records.replicas:
        pid = info.replica_id + 1
        gpus = f"{info.num_gpus}x {info.gpu_name}"
        name = f"replica {info.replica_id} ({info.pool}, {info.role}, {gpus})"
        events.append(
            {"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": name}}
        )
        events.append({"ph": "M", "pid": pid, "tid": 0, "name": "process_sort_index",
                       "args": {"sort_index": pid}})  # fmt: skip
        for tid, label in ((_ITER_TID, "iterations"), (_REQ_TID, "requests")):
            events.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name",
                           "args": {"name": label}})  # fmt: skip
    return events


def _batch_name(num_prefill_tokens: int, num_decode: int, num_seqs: int) -> str:
    num_prefill_seqs = num_seqs - num_decode
    if num_prefill_tokens and num_decode:
        return f"prefill {num_prefill_seqs} + decode {num_decode}"
    if num_prefill_tokens:
        return f"prefill {num_prefill_seqs}"
    return f"decode {num_decode}"


def iteration_events(records: SimulationRecords) -> list[dict[str, Any]]:
    """Iteration slices (with host/GPU children) and per-replica counters."""
    it = records.iterations.view()
    host = it.get("host_s", np.zeros_like(it["start_s"]))
    preempted = it.get("num_preempted", np.zeros_like(it["repeat"]))
    comm = it.get("comm_s")  # collective time (StageTimes.comm_s), where the records keep it
    events: list[dict[str, Any]] = []
    for i in range(len(it["start_s"])):
        pid = int(it["replica_id"][i]) + 1
        start, dur = float(it["start_s"][i]), float(it["duration_s"][i])
        host_s, repeat = float(host[i]), int(it["repeat"][i])
        n_pre, n_dec = int(it["num_prefill_tokens"][i]), int(it["num_decode_seqs"][i])
        args = {
            "num_prefill_tokens": n_pre,
            "num_decode_seqs": n_dec,
            "num_decode_tokens": n_dec * repeat,
            "num_seqs": int(it["num_seqs"][i]),
            "num_queued": int(it["num_queued"][i]),
            "num_kv_blocks_used": int(it["num_kv_blocks_used"][i]),
            "num_preempted": int(preempted[i]),
            "repeat": repeat,
            "host_ms": round(host_s * 1e3, 6),
            "gpu_ms": round(max(dur - host_s, 0.0) * 1e3, 6),
            "energy_j": round(float(it["energy_j"][i]), 6),
        }
        name = _batch_name(n_pre, n_dec, int(it["num_seqs"][i]))
        if repeat > 1:
            name += f" x{repeat}"
        base = {"pid": pid, "tid": _ITER_TID, "cat": "iteration"}
        events.append({**base, "ph": "X", "name": name, "ts": _us(start), "dur": _us(dur),
                       "args": args})  # fmt: skip
        if comm is not None:
            args["comm_ms"] = round(float(comm[i]) * 1e3, 6)
        if repeat == 1:
            comm_s = float(comm[i]) if comm is not None else 0.0
            events += _iteration_children(base, start, dur, host_s, comm_s)
        events.append({"ph": "C", "pid": pid, "name": "replica", "ts": _us(start),
                       "args": {"queued": args["num_queued"], "batch": args["num_seqs"],
                                "kv_blocks": args["num_kv_blocks_used"]}})  # fmt: skip
    return events


def _iteration_children(
    base: dict[str, Any], start: float, dur: float, host_s: float, comm_s: float
) -> list[dict[str, Any]]:
    """``host`` then ``gpu`` slices of one iteration, and ``comm`` closing its GPU time."""
    events: list[dict[str, Any]] = []
    gpu_start = start
    if 0.0 < host_s <= dur:
        # The host prepares the step before the GPU runs it (scheduling, input prep).
        events.append({**base, "ph": "X", "name": "host", "ts": _us(start), "dur": _us(host_s)})
        events.append({**base, "ph": "X", "name": "gpu", "ts": _us(start + host_s),
                       "dur": _us(dur - host_s)})  # fmt: skip
        gpu_start = start + host_s
    if 0.0 < comm_s <= start + dur - gpu_start:
        # The collectives' total, drawn as one slice at the end of the GPU time: the cost model
        # prices them per stage (StageTimes.comm_s), not their order among the kernels.
        events.append({**base, "ph": "X", "name": "comm", "ts": _us(start + dur - comm_s),
                       "dur": _us(comm_s)})  # fmt: skip
    return events


def _phase_bounds(row: dict[str, float], end_s: float) -> list[tuple[str, float, float]]:
    """(phase, start, end) of one request; unfinished phases end at ``end_s``."""

    def at(value: float) -> float:
        return value if math.isfinite(value) else end_s

    arrival = row["arrival_s"]
    scheduled, first, done = (
        at(row["first_scheduled_s"]),
        at(row["first_token_s"]),
        at(row["completion_s"]),
    )
    phases = [("queued", arrival, scheduled)]
    if math.isfinite(row["first_scheduled_s"]):
        phases.append(("prefill", scheduled, first))
    if math.isfinite(row["first_token_s"]):
        phases.append(("decode", first, done))
    return [(name, a, max(a, b)) for name, a, b in phases]


def request_events(records: SimulationRecords) -> list[dict[str, Any]]:
    """One async span per request with its phases; rejected requests as instant events."""
    cols = records.requests.view()
    names = {int(r): r.name.lower() for r in RejectReason}
    events: list[dict[str, Any]] = []
    keys = ("arrival_s", "first_scheduled_s", "first_token_s", "completion_s")
    for i in range(len(cols["request_id"])):
        rid = int(cols["request_id"][i])
        pid = int(cols["replica_id"][i]) + 1
        reason = int(cols["reject_reason"][i])
        row = {k: float(cols[k][i]) for k in keys}
        if reason not in (RejectReason.NONE, RejectReason.NOT_FINISHED):
            events.append({"ph": "i", "s": "t", "pid": max(pid, 1), "tid": _REQ_TID,
                           "name": f"request {rid} rejected: {names[reason]}",
                           "ts": _us(row["arrival_s"]), "cat": "request"})  # fmt: skip
            continue
        n_preempt = int(cols["num_preemptions"][i])
        args = {
            "num_prompt_tokens": int(cols["num_prompt_tokens"][i]),
            "num_output_tokens": int(cols["num_output_tokens"][i]),
            "num_prefix_hit_tokens": int(cols["num_prefix_hit_tokens"][i]),
            "num_preemptions": n_preempt,
            "finished": reason == RejectReason.NONE,
        }
        decode_replica = int(cols["decode_replica_id"][i])
        if decode_replica >= 0:
            args["decode_replica_id"] = decode_replica
        title = f"request {rid}" + (f" (preempted {n_preempt}x)" if n_preempt else "")
        phases = _phase_bounds(row, records.end_s)
        base = {"pid": pid, "tid": _REQ_TID, "cat": "request", "id": rid}
        events.append({**base, "ph": "b", "name": title, "ts": _us(row["arrival_s"]), "args": args})
        for phase, a, b in phases:
            events.append({**base, "ph": "b", "name": phase, "ts": _us(a)})
            events.append({**base, "ph": "e", "name": phase, "ts": _us(b)})
        events.append({**base, "ph": "e", "name": title, "ts": _us(phases[-1][2])})
    return events


def chrome_trace(records: SimulationRecords) -> dict[str, Any]:
    """The whole trace document (``traceEvents`` plus display hints)."""
    return {
        "traceEvents": _metadata(records) + iteration_events(records) + request_events(records),
        "displayTimeUnit": "ms",
        "otherData": {"producer": "servesim", "time": "simulated"},
    }


def write_chrome_trace(records: SimulationRecords, path: str | Path) -> Path:
    """Write ``chrome_trace(records)`` as JSON to ``path``; returns the path."""
    target = Path(path)
    if target.parent != Path("."):
        target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(chrome_trace(records), sort_keys=True, separators=(",", ":"))
    target.write_text(text + "\n", encoding="utf-8")
    return target
