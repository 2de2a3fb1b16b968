"""A user's own ``vllm bench serve`` result, replayed: predicted vs measured per metric.

``load_vllm_bench(path)`` reads the JSON ``vllm bench serve --save-result`` writes
(``vllm/benchmarks/serve.py``): the traffic keys (``request_rate``, ``burstiness``,
``max_concurrency``), the aggregates (``mean_ttft_ms``, ``p99_itl_ms``, ``request_throughput``,
...) and, with ``--save-detailed``, the per-request ``input_lens``, ``output_lens``, ``ttfts``
and ``itls``. ``replay_vllm_bench`` sends the same requests (in order, their measured output
lengths as exact lengths) with the same client: at most ``max_concurrency`` in flight, paced
at ``request_rate`` with gamma gaps of shape ``burstiness`` (``inf``: all at once), and
compares servesim's figures, written in the same schema (``Result.to_vllm_bench``), key by
key. Aggregates missing from the file are derived from the per-request lists when present.
vLLM rescales its paced send times so the last lands at ``num_prompts / request_rate``; the
replay draws the gaps without that rescaling (a 1-2% difference in offered load).

``load_vllm_bench(path, max_requests=N)`` keeps only the first N requests sent (a short
replay, as ``servesim calibrate --from-runs`` needs); the measured figures are then those of
the same N requests, from the per-request lists, never the file's aggregates over all.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from servesim.api import simulate
from servesim.config import SimConfig
from servesim.core.errors import ConfigError
from servesim.perf.types import PerfModel
from servesim.workload.native import write_requests
from servesim.workload.request import Request

# The metrics compared, in print order: (key, unit).
COMPARED = (
    ("mean_ttft_ms", "ms"),
    ("median_ttft_ms", "ms"),
    ("p99_ttft_ms", "ms"),
    ("mean_tpot_ms", "ms"),
    ("median_tpot_ms", "ms"),
    ("p99_tpot_ms", "ms"),
    ("mean_itl_ms", "ms"),
    ("median_itl_ms", "ms"),
    ("p99_itl_ms", "ms"),
    ("mean_e2el_ms", "ms"),
    ("median_e2el_ms", "ms"),
    ("p99_e2el_ms", "ms"),
    ("request_throughput", "req/s"),
    ("output_throughput", "tok/s"),
    ("total_token_throughput", "tok/s"),
    ("duration", "s"),
    ("completed", "requests"),
)


@dataclass(frozen=True, slots=True)
class VllmBenchRun:
    """One ``vllm bench serve`` result file.

    Attributes:
        path: the file.
        request_rate: requests per second of the pacing (``math.inf``: all at once).
        burstiness: gamma shape of the pacing gaps (1: Poisson).
        max_concurrency: the client's cap on requests in flight (None: none).
        input_lens, output_lens: per successful request, in send order.
        num_failed: requests the file lists as failed (not replayed).
        measured: every numeric aggregate key of the file, plus those derived from the
            per-request lists when the file lacks them.
        model_id: the file's ``model_id`` (informational).
        num_dropped: requests after the first ``max_requests`` (not replayed, not measured).
    """

    path: Path
    request_rate: float
    burstiness: float
    max_concurrency: int | None
    input_lens: tuple[int, ...]
    output_lens: tuple[int, ...]
    num_failed: int = 0
    measured: Mapping[str, float] = field(default_factory=dict)
    model_id: str | None = None
    num_dropped: int = 0


def _rate(value: Any) -> float:
    if value is None or value == "inf" or value == float("inf"):
        return math.inf
    rate = float(value)
    if not rate > 0:
        raise ConfigError("request_rate", value, "must be > 0 or inf")
    return rate


def _derived(raw: Mapping[str, Any], ok: list[bool]) -> dict[str, float]:
    """Aggregates computed from the per-request lists (vLLM's definitions: TPOT of a request
    is (latency - TTFT) / (output tokens - 1), over requests with more than one token)."""
    out: dict[str, float] = {}
    ttfts = raw.get("ttfts") or []
    itls = raw.get("itls") or []
    lists: dict[str, list[float]] = {
        "ttft": [t for t, good in zip(ttfts, ok, strict=False) if good],
        "itl": [g for gaps, good in zip(itls, ok, strict=False) if good for g in gaps],
        "e2el": [],
        "tpot": [],
    }
    latencies = raw.get("latencies") or [t + sum(g) for t, g in zip(ttfts, itls, strict=False)]
    rows = zip(ttfts, latencies, raw.get("output_lens") or [], ok, strict=False)
    for ttft, latency, num_out, good in rows:
        if good:
            lists["e2el"].append(latency)
            if int(num_out) > 1:
                lists["tpot"].append((latency - ttft) / (int(num_out) - 1))
    for name, values in lists.items():
        if values:
            arr = np.asarray(values, dtype=np.float64) * 1e3
            out[f"mean_{name}_ms"] = float(arr.mean())
            out[f"median_{name}_ms"] = float(np.median(arr))
            out[f"p99_{name}_ms"] = float(np.percentile(arr, 99))
    return out


PER_REQUEST_KEYS = ("input_lens", "output_lens", "errors", "ttfts", "itls", "latencies")


def _head(raw: dict[str, Any], max_requests: int) -> dict[str, Any]:
    """``raw`` with its per-request lists cut to the first ``max_requests`` requests."""
    return {
        k: (v[:max_requests] if k in PER_REQUEST_KEYS and isinstance(v, list) else v)
        for k, v in raw.items()
    }


def _read_result(p: Path) -> dict[str, Any]:
    """The result file's JSON object, checked to carry equal-length per-request lists."""
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError("--vllm-bench", str(p), f"cannot read it as JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("--vllm-bench", str(p), "is not a vllm bench serve result object")
    inputs, outputs = raw.get("input_lens"), raw.get("output_lens")
    if not inputs or not outputs or len(inputs) != len(outputs):
        raise ConfigError(
            "--vllm-bench",
            str(p),
            "needs per-request input_lens and output_lens of equal length "
            "(run vllm bench serve with --save-result --save-detailed)",
        )
    return raw


def load_vllm_bench(path: str | Path, max_requests: int | None = None) -> VllmBenchRun:
    """Read a ``vllm bench serve`` result JSON (module docstring).

    Args:
        path: the file.
        max_requests: keep only the first this many requests (None: all); the measured
            figures are then derived from their per-request lists alone.
    """
    p = Path(path)
    raw = _read_result(p)
    if max_requests is not None and max_requests < 1:
        raise ConfigError("max_requests", max_requests, "must be >= 1")
    num_dropped = 0
    if max_requests is not None and len(raw["input_lens"]) > max_requests:
        num_dropped = len(raw["input_lens"]) - max_requests
        raw = _head(raw, max_requests)
    inputs, outputs = raw["input_lens"], raw["output_lens"]
    errors = raw.get("errors") or [""] * len(inputs)
    ok = [int(o) > 0 and not e for o, e in zip(outputs, errors, strict=False)]
    cap = raw.get("max_concurrency")
    if cap is not None and int(cap) < 1:
        raise ConfigError("max_concurrency", cap, "must be >= 1")
    burstiness = float(raw.get("burstiness", 1.0) or 1.0)
    if not burstiness > 0:
        raise ConfigError("burstiness", burstiness, "must be > 0")
    measured = _derived(raw, ok)
    if not num_dropped:  # the file's aggregates describe exactly the requests kept
        measured.update(
            {
                k: float(v)
                for k, v in raw.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        )
    else:
        measured["completed"] = float(ok.count(True))
    return VllmBenchRun(
        path=p,
        request_rate=_rate(raw.get("request_rate")),
        burstiness=burstiness,
        max_concurrency=int(cap) if cap is not None else None,
        input_lens=tuple(int(n) for n, good in zip(inputs, ok, strict=True) if good),
        output_lens=tuple(int(n) for n, good in zip(outputs, ok, strict=True) if good),
        num_failed=ok.count(False),
        measured=measured,
        model_id=raw.get("model_id"),
        num_dropped=num_dropped,
    )


def replay_workload(run: VllmBenchRun, trace_path: Path) -> dict[str, Any]:
    """The ``workload`` section sending ``run``'s requests as its client did."""
    requests = (
        Request(i, 0.0, p, o)
        for i, (p, o) in enumerate(zip(run.input_lens, run.output_lens, strict=True))
    )
    write_requests(requests, trace_path)
    workload: dict[str, Any] = {
        "trace": {"path": str(trace_path), "format": "servesim"},
        "client": {"max_concurrency": run.max_concurrency},
    }
    if math.isfinite(run.request_rate):
        cv = 1.0 / math.sqrt(run.burstiness)
        workload["arrival"] = {"kind": "gamma", "rate_per_s": run.request_rate, "cv": cv}
    return workload


@dataclass(frozen=True, slots=True)
class VllmBenchComparison:
    """Predicted (servesim's ``vllm_bench.json``) vs measured, key by key."""

    run: VllmBenchRun
    predicted: Mapping[str, Any]

    def rows(self) -> list[tuple[str, str, float, float | None, float | None]]:
        """(key, unit, predicted, measured or None, relative error or None) per metric."""
        out = []
        for key, unit in COMPARED:
            pred = self.predicted.get(key)
            if pred is None:
                continue
            meas = self.run.measured.get(key)
            err = (pred - meas) / meas if meas else None
            out.append((key, unit, float(pred), meas, err))
        return out


def replay_vllm_bench(
    run: VllmBenchRun,
    config: Mapping[str, Any],
    *,
    perf: PerfModel | None = None,
) -> VllmBenchComparison:
    """Simulate ``run`` on the deployment of ``config`` (a SimConfig mapping without a
    workload: model, hardware, scheduler, ...) and compare."""
    with tempfile.TemporaryDirectory(prefix="servesim-vllm-bench-") as folder:
        trace = Path(folder) / "requests.jsonl"
        data = {**config, "workload": replay_workload(run, trace)}
        result = simulate(SimConfig.from_dict(data), perf=perf)
        predicted = result.to_vllm_bench()
    return VllmBenchComparison(run=run, predicted=predicted)
