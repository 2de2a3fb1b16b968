"""Fidelity against real measurements: replay measured vLLM runs and compare the means.

The reference data is ``../shared/data/validation/apex_vllm_llama70b`` (real vLLM 0.6.0 runs of
Llama-3.1-70B on 8x H100-SXM, published by microsoft/apex_plus; see its PROVENANCE.md). Every
single-server plan (8TP, 4TP, 2TP) is replayed on the trace it actually served, with the launch
settings of that run, and the predicted mean TTFT, mean inter-token latency (token-weighted, as the
measurement) and mean end-to-end latency are compared with the measured ones.

The data is never copied into the package: the caller passes the folder.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from servesim.api import simulate
from servesim.config import SimConfig
from servesim.core.errors import ConfigError
from servesim.perf.types import PerfModel

APEX_DATASET = "apex_vllm_llama70b"

# vLLM 0.6 enabled chunked prefill by default when max_model_len > 32K and then used a 512-token
# budget (EngineArgs in vLLM 0.5/0.6); the 2TP runs set --max-model-len 24272, which leaves it off
# and makes the budget max(max_model_len, 2048) (PROVENANCE.md states the same assumption).
_CHUNKED_PREFILL_BUDGET_TOKENS = 512
_LLAMA31_CONTEXT_TOKENS = 131_072
_LONG_CONTEXT_CHUNKING_THRESHOLD = 32_768
# Every run but one agrees with itself within 3%; see MeasuredRun.consistency_error.
CONSISTENCY_LIMIT = 0.10


@dataclass(frozen=True, slots=True)
class MeasuredRun:
    """One measured single-server run and the settings needed to replay it."""

    name: str  # e.g. "summarization_0.5_8TP"
    workload: str
    rate_req_per_s: float
    tp: int
    num_requests: int
    served_trace: Path
    gpu_memory_utilization: float
    max_model_len: int
    use_custom_all_reduce: bool
    measured_mean_ttft_s: float
    measured_mean_itl_s: float
    measured_mean_e2e_s: float
    mean_output_tokens: float = 0.0

    @property
    def implied_mean_e2e_s(self) -> float:
        """E2E implied by the run's own TTFT and ITL: TTFT + ITL x mean decode gaps per request."""
        return self.measured_mean_ttft_s + self.measured_mean_itl_s * (self.mean_output_tokens - 1)

    @property
    def consistency_error(self) -> float:
        """Relative gap between the measured E2E and the E2E its own TTFT and ITL imply.

        The three means come from separate counters; when a run's counters had to be
        de-cumulated (several workloads on one server) they can disagree. A run that disagrees
        with itself by more than ``CONSISTENCY_LIMIT`` cannot tell us which metric is wrong.
        """
        return (self.implied_mean_e2e_s - self.measured_mean_e2e_s) / self.measured_mean_e2e_s

    @property
    def is_consistent(self) -> bool:
        """True when the measured means agree with each other within ``CONSISTENCY_LIMIT``."""
        return abs(self.consistency_error) <= CONSISTENCY_LIMIT

    @property
    def chunked_prefill(self) -> bool:
        """vLLM 0.6's default for this max_model_len."""
        return self.max_model_len > _LONG_CONTEXT_CHUNKING_THRESHOLD

    @property
    def max_num_batched_tokens(self) -> int:
        """vLLM 0.6's default token budget for these settings."""
        if self.chunked_prefill:
            return _CHUNKED_PREFILL_BUDGET_TOKENS
        return max(self.max_model_len, 2048)


@dataclass(frozen=True, slots=True)
class RunComparison:
    """Predicted vs measured means of one run."""

    run: MeasuredRun
    predicted_mean_ttft_s: float
    predicted_mean_itl_s: float
    predicted_mean_e2e_s: float

    def errors(self) -> dict[str, float]:
        """Signed relative error per metric: (predicted - measured) / measured."""
        return {
            "ttft": _rel(self.predicted_mean_ttft_s, self.run.measured_mean_ttft_s),
            "itl": _rel(self.predicted_mean_itl_s, self.run.measured_mean_itl_s),
            "e2e": _rel(self.predicted_mean_e2e_s, self.run.measured_mean_e2e_s),
        }


