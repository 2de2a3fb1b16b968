"""Writing one run's output files: ``summary.json``, ``vllm_bench.json``, the per-request
table and a plot.

``vllm_bench_result`` writes a run in ``vllm bench serve``'s result-JSON schema (the dict its
``--save-result`` dumps, ``vllm/benchmarks/serve.py``): the traffic keys (``request_rate``,
``burstiness``, ``max_concurrency``), the aggregates (``completed``, ``failed``, ``duration``,
``request_throughput``, ``output_throughput``, ``total_token_throughput``, ...), ``mean_`` /
``median_`` / ``std_`` / ``p99_`` of ``ttft``, ``tpot``, ``itl`` and ``e2el`` in ms, and the
per-request lists of ``--save-detailed`` (``input_lens``, ``output_lens``, ``ttfts``,
``latencies``, ``start_times`` in s; a failed request has 0s, as vLLM writes them). Per-token
``itls`` lists are not written: servesim keeps the gap distribution, not every request's gaps.

Takes plain data (the summary's JSON text, the per-request columns, the KV-utilisation
series) so it sits below ``servesim.api``; ``servesim.api.write_outputs`` passes a
``Result``'s parts here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from servesim.core.errors import ConfigError
from servesim.engine.records import RejectReason
from servesim.metrics import Summary, TimeSeriesStats
from servesim.metrics.stats import LatencyStats
from servesim.report.run_data import write_csv, write_table_chunks

# vllm bench serve's default --metric-percentiles is "99"; servesim also has 90 and 95.
_PERCENTILES = {"p90": "p90_s", "p95": "p95_s", "p99": "p99_s"}


def _latency_keys(name: str, stats: LatencyStats) -> dict[str, float]:
    def ms(value: float | None) -> float:
        return value * 1e3 if value is not None else 0.0  # vllm: np.mean(x or 0)

    out = {
        f"mean_{name}_ms": ms(stats.mean_s),
        f"median_{name}_ms": ms(stats.p50_s),
        f"std_{name}_ms": ms(stats.std_s),
    }
    for key, attr in _PERCENTILES.items():
        out[f"{key}_{name}_ms"] = ms(getattr(stats, attr))
    return out


def vllm_bench_result(
    summary: Summary,
    requests: dict[str, np.ndarray],
    *,
    model_id: str,
    num_prompts: int,
    request_rate: float | str,
    burstiness: float,
    max_concurrency: int | None,
) -> dict[str, Any]:
    """One run as ``vllm bench serve``'s result JSON (module docstring); deterministic."""
    result: dict[str, Any] = {
        "backend": "servesim",
        "endpoint_type": "servesim",
        "label": "servesim",
        "model_id": model_id,
        "tokenizer_id": model_id,
        "num_prompts": num_prompts,
        "request_rate": request_rate,
        "burstiness": burstiness,
        "max_concurrency": max_concurrency,
        "duration": summary.duration_s,
        "completed": summary.num_completed,
        "failed": summary.num_requests - summary.num_completed,
        "total_input_tokens": summary.total_input_tokens,
        "total_output_tokens": summary.total_output_tokens,
        "request_throughput": summary.request_throughput_per_s,
        "request_goodput": None,
        "output_throughput": summary.output_throughput_tokens_per_s,
        "total_token_throughput": summary.total_throughput_tokens_per_s,
        **_per_request_lists(requests),
    }
    for name, stats in (
        ("ttft", summary.ttft),
        ("tpot", summary.tpot),
        ("itl", summary.itl),
        ("e2el", summary.e2e),
    ):
        result.update(_latency_keys(name, stats))
    return result


