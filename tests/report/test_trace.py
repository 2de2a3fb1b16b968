"""``simulate --trace-out``: valid Trace Event Format JSON with the expected events."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servesim.api import simulate
from servesim.report.trace import chrome_trace

PHASES = {"queued", "prefill", "decode"}


@pytest.fixture(scope="module")
def trace(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / "trace.json").read_text(encoding="utf-8"))


def test_every_event_has_the_fields_its_phase_needs(trace: dict[str, Any]) -> None:
    assert trace["displayTimeUnit"] == "ms"
    for event in trace["traceEvents"]:
        assert {"ph", "pid", "name"} <= set(event), event
        if event["ph"] != "M":
            assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0
        if event["ph"] == "X":
            assert event["dur"] >= 0
        if event["ph"] in ("b", "e"):
            assert event["cat"] == "request" and isinstance(event["id"], int)


def test_iterations_match_the_records(out_dir: Path, trace: dict[str, Any]) -> None:
    iterations = [e for e in trace["traceEvents"] if e["ph"] == "X" and "args" in e]
    rows = _iteration_rows(out_dir)
    assert len(iterations) == len(rows["start_s"])
    total_us = sum(e["dur"] for e in iterations)
    assert total_us == pytest.approx(float(np.sum(rows["duration_s"])) * 1e6, rel=1e-9)
    # host + GPU children split a single iteration's slice exactly (emitted right after it)
    events = trace["traceEvents"]
    num_split = 0
    for i, parent in enumerate(events[:-2]):
        host, gpu = events[i + 1], events[i + 2]
        if "args" not in parent or parent["ph"] != "X" or host.get("name") != "host":
            continue
        num_split += 1
        assert gpu["name"] == "gpu" and host["ts"] == parent["ts"]
        assert gpu["ts"] == pytest.approx(host["ts"] + host["dur"], abs=0.002)
        assert host["dur"] + gpu["dur"] == pytest.approx(parent["dur"], abs=0.002)
        assert parent["args"]["host_ms"] * 1e3 == pytest.approx(host["dur"], abs=0.002)
    assert num_split > 0, "no host/gpu split drawn"


def _iteration_rows(out_dir: Path) -> dict[str, np.ndarray]:
    from servesim.report.run_data import load_run

    return load_run(out_dir).iterations


def test_each_request_is_one_span_with_ordered_phases(trace: dict[str, Any]) -> None:
    spans: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] in ("b", "e"):
            spans[e["id"]].append(e)
    assert len(spans) == 40
    for events in spans.values():
        outer_begin, outer_end = events[0], events[-1]
        assert outer_begin["name"].startswith("request ")
        assert outer_end["name"] == outer_begin["name"]
        inner = events[1:-1]
        names = [e["name"] for e in inner[::2]]
        assert names == ["queued", "prefill", "decode"]  # every request of this run finished
        times = [e["ts"] for e in events]
        assert times[1:-1] == sorted(times[1:-1])  # phases follow one another
        assert outer_begin["ts"] <= times[1] and times[-2] <= outer_end["ts"]


def test_a_preempted_request_says_so() -> None:
    # A KV cache too small for the batch: requests get preempted (recompute).
    result = simulate({"num_requests": 60, "cache": {"num_kv_blocks": 120},
                       "workload": {"preset": "sharegpt-vidur", "rate_per_s": 30}})  # fmt: skip
    assert result.summary.num_preemptions > 0
    events = chrome_trace(result.records)["traceEvents"]
    marked = [e for e in events if e["ph"] == "b" and "preempted" in e["name"]]
    assert marked and all(e["args"]["num_preemptions"] > 0 for e in marked)
    assert sum(e["args"]["num_preempted"] for e in events if e["ph"] == "X" and "args" in e) == (
        result.summary.num_preemptions
    )


def test_the_same_run_gives_the_same_trace_bytes(tmp_path: Path) -> None:
    from servesim.report.trace import write_chrome_trace

    config = {"num_requests": 15, "seed": 5}
    a = write_chrome_trace(simulate(config).records, tmp_path / "a.json").read_bytes()
    b = write_chrome_trace(simulate(config).records, tmp_path / "b.json").read_bytes()
    assert a == b


class _Rows:
    """Just enough of ``SimulationRecords`` for ``iteration_events``: the iteration columns."""

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self.iterations = self
        self._columns = columns

    def view(self) -> dict[str, np.ndarray]:
        return self._columns


def _rows(**extra: list[float]) -> _Rows:
    base: dict[str, list[Any]] = {
        "replica_id": [0, 0],
        "start_s": [0.0, 0.010],
        "duration_s": [0.010, 0.030],
        "host_s": [0.002, 0.0],
        "repeat": [1, 3],
        "num_prefill_tokens": [512, 0],
        "num_decode_seqs": [4, 8],
        "num_seqs": [5, 8],
        "num_queued": [0, 0],
        "num_kv_blocks_used": [40, 44],
        "energy_j": [1.0, 2.0],
        **extra,
    }
    return _Rows({k: np.asarray(v) for k, v in base.items()})


def test_comm_slice_closes_the_gpu_time_of_one_iteration() -> None:
    from servesim.report.trace import iteration_events

    events = iteration_events(_rows(comm_s=[0.003, 0.006]))
    comm = [e for e in events if e.get("name") == "comm"]
    assert len(comm) == 1  # the x3 run of decode iterations has no children
    (slice_,) = comm
    assert slice_["ts"] == pytest.approx(7000.0) and slice_["dur"] == pytest.approx(3000.0)
    gpu = next(e for e in events if e.get("name") == "gpu")
    assert gpu["ts"] <= slice_["ts"] and slice_["ts"] + slice_["dur"] == pytest.approx(
        gpu["ts"] + gpu["dur"]
    )
    parents = [e for e in events if e["ph"] == "X" and "args" in e]
    assert [p["args"]["comm_ms"] for p in parents] == [3.0, 6.0]


def test_no_comm_slice_without_collectives_or_the_column() -> None:
    from servesim.report.trace import iteration_events

    assert not [e for e in iteration_events(_rows()) if e.get("name") == "comm"]
    events = iteration_events(_rows(comm_s=[0.0, 0.0]))
    assert not [e for e in events if e.get("name") == "comm"]
    assert all("comm_ms" not in e.get("args", {}) for e in iteration_events(_rows()))


def test_tensor_parallel_run_draws_its_collectives() -> None:
    result = simulate(
        {
            "model": "llama-3.1-8b",
            "hardware": {"gpu": "h100-sxm", "tp": 2},
            "workload": {"preset": "sharegpt-vidur", "rate_per_s": 4.0, "num_requests": 20},
            "seed": 1,
        }
    )
    rows = result.records.iterations.view()
    assert (rows["comm_s"] > 0).all() and (rows["comm_s"] < rows["duration_s"]).all()
    events = chrome_trace(result.records)["traceEvents"]
    comm = [e for e in events if e.get("name") == "comm"]
    single = rows["repeat"] == 1
    assert len(comm) == int(single.sum())
    expected = sorted(round(float(c) * 1e6, 3) for c in rows["comm_s"][single])
    assert sorted(e["dur"] for e in comm) == pytest.approx(expected)
