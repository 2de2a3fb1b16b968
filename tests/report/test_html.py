"""The HTML report: written by ``simulate --out`` and ``servesim report``, offline, complete,
deterministic; the charts' data checked against hand-computed series."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from servesim.report.figures import NUM_TIME_BINS, replica_timelines, replicas_up, throughput
from servesim.report.html import REPORT_FILE
from servesim.report.run_data import RunData, load_run
from tests.report.conftest import SMALL_RUN, run_cli

CHART_IDS = ("latency-cdf", "latency-vs-arrival", "throughput", "replica-timelines", "replicas-up")


def test_simulate_out_writes_a_self_contained_report(out_dir: Path) -> None:
    html = (out_dir / REPORT_FILE).read_text(encoding="utf-8")
    for element in CHART_IDS:
        assert f'id="fig-{element}"' in html
    # plotly's JS is inside the page: no script or stylesheet is fetched from anywhere
    assert "Plotly.newPlot" in html and len(html) > 3_000_000
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=\"http", html)
    # what ran: the effective scheduler settings and the workload
    assert "vLLM 0.6 (V0) rules" in html and "chunked prefill on (automatic" in html
    assert "sharegpt-vidur" in html


def test_report_command_rebuilds_the_same_page(out_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.html"
    assert run_cli(["report", str(out_dir), "--out", str(again)]) == 0
    assert again.read_bytes() == (out_dir / REPORT_FILE).read_bytes()


def test_report_from_a_csv_folder(tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    assert run_cli([*SMALL_RUN, "--out", str(folder), "--format", "csv"]) == 0
    assert (folder / "requests.csv").is_file() and (folder / "iterations.csv").is_file()
    run = load_run(folder)
    assert run.requests["ttft_s"].dtype == float and run.requests["slo_class"][0] == "default"
    (folder / REPORT_FILE).unlink()
    assert run_cli(["report", str(folder)]) == 0
    assert 'id="fig-replica-timelines"' in (folder / REPORT_FILE).read_text(encoding="utf-8")


def test_report_of_a_folder_without_a_run_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["report", str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err


def _run(iterations: dict[str, list[float]], **kw: object) -> RunData:
    cols = {k: np.asarray(v, dtype=float) for k, v in iterations.items()}
    requests = {"completion_s": np.array([0.5, 1.5, np.nan]), "arrival_s": np.zeros(3)}
    defaults: dict[str, object] = {"end_s": 2.0, "replicas": [
        {"replica_id": 0, "num_kv_blocks": 100, "pool": "p", "gpu_name": "g", "initially_up": True}
    ]}  # fmt: skip
    defaults.update(kw)
    return RunData(summary={}, requests=requests, iterations=cols, **defaults)  # type: ignore[arg-type]


ONE_ITERATION = {
    "replica_id": [0],
    "start_s": [0.0],
    "duration_s": [1.0],
    "num_prefill_tokens": [100],
    "num_decode_seqs": [3],
    "num_seqs": [4],
    "num_kv_blocks_used": [50],
    "num_queued": [2],
    "repeat": [1],
    "num_preempted": [1],
}


def test_replica_series_are_time_weighted_over_the_run() -> None:
    # One iteration on [0, 1) of a 2 s run: its values in the first half, idle (0) after.
    fig = replica_timelines(_run(ONE_ITERATION))
    queued, batch, kv, preempt = (np.asarray(t.y) for t in fig.data)
    half = NUM_TIME_BINS // 2
    assert np.allclose(queued[:half], 2) and np.allclose(queued[half:], 0)
    assert np.allclose(batch[:half], 4) and np.allclose(kv[:half], 0.5)
    # one preemption in one bin of width 2/NUM_TIME_BINS s
    assert preempt.sum() * 2.0 / NUM_TIME_BINS == pytest.approx(1.0)


def test_throughput_spreads_tokens_over_each_iteration() -> None:
    fig = throughput(_run(ONE_ITERATION))
    prefill, decode, done = (np.asarray(t.y) for t in fig.data)
    half = NUM_TIME_BINS // 2
    assert np.allclose(prefill[:half], 100.0) and np.allclose(prefill[half:], 0.0)
    assert np.allclose(decode[:half], 3.0)
    assert done.sum() * 2.0 / NUM_TIME_BINS == pytest.approx(2.0)  # two completions


def test_replicas_up_follows_the_scale_events() -> None:
    replicas = [
        {"replica_id": 0, "num_kv_blocks": 1, "initially_up": True},
        {"replica_id": 1, "num_kv_blocks": 1, "initially_up": False},
    ]
    events = [(1.0, 1, "start"), (1.5, 1, "ready"), (1.7, 1, "drain"), (1.9, 1, "stop")]
    fig = replicas_up(_run(ONE_ITERATION, replicas=replicas, scale_events=events))
    paid, taking = (list(t.y) for t in fig.data)
    assert list(fig.data[0].x) == [0.0, 1.0, 1.5, 1.7, 1.9, 2.0]
    assert paid == [1, 2, 2, 2, 1, 1]
    assert taking == [1, 1, 2, 1, 1, 1]
