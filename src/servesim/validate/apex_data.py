"""The APEX vLLM validation set as measured: its plans, their replica runs and the measured means.

``../shared/data/validation/apex_vllm_llama70b`` (real vLLM 0.6.0 runs of Llama-3.1-70B on 8x
H100-SXM, published by microsoft/apex_plus; see its PROVENANCE.md): ``plans.csv`` holds one row
per plan with its combined means, ``runs.csv`` one row per server run (a data-parallel plan has
one per ``dp_rank``) with its launch settings. ``validate.apex`` replays them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from servesim.core.errors import ConfigError

APEX_DATASET = "apex_vllm_llama70b"

# vLLM 0.6 enabled chunked prefill by default when max_model_len > 32K and then used a 512-token
# budget (EngineArgs in vLLM 0.5/0.6); the 2TP and 4DP2TP runs set --max-model-len 24272, which
# leaves it off and makes the budget max(max_model_len, 2048) (PROVENANCE.md states the same).
_CHUNKED_PREFILL_BUDGET_TOKENS = 512
_LLAMA31_CONTEXT_TOKENS = 131_072
_LONG_CONTEXT_CHUNKING_THRESHOLD = 32_768
# Every run but one agrees with itself to 0.1%; see MeasuredRun.consistency_error.
CONSISTENCY_LIMIT = 0.10


@dataclass(frozen=True, slots=True)
class ServedMeans:
    """The mean latencies of one server (or of several combined) and the counts weighting them."""

    num_requests: int  # completed requests: the weight of TTFT and E2E
    num_decode_gaps: int  # inter-token gaps (output tokens - requests): the weight of ITL
    mean_ttft_s: float
    mean_itl_s: float
    mean_e2e_s: float


def combine_replicas(parts: Sequence[ServedMeans]) -> ServedMeans:
    """Means over independent replicas, combined as ``plans.csv`` combines the measured ones.

    PROVENANCE.md: TTFT and E2E weighted by requests, ITL by tokens; the token weight that
    reproduces ``plans.csv`` exactly (1e-16; output tokens are 5e-6 off) is the number of decode
    gaps, the ITL's own sample count.
    """
    if not parts:
        raise ValueError("combine_replicas needs at least one replica")
    num_requests = sum(p.num_requests for p in parts)
    num_gaps = sum(p.num_decode_gaps for p in parts)

    def by_requests(mean_s: Callable[[ServedMeans], float]) -> float:
        return sum(p.num_requests * mean_s(p) for p in parts) / num_requests

    itl_s = sum(p.num_decode_gaps * p.mean_itl_s for p in parts) / num_gaps if num_gaps else 0.0
    return ServedMeans(
        num_requests=num_requests,
        num_decode_gaps=num_gaps,
        mean_ttft_s=by_requests(lambda p: p.mean_ttft_s),
        mean_itl_s=itl_s,
        mean_e2e_s=by_requests(lambda p: p.mean_e2e_s),
    )


@dataclass(frozen=True, slots=True)
class MeasuredRun:
    """One measured server run (a single-server plan or one DP replica) and its launch settings."""

    name: str  # e.g. "summarization_0.5_8TP", "lmsys_0.5_4DP2TP_r2" for dp_rank 2
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
    num_output_tokens: int = 0
    dp_rank: int = 0

    @property
    def mean_output_tokens(self) -> float:
        """Served output tokens per request."""
        return self.num_output_tokens / self.num_requests

    @property
    def measured(self) -> ServedMeans:
        """The measured means with their weights."""
        return ServedMeans(
            num_requests=self.num_requests,
            num_decode_gaps=self.num_output_tokens - self.num_requests,
            mean_ttft_s=self.measured_mean_ttft_s,
            mean_itl_s=self.measured_mean_itl_s,
            mean_e2e_s=self.measured_mean_e2e_s,
        )

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
class MeasuredPlan:
    """One row of ``plans.csv``: a deployment plan, its replica runs and its combined means."""

    name: str  # e.g. "lmsys_0.5_4DP2TP"
    workload: str
    rate_req_per_s: float
    plan: str  # "8TP", "4TP", "2TP", "2DP4TP", "4DP2TP"
    tp: int
    dp: int
    replicas: tuple[MeasuredRun, ...]  # the replicas whose result files exist, by dp_rank
    measured: ServedMeans  # plans.csv's figures (over the present replicas only)
    note: str = ""  # plans.csv's note, e.g. "MISSING replica(s): ..."

    @property
    def is_data_parallel(self) -> bool:
        """True for plans of several independent servers."""
        return self.dp > 1

    @property
    def num_missing_replicas(self) -> int:
        """Replicas without a result file (compared over the present ones only)."""
        return self.dp - len(self.replicas)

    @property
    def is_consistent(self) -> bool:
        """True when every replica run's measured means agree with each other."""
        return all(r.is_consistent for r in self.replicas)

    @property
    def consistency_error(self) -> float:
        """The replica runs' consistency error of largest magnitude."""
        return max((r.consistency_error for r in self.replicas), key=abs)