def _per_request_lists(requests: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    """The result's per-request lists, in request order: a request not completed (rejected,
    or still running at the end) has 0 output tokens, TTFT and latency, and an error."""
    done = requests["reject_reason"] == RejectReason.NONE
    done &= np.isfinite(requests["completion_s"])
    arrival = requests["arrival_s"]
    ttft = np.where(done, requests["first_token_s"] - arrival, 0.0)
    latency = np.where(done, requests["completion_s"] - arrival, 0.0)
    out_lens = np.where(done, requests["num_output_tokens"], 0)
    return {
        "input_lens": requests["num_prompt_tokens"].tolist(),
        "output_lens": out_lens.tolist(),
        "ttfts": ttft.tolist(),
        "latencies": latency.tolist(),
        "start_times": arrival.tolist(),
        "errors": ["" if ok else "servesim: not completed" for ok in done.tolist()],
    }


TABLE_FORMATS = ("auto", "parquet", "csv")


def has_pyarrow() -> bool:
    """Whether pyarrow can be imported (it writes and reads parquet)."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_table_format(table_format: str) -> str:
    """``parquet`` or ``csv`` for a requested format, checked before a run spends time.

    ``auto`` is parquet where pyarrow is installed and CSV on the plain install; an explicit
    ``parquet`` without pyarrow is an error naming the extra to install.
    """
    if table_format not in TABLE_FORMATS:
        raise ConfigError("--format", table_format, "must be auto, parquet or csv")
    if table_format == "auto":
        return "parquet" if has_pyarrow() else "csv"
    if table_format == "parquet" and not has_pyarrow():
        raise ConfigError(
            "--format",
            table_format,
            "parquet needs pyarrow (pip install 'servesim[parquet]'); or use --format csv",
        )
    return table_format


# Requests drawn in the latency CDFs of a long run (every k-th row): a smooth curve, bounded.
MAX_PLOT_POINTS = 100_000


def derived_request_columns(
    cols: dict[str, np.ndarray], slo_classes: list[str]
) -> dict[str, np.ndarray]:
    """The per-request table as written: the engine's columns plus ``ttft_s``, ``tpot_s``
    (more than one output token), ``e2e_s``, ``queueing_s`` (NaN where they do not apply),
    ``slo_class`` and ``reject_reason`` as names. Works on any chunk of rows."""
    cols = dict(cols)
    done = cols["reject_reason"] == RejectReason.NONE
    nan = np.full(done.shape, np.nan)
    ttft = np.where(done, cols["first_token_s"] - cols["arrival_s"], nan)
    e2e = np.where(done, cols["completion_s"] - cols["arrival_s"], nan)
    out = cols["num_output_tokens"]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(done & (out > 1), (e2e - ttft) / np.maximum(out - 1, 1), nan)
    cols["ttft_s"] = ttft
    cols["tpot_s"] = tpot
    cols["e2e_s"] = e2e
    cols["queueing_s"] = cols["first_scheduled_s"] - cols["arrival_s"]
    classes = np.asarray(slo_classes, dtype=object)
    cols["slo_class"] = classes[cols.pop("slo_class_index")]
    names = np.empty(max(RejectReason) + 1, dtype=object)
    for reason in RejectReason:
        names[reason] = reason.name.lower()
    cols["reject_reason"] = names[cols["reject_reason"].astype(np.int64)]
    return cols


def request_chunks(
    chunks: Iterable[dict[str, np.ndarray]], slo_classes: list[str]
) -> Iterator[dict[str, np.ndarray]]:
    """``derived_request_columns`` of each chunk of a request table (``RequestTable.chunks``)."""
    for chunk in chunks:
        yield derived_request_columns(chunk, slo_classes)


def _plot_sample(chunks: Iterable[dict[str, np.ndarray]], num_rows: int) -> dict[str, np.ndarray]:
    """Every k-th row's latencies (k fixed by ``num_rows``), for a bounded CDF plot."""
    stride = max(1, -(-num_rows // MAX_PLOT_POINTS))
    parts: dict[str, list[np.ndarray]] = {"ttft_s": [], "tpot_s": [], "e2e_s": []}
    start = 0
    for chunk in chunks:
        size = len(chunk["ttft_s"])
        first = (-start) % stride
        for name, values in parts.items():
            values.append(chunk[name][first::stride])
        start += size
    return {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}


def write_run_outputs(
    out_dir: str | Path,
    *,
    summary_json: str,
    vllm_bench_json: str | None = None,
    columns: Callable[[], dict[str, np.ndarray]],
    table: Callable[[], Any],
    kv_utilization: TimeSeriesStats,
    table_format: str = "auto",
    chunks: Callable[[], Iterable[dict[str, np.ndarray]]] | None = None,
    num_rows: int = 0,
) -> list[str]:
    """Write ``summary.json``, ``vllm_bench.json`` (when given), ``requests.parquet`` (or
    ``.csv``) and ``latency.png``.

    ``table_format`` goes through ``resolve_table_format`` first (``auto``: parquet with
    pyarrow, CSV without), so a missing writer fails before any file is written. ``columns``
    and ``table`` build the per-request columns / ``pyarrow.Table`` when needed. The plot
    needs matplotlib; without it that file is skipped and a note says so. Returns one line
    per file written or skipped, for the caller to show.

    ``chunks`` (with ``num_rows``), when given, yields the written table a chunk at a time
    (``request_chunks`` of a spilled ``RequestTable``): the table is then streamed to disk
    and the plot drawn from a fixed-size sample, so a long run is never whole in memory.
    """
    table_format = resolve_table_format(table_format)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(summary_json, encoding="utf-8")
    notes = [f"wrote {out / 'summary.json'}"]
    if vllm_bench_json is not None:
        (out / "vllm_bench.json").write_text(vllm_bench_json, encoding="utf-8")
        notes.append(f"wrote {out / 'vllm_bench.json'}")
    if chunks is not None:
        path = write_table_chunks(chunks(), out / "requests", table_format)
        notes.append(f"wrote {path}")
        sample = _plot_sample(chunks(), num_rows)
        notes.append(write_latency_plot(sample, kv_utilization, out / "latency.png"))
        return notes
    if table_format == "csv":
        write_csv(columns(), out / "requests.csv")
        notes.append(f"wrote {out / 'requests.csv'}")
    else:
        import pyarrow.parquet as pq

        pq.write_table(table(), out / "requests.parquet")
        notes.append(f"wrote {out / 'requests.parquet'}")
    notes.append(write_latency_plot(columns(), kv_utilization, out / "latency.png"))
    return notes


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
