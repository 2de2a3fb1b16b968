"""What one simulation produced: ``Result`` (returned by ``servesim.api.simulate``).

Its figures (``summary``), the raw columnar records, and their forms for other tools: the
per-request columns (numpy, or a pyarrow table), ``summary.json`` (``to_dict``/``to_json``)
and ``vllm bench serve``'s result JSON (``to_vllm_bench``). ``servesim.report`` writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from servesim import __version__

if TYPE_CHECKING:
    from servesim.cluster import ClusterStats
    from servesim.config import SimConfig
    from servesim.engine.records import SimulationRecords
    from servesim.metrics import Summary


@dataclass(frozen=True, slots=True)
class Result:
    """What one simulation produced.

    Attributes:
        config: the validated configuration that ran.
        summary: the run's figures (``servesim.metrics.Summary``).
        records: the raw columnar records (per request, per iteration, token gaps).
        workload_name: the workload's label (preset, trace file, or "synthetic").
        num_skipped_rows: malformed trace rows skipped (``skip_bad_rows``).
        num_capped_requests: requests whose lengths the workload capped to a context limit.
        cluster: cluster-level figures (GPU-hours over up-time, KV transfers, scaling).
        uncalibrated_gpus: GPU types of the deployment with no measured kernel tables: their
            iteration times come from the roofline with default efficiencies only.
    """

    config: SimConfig
    summary: Summary
    records: SimulationRecords
    workload_name: str = "workload"
    num_skipped_rows: int = 0
    num_capped_requests: int = 0
    cluster: ClusterStats | None = None
    uncalibrated_gpus: tuple[str, ...] = ()

    def requests_columns(self) -> dict[str, np.ndarray]:
        """Per-request columns (the engine's plus derived latencies), as numpy arrays.

        Derived columns, NaN where they do not apply: ``ttft_s``, ``tpot_s`` (requests with
        more than one output token), ``e2e_s``, ``queueing_s``; ``slo_class`` and
        ``reject_reason`` as names.
        """
        from servesim.report.outputs import derived_request_columns

        return derived_request_columns(self.records.requests.view(), self.records.slo_classes)

    def requests_table(self) -> Any:
        """Per-request columns as a ``pyarrow.Table`` (``.to_pandas()`` for a DataFrame).

        Needs pyarrow (``pip install 'servesim[parquet]'``).
        """
        try:
            import pyarrow as pa
        except ImportError as exc:  # an optional dependency: say how to get it
            raise ImportError(
                "requests_table() needs pyarrow: pip install 'servesim[parquet]'"
            ) from exc
        return pa.table(
            {
                k: pa.array(v.tolist() if v.dtype == object else v)
                for k, v in self.requests_columns().items()
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """``summary.json``: version, config, workload facts and the summary (deterministic)."""
        return {
            "servesim_version": __version__,
            "config": self.config.model_dump(mode="json"),
            "workload": {
                "name": self.workload_name,
                "num_skipped_rows": self.num_skipped_rows,
                "num_capped_requests": self.num_capped_requests,
            },
            "summary": self.summary.to_dict(),
            "cluster": self.cluster.to_dict(self.records) if self.cluster is not None else None,
            "uncalibrated_gpus": list(self.uncalibrated_gpus),
        }

    def to_json(self) -> str:
        """``to_dict()`` as indented, key-sorted JSON: byte-identical for the same inputs."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    def to_vllm_bench(self) -> dict[str, Any]:
        """The run in ``vllm bench serve``'s result-JSON schema (``vllm_bench.json``), so a
        tool that reads one reads the other (``servesim.report.outputs.vllm_bench_result``)."""
        wl = self.config.effective_workload()
        client = wl.client
        arrival = wl.arrival
        rate: float | str = "inf"
        burstiness = 1.0
        if arrival is not None and getattr(arrival, "rate_per_s", None) is not None:
            rate = float(arrival.rate_per_s)  # type: ignore[union-attr]
            cv = getattr(arrival, "cv", 1.0)
            burstiness = 1.0 / (cv * cv)
        elif wl.rate_per_s is not None:
            rate = wl.rate_per_s
        from servesim.report.outputs import vllm_bench_result

        return vllm_bench_result(
            self.summary,
            self.records.requests.view(),
            model_id=self.config.model,
            num_prompts=self.summary.num_requests,
            request_rate=rate,
            burstiness=burstiness,
            max_concurrency=client.max_concurrency if client is not None else None,
        )