def load_apex_plans(data_dir: Path) -> list[MeasuredPlan]:
    """Every plan of the APEX vLLM validation set (``plans.csv``) with its replica runs.

    The replicas' settings and de-cumulated means come from ``runs.csv`` (one row per server run,
    a DP plan one per present ``dp_rank``); the plan's means from ``plans.csv``.
    """
    folder = data_dir / "validation" / APEX_DATASET
    plans_path = folder / "plans.csv"
    if not plans_path.is_file():
        raise ConfigError("data_dir", str(data_dir), f"{plans_path} does not exist")
    runs_by_plan: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for row in read_csv(folder / "runs.csv"):
        runs_by_plan.setdefault(_plan_key(row), []).append(row)
    plans = [
        _plan(row, runs_by_plan.get(_plan_key(row), []), folder) for row in read_csv(plans_path)
    ]
    return sorted(plans, key=lambda p: (p.workload, p.dp, -p.tp, p.rate_req_per_s))


def load_apex_runs(data_dir: Path) -> list[MeasuredRun]:
    """Every server run of the set: the single-server plans' runs, then each DP replica."""
    return [run for plan in load_apex_plans(data_dir) for run in plan.replicas]


def _plan_key(row: dict[str, str]) -> tuple[str, str, str]:
    return row["workload"], row["rate_req_per_s"], row["plan"]


def _plan(row: dict[str, str], run_rows: list[dict[str, str]], folder: Path) -> MeasuredPlan:
    rate = float(row["rate_req_per_s"])
    name = f"{row['workload']}_{rate}_{row['plan']}"
    dp = int(row["dp"])
    num_present = int(row["replica_files_present"])
    if len(run_rows) != num_present:
        found = f"{len(run_rows)} run rows, plans.csv says {num_present} replica files"
        raise ConfigError("runs.csv", name, found)
    replicas = tuple(
        _run(r, name if dp == 1 else f"{name}_r{r['dp_rank']}", folder)
        for r in sorted(run_rows, key=lambda r: int(r["dp_rank"]))
    )
    num_requests = int(row["n_requests"])
    return MeasuredPlan(
        name=name,
        workload=row["workload"],
        rate_req_per_s=rate,
        plan=row["plan"],
        tp=int(row["tp"]),
        dp=dp,
        replicas=replicas,
        measured=ServedMeans(
            num_requests=num_requests,
            num_decode_gaps=int(row["served_output_tokens_sum"]) - num_requests,
            mean_ttft_s=float(row["mean_ttft_s"]),
            mean_itl_s=float(row["itl_mean_token_weighted_s"]),
            mean_e2e_s=float(row["mean_e2e_latency_s"]),
        ),
        note=row["note"],
    )


def _run(row: dict[str, str], name: str, folder: Path) -> MeasuredRun:
    # The decum_* columns equal the measured ones for a fresh server and hold the de-cumulated
    # means for runs that shared a server (PROVENANCE.md, Caveats); plans.csv uses the same.
    max_len_text = row["max_model_len"]
    num_requests = int(row["n_requests"])
    return MeasuredRun(
        name=name,
        workload=row["workload"],
        rate_req_per_s=float(row["rate_req_per_s"]),
        tp=int(row["tp"]),
        num_requests=num_requests,
        served_trace=folder / "served_traces" / Path(row["served_trace_file"]).name,
        gpu_memory_utilization=float(row["gpu_mem_util"]),
        max_model_len=int(max_len_text) if max_len_text.isdigit() else _LLAMA31_CONTEXT_TOKENS,
        use_custom_all_reduce=row["custom_allreduce"] == "True",
        measured_mean_ttft_s=float(row["decum_mean_ttft_s"]),
        measured_mean_itl_s=float(row["decum_itl_mean_token_weighted_s"]),
        measured_mean_e2e_s=float(row["decum_total_latency_s"]) / num_requests,
        num_output_tokens=int(row["served_output_tokens_sum"]),
        dp_rank=int(row["dp_rank"]),
    )


def read_csv(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a CSV file with a header line."""
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)
