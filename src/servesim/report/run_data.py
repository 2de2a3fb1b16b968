"""The files of an ``--out`` directory that a report is drawn from, written and read back.

``servesim simulate --out DIR`` writes ``summary.json`` and the per-request table
(``servesim.report.outputs``); this module adds what the HTML report needs beyond them:

- ``iterations.parquet`` / ``iterations.csv``: the engine's per-iteration log
  (``servesim.engine.records.ITERATION_COLUMNS``: replica, start, duration, batch composition,
  KV blocks in use, queue length, host time, preemptions).
- ``replicas.json``: static facts per replica (pool, GPU, KV blocks) and the autoscaler's
  events, so "replicas up" can be drawn.

``load_run(DIR)`` reads a directory back into a ``RunData`` whichever table format it holds,
so ``servesim report DIR`` works on the plain install (CSV) and with pyarrow (parquet). A long
run's iteration log is written a chunk at a time and, past ``LOAD_BUDGET_ROWS``, read back
into fixed-budget time bins (``servesim.metrics.binned``), so neither side holds it whole.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from servesim.cluster.stats import ClusterStats
from servesim.core.errors import ServesimError
from servesim.engine.records import SimulationRecords
from servesim.metrics.binned import COUNT_COLUMNS, INPUT_COLUMNS, BinnedSeries

SUMMARY_FILE = "summary.json"
REPLICAS_FILE = "replicas.json"
# An iteration log larger than this (rows in parquet, bytes in CSV) is read a chunk at a time
# into fixed-budget time bins (``metrics.binned``) instead of whole (~120 bytes a row loaded).
LOAD_BUDGET_ROWS = 1 << 19
LOAD_BUDGET_CSV_BYTES = 64 << 20
_READ_CHUNK_ROWS = 1 << 16
_BINNED_COLUMNS = INPUT_COLUMNS


@dataclass(frozen=True, slots=True)
class RunData:
    """One run as its ``--out`` directory holds it.

    Attributes:
        summary: ``summary.json`` as a mapping (config, workload, summary, cluster).
        requests: per-request columns (``Result.requests_columns``), numpy arrays.
        iterations: per-iteration columns; empty when the directory predates them.
        replicas: one mapping per replica (``ReplicaInfo`` fields plus ``initially_up``).
        scale_events: ``(time_s, replica, event)`` of the autoscaler.
        end_s: simulated time when the run stopped.
        iterations_bin_s: 0 when ``iterations`` is the whole log; else the log was too long to
            load and ``iterations`` holds its fixed-width time bins of this width
            (``BinnedSeries.rows``: time-weighted means, counts summed).
    """

    summary: dict[str, Any]
    requests: dict[str, np.ndarray]
    iterations: dict[str, np.ndarray] = field(default_factory=dict)
    replicas: list[dict[str, Any]] = field(default_factory=list)
    scale_events: list[tuple[float, int, str]] = field(default_factory=list)
    end_s: float = 0.0
    iterations_bin_s: float = 0.0


def replicas_document(records: SimulationRecords, cluster: ClusterStats | None) -> dict[str, Any]:
    """``replicas.json``: replica facts, which replicas were up at t=0, the scale events."""
    events = list(cluster.scale_events) if cluster is not None else []
    up_s = list(cluster.replica_up_s) if cluster is not None else []
    first_event: dict[int, str] = {}
    for _, replica, event in events:
        first_event.setdefault(replica, event)
    replicas = []
    for info in records.replicas:
        rid = info.replica_id
        # An autoscaled replica that starts later has "start" as its first event; one that
        # never started has no event and no up-time.
        never_up = rid not in first_event and rid < len(up_s) and up_s[rid] == 0.0
        initially_up = first_event.get(rid) != "start" and not never_up
        replicas.append({**asdict(info), "initially_up": initially_up})
    return {
        "replicas": replicas,
        "scale_events": [[float(t), int(r), str(e)] for t, r, e in events],
        "end_s": float(records.end_s),
    }


def write_table(columns: dict[str, np.ndarray], path_stem: Path, table_format: str) -> Path:
    """Write ``columns`` as ``<stem>.parquet`` or ``<stem>.csv``; returns the path written."""
    if table_format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = path_stem.with_suffix(".parquet")
        arrays = {k: pa.array(v.tolist() if v.dtype == object else v) for k, v in columns.items()}
        pq.write_table(pa.table(arrays), path)
        return path
    path = path_stem.with_suffix(".csv")
    write_csv(columns, path)
    return path


def write_csv(columns: dict[str, np.ndarray], path: Path) -> None:
    """The columns as a CSV file with a header; NaN is written as an empty cell."""
    names = list(columns)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        _write_csv_rows(writer, columns, names)


def _write_csv_rows(writer: Any, columns: dict[str, np.ndarray], names: list[str]) -> None:
    for row in zip(*(columns[n].tolist() for n in names), strict=True):
        writer.writerow(["" if isinstance(v, float) and v != v else v for v in row])


def write_table_chunks(
    chunks: Iterable[dict[str, np.ndarray]], path_stem: Path, table_format: str
) -> Path:
    """Write a table given a chunk at a time (one parquet row group or a run of CSV rows
    per chunk), so a table that spilled to disk is never whole in memory; returns the path.
    Same columns and values as ``write_table`` of the joined chunks."""
    if table_format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = path_stem.with_suffix(".parquet")
        writer = None
        try:
            for chunk in chunks:
                table = pa.table(
                    {k: pa.array(v.tolist() if v.dtype == object else v) for k, v in chunk.items()}
                )
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        return path
    path = path_stem.with_suffix(".csv")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer_csv = csv.writer(handle)
        names: list[str] | None = None
        for chunk in chunks:
            if names is None:
                names = list(chunk)
                writer_csv.writerow(names)
            _write_csv_rows(writer_csv, chunk, names)
    return path


def write_run_data(
    out_dir: Path, records: SimulationRecords, cluster: ClusterStats | None, table_format: str
) -> list[str]:
    """Write the iteration log and ``replicas.json``; one note per file written. A log that
    spilled to disk (a long run) is written a chunk at a time."""
    stem = out_dir / "iterations"
    if records.iterations.is_spilled:
        path = write_table_chunks(records.iterations.chunks(), stem, table_format)
    else:
        path = write_table(records.iterations.view(), stem, table_format)
    doc = replicas_document(records, cluster)
    replicas = out_dir / REPLICAS_FILE
    replicas.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return [f"wrote {path}", f"wrote {replicas}"]


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ServesimError(f"{path}: empty file (no header)")
    header, body = rows[0], rows[1:]
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        cells = [row[j] for row in body]
        try:
            out[name] = np.array([float(c) if c != "" else np.nan for c in cells], dtype=float)
        except ValueError:  # a text column (slo_class, reject_reason)
            out[name] = np.array(cells, dtype=object)
    return out


def _read_table(out_dir: Path, stem: str, required: bool) -> dict[str, np.ndarray]:
    parquet, text = out_dir / f"{stem}.parquet", out_dir / f"{stem}.csv"
    if parquet.is_file():
        try:
            import pyarrow.parquet as pq
        except ImportError:
            if not text.is_file():
                raise ServesimError(
                    f"{parquet} needs pyarrow to read (pip install 'servesim[parquet]')"
                ) from None
        else:
            import pyarrow as pa

            table = pq.read_table(parquet)
            out: dict[str, np.ndarray] = {}
            for name in table.column_names:
                col = table.column(name)
                if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                    out[name] = np.array(col.to_pylist(), dtype=object)
                else:
                    out[name] = col.to_numpy()
            return out
    if text.is_file():
        return _read_csv(text)
    if required:
        raise ServesimError(f"{out_dir}: no {stem}.parquet or {stem}.csv (write it with --out)")
    return {}


def load_run(out_dir: str | Path) -> RunData:
    """Read an ``--out`` directory back (``summary.json``, requests, iterations, replicas)."""
    folder = Path(out_dir)
    summary_path = folder / SUMMARY_FILE
    if not folder.is_dir():
        raise ServesimError(f"{folder}: is not a folder")
    if not summary_path.is_file():
        raise ServesimError(f"{folder}: no {SUMMARY_FILE} (is it a simulate --out folder?)")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    requests = _read_table(folder, "requests", required=True)
    binned = _binned_iterations(folder)
    bin_s = 0.0
    if binned is None:
        iterations = _read_table(folder, "iterations", required=False)
    else:
        iterations, bin_s = binned.rows(), binned.width_s
    replicas_path = folder / REPLICAS_FILE
    doc: dict[str, Any] = {}
    if replicas_path.is_file():
        doc = json.loads(replicas_path.read_text(encoding="utf-8"))
    return RunData(
        summary=summary,
        requests=requests,
        iterations=iterations,
        replicas=list(doc.get("replicas", [])),
        scale_events=[(float(t), int(r), str(e)) for t, r, e in doc.get("scale_events", [])],
        end_s=float(doc.get("end_s", summary.get("summary", {}).get("end_s", 0.0))),
        iterations_bin_s=bin_s,
    )


def _binned_iterations(folder: Path) -> BinnedSeries | None:
    """The iteration log in time bins when it is over the load budget (else None)."""
    chunks = _large_table_chunks(folder / "iterations.parquet", folder / "iterations.csv")
    if chunks is None:
        return None
    binned = BinnedSeries()
    for chunk in chunks:
        size = chunk["start_s"].size
        for name in COUNT_COLUMNS:  # absent from folders written before the column was
            chunk.setdefault(name, np.zeros(size))
        binned.add(chunk)
    binned.finish()
    return binned


def _large_table_chunks(parquet: Path, text: Path) -> Iterator[dict[str, np.ndarray]] | None:
    """Chunks of the binned columns of a table over the load budget, or None."""
    if parquet.is_file():
        try:
            import pyarrow.parquet as pq
        except ImportError:
            pass
        else:
            handle = pq.ParquetFile(parquet)
            if handle.metadata.num_rows <= LOAD_BUDGET_ROWS:
                return None
            names = [n for n in _BINNED_COLUMNS if n in handle.schema_arrow.names]
            return (
                {n: batch.column(n).to_numpy(zero_copy_only=False) for n in names}
                for batch in handle.iter_batches(batch_size=_READ_CHUNK_ROWS, columns=names)
            )
    if text.is_file() and text.stat().st_size > LOAD_BUDGET_CSV_BYTES:
        return _csv_chunks(text)
    return None


def _csv_chunks(path: Path) -> Iterator[dict[str, np.ndarray]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        index = {n: header.index(n) for n in _BINNED_COLUMNS if n in header}
        while rows := list(itertools.islice(reader, _READ_CHUNK_ROWS)):
            yield {
                n: np.array([float(r[j]) if r[j] != "" else np.nan for r in rows])
                for n, j in index.items()
            }
