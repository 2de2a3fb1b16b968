"""Every plotted series of a run, by name, and their largest per-bin difference between two
runs (skip-ahead on and off): the summary's 100-point KV and batch series (in memory and
spilled), the report's per-replica queue / batch / KV series and token rates (200 bins,
``report.figures``), and the fixed-budget bins of a long log (``metrics.binned``).

    PYTHONPATH=src:. python -m tests.metrics.skip_series   # the table, every identity scenario
"""

from __future__ import annotations

import numpy as np

from servesim.engine import SimulationRecords
from servesim.engine.columns import _ChunkedColumns
from servesim.engine.records import ITERATION_COLUMNS
from servesim.metrics.binned import INPUT_COLUMNS, BinnedSeries
from servesim.metrics.summary import summarize
from servesim.metrics.timeseries import iteration_spans, row_states, state_integral_at
from servesim.report import figures
from servesim.report.run_data import RunData

CHUNK_ROWS = 37  # odd, so chunks cut runs of rows anywhere


def _summary_series(records: SimulationRecords) -> dict[str, np.ndarray]:
    summary = summarize(records)
    return {
        "summary.kv": np.asarray(summary.kv_utilization.series),
        "summary.batch": np.asarray(summary.batch_size.series),
    }


def _spilled_series(records: SimulationRecords) -> dict[str, np.ndarray]:
    view = records.iterations.view()
    size = records.iterations.size
    starts = range(0, size, CHUNK_ROWS)
    chunks = [{k: v[i : i + CHUNK_ROWS] for k, v in view.items()} for i in starts]
    saved = records.iterations
    records.iterations = _ChunkedColumns.from_chunks(ITERATION_COLUMNS, chunks)
    try:
        out = _summary_series(records)
    finally:
        records.iterations = saved
    return {f"spilled.{k.split('.')[1]}": v for k, v in out.items()}


def _report_series(records: SimulationRecords) -> dict[str, np.ndarray]:
    run = RunData(
        summary={},
        requests={},
        iterations=records.iterations.view(),
        replicas=[
            {"replica_id": r.replica_id, "num_kv_blocks": r.num_kv_blocks} for r in records.replicas
        ],
        end_s=records.end_s,
    )
    out: dict[str, np.ndarray] = {}
    for rid in figures._replica_ids(run):
        own = figures._replica_rows(run.iterations, run.iterations["replica_id"] == rid)
        for column in ("num_queued", "num_seqs", "num_kv_blocks_used"):
            scale = figures._kv_blocks(run, rid) if column == "num_kv_blocks_used" else 1.0
            _, y = figures._per_replica_series(run, own, column, scale)
            out[f"report.{column}[{rid}]"] = y
    it = run.iterations
    t0, t1 = figures._window(run)
    edges = np.linspace(t0, t1, figures.NUM_TIME_BINS + 1)
    start = np.asarray(it["start_s"], dtype=float)
    duration = np.maximum(np.asarray(it["duration_s"], dtype=float), 1e-12)
    # as figures.throughput draws them: each row's tokens spread over its own duration
    decode = np.asarray(it["num_decode_seqs"], dtype=float) * it["repeat"]
    prefill = np.asarray(it["num_prefill_tokens"], dtype=float)
    for name, tokens in (("prefill", prefill), ("decode", decode)):
        g = figures.integral_at(edges, start, start + duration, tokens / duration)
        out[f"report.{name}_tokens"] = np.diff(g)
    return out


def _binned_series(records: SimulationRecords, num_bins: int) -> dict[str, np.ndarray]:
    view = records.iterations.view()
    binned = BinnedSeries(num_bins=num_bins)
    size = records.iterations.size
    for i in range(0, size, CHUNK_ROWS):
        binned.add({k: view[k][i : i + CHUNK_ROWS] for k in INPUT_COLUMNS if k in view})
    binned.finish()
    rows = binned.rows()
    out: dict[str, np.ndarray] = {}
    for name in ("num_queued", "num_seqs", "num_kv_blocks_used", "num_decode_seqs"):
        # num_decode_seqs holds the bin's decode tokens (BinnedSeries.rows)
        out[f"binned{num_bins}.{name}"] = rows[name]
    return out


def plotted_series(records: SimulationRecords) -> dict[str, np.ndarray]:
    """Every plotted series of ``records`` by name (module docstring)."""
    return {
        **_summary_series(records),
        **_spilled_series(records),
        **_report_series(records),
        # a log binned for the report has >= 128 rows a bin (run_data.LOAD_BUDGET_ROWS / 4096
        # bins); these logs have 1,700-6,200 rows: 32 bins is that, 256 is finer
        **_binned_series(records, 32),
        **_binned_series(records, 256),
    }


def state_bins(records: SimulationRecords, edges: np.ndarray) -> dict[str, np.ndarray]:
    """Per bin of ``edges``, the KV block-seconds and sequence-seconds of every replica,
    unrounded (the summary's series before its 6 significant digits)."""
    it = records.iterations.view()
    rid, start = it["replica_id"], it["start_s"]
    end = start + it["duration_s"]
    names = ("num_kv_blocks_used", "num_seqs")
    seg_end, values, slope = row_states(it, start, end, iteration_spans(rid, start, end), names)
    kv = state_integral_at(edges, start, seg_end, values["num_kv_blocks_used"], slope)
    seqs = state_integral_at(edges, start, seg_end, values["num_seqs"], None)
    return {"kv": np.diff(kv), "seqs": np.diff(seqs)}


def uncut_bins(records: SimulationRecords, edges: np.ndarray) -> np.ndarray:
    """Which bins no edge of cuts a run row of several ticks (whose ticks the row spreads)."""
    it = records.iterations.view()
    run = (it["seq_s"] > 0) & (it["repeat"] > 1)
    a = it["start_s"][run]
    b = a + it["duration_s"][run]
    inside = ((edges[:, None] > a[None, :]) & (edges[:, None] < b[None, :])).any(axis=1)
    return ~(inside[:-1] | inside[1:])


def max_relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b| / |b|`` over the bins (relative to the series' largest value where
    ``|b|`` is under a millionth of it), 0 for identical series; inf when the lengths differ."""
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    top = float(np.max(np.abs(b))) or 1.0
    # a bin of the rounding's dust (1e-9 where stepping gives 0) counts against the peak
    scale = np.where(np.abs(b) > 1e-6 * top, np.abs(b), top)
    return float(np.max(np.abs(a - b) / scale))


def differences(fast: SimulationRecords, slow: SimulationRecords) -> dict[str, float]:
    """Per series name, the largest per-bin relative difference of ``fast`` from ``slow``."""
    a, b = plotted_series(fast), plotted_series(slow)
    return {k: max_relative_difference(a[k], b[k]) for k in sorted(b)}


def main() -> None:
    """Print the largest difference per series kind and scenario."""
    from tests.engine.test_skip_identity import SCENARIOS, _run

    worst: dict[str, tuple[float, str]] = {}
    for name in sorted(SCENARIOS):
        diffs = differences(_run(name, True), _run(name, False))
        kinds: dict[str, float] = {}
        for key, value in diffs.items():
            kind = key.split("[")[0]
            kinds[kind] = max(kinds.get(kind, 0.0), value)
            if value > worst.get(kind, (-1.0, ""))[0]:
                worst[kind] = (value, name)
        print(name, " ".join(f"{k}={v:.2e}" for k, v in kinds.items()))
    print("worst:")
    for kind, (value, name) in sorted(worst.items()):
        print(f"  {kind:36s} {value:.3e}  ({name})")


if __name__ == "__main__":
    main()
