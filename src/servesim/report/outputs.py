"""Writing one run's output files: ``summary.json``, the per-request table and a plot.

Takes plain data (the summary's JSON text, the per-request columns, the KV-utilisation
series) so it sits below ``servesim.api``; ``servesim.api.write_outputs`` passes a
``Result``'s parts here.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from servesim.core.errors import ServesimError
from servesim.metrics import TimeSeriesStats


def write_run_outputs(
    out_dir: str | Path,
    *,
    summary_json: str,
    columns: Callable[[], dict[str, np.ndarray]],
    table: Callable[[], Any],
    kv_utilization: TimeSeriesStats,
    table_format: str = "parquet",
) -> list[str]:
    """Write ``summary.json``, ``requests.parquet`` (or ``.csv``) and ``latency.png``.

    ``columns`` and ``table`` build the per-request columns / ``pyarrow.Table`` when needed
    (pyarrow is checked for before the table is built, to name the missing extra). The plot
    needs matplotlib; without it that file is skipped and a note says so. Returns one line
    per file written or skipped, for the caller to show.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(summary_json, encoding="utf-8")
    notes = [f"wrote {out / 'summary.json'}"]
    if table_format == "csv":
        write_csv(columns(), out / "requests.csv")
        notes.append(f"wrote {out / 'requests.csv'}")
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ServesimError(
                "requests.parquet needs pyarrow (pip install 'servesim[parquet]'); "
                "or use --format csv"
            ) from None
        pq.write_table(table(), out / "requests.parquet")
        notes.append(f"wrote {out / 'requests.parquet'}")
    notes.append(write_latency_plot(columns(), kv_utilization, out / "latency.png"))
    return notes


def write_csv(columns: dict[str, np.ndarray], path: Path) -> None:
    """The columns as a CSV file with a header; NaN is written as an empty cell."""
    names = list(columns)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in zip(*(columns[n].tolist() for n in names), strict=True):
            writer.writerow(["" if isinstance(v, float) and v != v else v for v in row])


def write_latency_plot(
    columns: dict[str, np.ndarray], kv_utilization: TimeSeriesStats, path: Path
) -> str:
    """Latency CDFs and KV utilisation over time; skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"skipped {path.name}: matplotlib is not installed (pip install matplotlib)"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("ttft_s", "tpot_s", "e2e_s"):
        values = np.sort(columns[name][np.isfinite(columns[name])])
        if values.size:
            left.plot(values, np.arange(1, values.size + 1) / values.size, label=name[:-2])
    left.set_xscale("log")
    left.set_xlabel("seconds")
    left.set_ylabel("fraction of requests")
    left.set_title("latency CDF")
    left.legend()
    right.plot(kv_utilization.series_t_s, kv_utilization.series)
    right.set_xlabel("simulated time (s)")
    right.set_ylabel("KV blocks in use (fraction)")
    right.set_title("KV cache utilisation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"
