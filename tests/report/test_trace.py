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