def _rel(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured


def load_apex_runs(data_dir: Path) -> list[MeasuredRun]:
    """Single-server runs (dp == 1) of the APEX vLLM validation set, from ``plans.csv``.

    ``plans.csv`` already holds de-cumulated means for the runs that shared one server.
    """
    folder = data_dir / "validation" / APEX_DATASET
    plans_path = folder / "plans.csv"
    if not plans_path.is_file():
        raise ConfigError("data_dir", str(data_dir), f"{plans_path} does not exist")
    runs_by_file = {row["served_trace_file"]: row for row in _read_csv(folder / "runs.csv")}
    runs: list[MeasuredRun] = []
    for plan in _read_csv(plans_path):
        if plan["dp"] != "1":
            continue
        rate = float(plan["rate_req_per_s"])
        tag = f"{plan['workload']}_{'05' if rate == 0.5 else '025'}_validation_{plan['plan']}"
        trace_name = f"llama_{tag}.jsonl"
        run_row = runs_by_file.get(f"apex_served_traces/{trace_name}")
        if run_row is None:
            raise ConfigError("runs.csv", trace_name, "no run row for this plan")
        max_len_text = run_row["max_model_len"]
        max_model_len = int(max_len_text) if max_len_text.isdigit() else _LLAMA31_CONTEXT_TOKENS
        runs.append(
            MeasuredRun(
                name=f"{plan['workload']}_{rate}_{plan['plan']}",
                workload=plan["workload"],
                rate_req_per_s=rate,
                tp=int(plan["tp"]),
                num_requests=int(plan["n_requests"]),
                served_trace=folder / "served_traces" / trace_name,
                gpu_memory_utilization=float(run_row["gpu_mem_util"]),
                max_model_len=max_model_len,
                use_custom_all_reduce=run_row["custom_allreduce"] == "True",
                measured_mean_ttft_s=float(plan["mean_ttft_s"]),
                measured_mean_itl_s=float(plan["itl_mean_token_weighted_s"]),
                measured_mean_e2e_s=float(plan["mean_e2e_latency_s"]),
                mean_output_tokens=float(plan["served_output_tokens_sum"])
                / int(plan["n_requests"]),
            )
        )
    return sorted(runs, key=lambda r: (r.workload, -r.tp, r.rate_req_per_s))


def _read_csv(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def mape(comparisons: list[RunComparison], *, consistent_only: bool = False) -> dict[str, float]:
    """Mean absolute percentage error per metric over the runs (as a fraction).

    ``consistent_only`` leaves out runs whose measured means contradict each other.
    """
    if consistent_only:
        comparisons = [c for c in comparisons if c.run.is_consistent]
    if not comparisons:
        return {}
    keys = comparisons[0].errors().keys()
    return {k: sum(abs(c.errors()[k]) for c in comparisons) / len(comparisons) for k in keys}


def replay_config(run: MeasuredRun, *, seed: int = 0) -> dict[str, object]:
    """The ``SimConfig`` (as a mapping) that replays ``run`` with its launch settings."""
    return {
        "model": "llama-3.1-70b",
        "hardware": {
            "gpu": "h100-sxm",
            "tp": run.tp,
            "dtype": "bf16",
            "gpu_memory_utilization": run.gpu_memory_utilization,
            "custom_all_reduce": run.use_custom_all_reduce,
        },
        "scheduler": {
            "kind": "vllm",
            "version": "v0",
            "enable_chunked_prefill": run.chunked_prefill,
            "max_num_batched_tokens": run.max_num_batched_tokens,
            "max_num_seqs": 256,
        },
        # The served lengths (what the server counted), at the client's arrival offsets.
        "workload": {"trace": {"path": str(run.served_trace), "format": "served"}},
        "seed": seed,
    }


def replay(run: MeasuredRun, *, perf: PerfModel | None = None) -> RunComparison:
    """Simulate ``run`` and compare the means with the measurement."""
    result = simulate(SimConfig.from_dict(replay_config(run)), perf=perf)
    summary = result.summary
    return RunComparison(
        run=run,
        predicted_mean_ttft_s=summary.ttft.mean_s,
        predicted_mean_itl_s=summary.itl.mean_s,
        predicted_mean_e2e_s=summary.e2e.mean_s,
    )


def validate_apex(
    data_dir: Path, *, perf: PerfModel | None = None, on_run: Callable[[str], None] | None = None
) -> list[RunComparison]:
    """Replay every single-server APEX vLLM run; returns one comparison per run."""
    comparisons = []
    for run in load_apex_runs(data_dir):
        if on_run is not None:
            on_run(run.name)
        comparisons.append(replay(run, perf=perf))
    return comparisons
