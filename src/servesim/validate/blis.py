"""Replay of the vLLM V1 / H100 constant-rate stages of ``blis_vllm_v1_h100`` (stages.csv).

The data are real vLLM V1 runs of four models (Llama-2-7B/70B, Mixtral-8x7B, CodeLlama-34B) on
H100-SXM under inference-perf's ``shared_prefix`` workload (the BLIS simulator's training runs;
see its PROVENANCE.md). Each stage is replayed as it was driven: a request every 1/rate seconds
for the stage's duration, prompts from ``SharedPrefixWorkload`` (group system prompt + question,
cycling so vLLM's prefix cache hits), exactly ``output_len_target`` output tokens, the row's
model, TP, dtype, ``max_num_seqs`` and ``max_num_batched_tokens``, on servesim's vLLM V1
scheduler (chunked prefill always on) with prefix caching on, as the ``vllm-v1-async`` engine
profile. Assumption (the runs' vLLM version is unstated): a V1 build of early 2026 with
``--enable-journey-tracing``, i.e. >= 0.11, where async scheduling is on by default (PR #27614);
its kernels are priced with the ``vllm-0.24`` stack (which the packaged calibration, without
fitted stack tables, prices with vllm-0.6's).

Compared: mean TTFT, ``tpot_derived_s`` = (mean E2E - mean TTFT) / (output_len_target - 1) (the
per-token figure; inference-perf's own ``tpot_*`` count stream chunks) and mean E2E. A stage
measured as overloaded must be predicted overloaded, by PROVENANCE.md's rule: mean TTFT > 10 s
or > 1% of the requests not finished. The simulation has no client timeout: every request runs
to completion, so a predicted overload shows as a mean TTFT above 10 s (or as rejections).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from servesim.api import simulate
from servesim.config import SimConfig
from servesim.core.errors import ConfigError
from servesim.perf.types import PerfModel
from servesim.validate.apex_data import read_csv
from servesim.workload.native import write_requests
from servesim.workload.shared_prefix import SharedPrefixOptions, SharedPrefixWorkload

BLIS_DATASET = "blis_vllm_v1_h100"
# The engine profile the stages are replayed with (module docstring: the version assumption).
BLIS_ENGINE = "vllm-v1-async"
# PROVENANCE.md: "overloaded: 1 if >1% failed or mean TTFT > 10 s".
OVERLOAD_MEAN_TTFT_S = 10.0
OVERLOAD_UNFINISHED_FRACTION = 0.01


@dataclass(frozen=True, slots=True)
class MeasuredStage:
    """One row of ``stages.csv``: a constant-rate load stage and the server it ran on."""

    name: str  # e.g. "llama-2-7b_tp1_codegen_s0"
    model: str  # servesim catalog name
    tp: int
    dtype: str
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int  # vLLM flag; every stage's prompt + output fits, so it is not replayed
    profile: str
    stage: int
    rate_req_per_s: float
    duration_s: float
    prompts: SharedPrefixOptions
    num_success: int
    num_failed: int
    measured_mean_ttft_s: float
    measured_tpot_s: float  # tpot_derived_s
    measured_mean_e2e_s: float
    is_overloaded: bool  # the row's overloaded flag

    @property
    def num_requests(self) -> int:
        """Requests the stage sends (rate x duration)."""
        return round(self.rate_req_per_s * self.duration_s)


@dataclass(frozen=True, slots=True)
class StageComparison:
    """Predicted vs measured figures of one stage (None: no request completed)."""

    stage: MeasuredStage
    num_requests: int
    num_completed: int
    predicted_mean_ttft_s: float | None
    predicted_tpot_s: float | None
    predicted_mean_e2e_s: float | None
    prefix_cache_hit_rate: float | None

    @property
    def num_unfinished(self) -> int:
        """Requests that did not complete (rejected, or still running at a hard stop)."""
        return self.num_requests - self.num_completed

    @property
    def is_predicted_overloaded(self) -> bool:
        """PROVENANCE.md's rule applied to the prediction."""
        ttft_s = self.predicted_mean_ttft_s
        return (
            ttft_s is None
            or ttft_s > OVERLOAD_MEAN_TTFT_S
            or self.num_unfinished > OVERLOAD_UNFINISHED_FRACTION * self.num_requests
        )

    @property
    def overload_agrees(self) -> bool:
        """The prediction and the measurement agree on whether the stage is overloaded."""
        return self.is_predicted_overloaded == self.stage.is_overloaded

    def errors(self) -> dict[str, float]:
        """Signed relative error per metric (NaN where nothing completed)."""
        s = self.stage
        pairs = {
            "ttft": (self.predicted_mean_ttft_s, s.measured_mean_ttft_s),
            "tpot": (self.predicted_tpot_s, s.measured_tpot_s),
            "e2e": (self.predicted_mean_e2e_s, s.measured_mean_e2e_s),
        }
        return {k: float("nan") if p is None else (p - m) / m for k, (p, m) in pairs.items()}


def load_blis_stages(data_dir: Path) -> list[MeasuredStage]:
    """Every stage of ``stages.csv``, in file order."""
    path = data_dir / "validation" / BLIS_DATASET / "stages.csv"
    if not path.is_file():
        raise ConfigError("data_dir", str(data_dir), f"{path} does not exist")
    return [_stage(row) for row in read_csv(path)]


def _stage(row: dict[str, str]) -> MeasuredStage:
    if row["arrival"] != "constant":
        raise ConfigError("stages.csv arrival", row["arrival"], "only 'constant' is replayed")
    tp = int(row["tp"])
    return MeasuredStage(
        name=f"{row['servesim_model']}_tp{tp}_{row['profile']}_s{row['stage']}",
        model=row["servesim_model"],
        tp=tp,
        dtype=row["dtype"],
        max_num_seqs=int(row["max_num_seqs"]),
        max_num_batched_tokens=int(row["max_num_batched_tokens"]),
        max_model_len=int(row["max_model_len"]),
        profile=row["profile"],
        stage=int(row["stage"]),
        rate_req_per_s=float(row["rate_req_s"]),
        duration_s=float(row["stage_duration_s"]),
        prompts=SharedPrefixOptions(
            num_groups=int(row["num_groups"]),
            prompts_per_group=int(row["prompts_per_group"]),
            system_prompt_tokens=int(row["system_prompt_len"]),
            question_tokens=int(row["question_len"]),
            output_tokens=int(row["output_len_target"]),
        ),
        num_success=int(row["n_success"]),
        num_failed=int(row["n_failed"]),
        measured_mean_ttft_s=float(row["ttft_mean_s"]),
        measured_tpot_s=float(row["tpot_derived_s"]),
        measured_mean_e2e_s=float(row["e2e_mean_s"]),
        is_overloaded=row["overloaded"] == "1",
    )


def stage_workload(stage: MeasuredStage) -> SharedPrefixWorkload:
    """The requests ``stage`` sent: constant arrivals, shared-prefix prompts."""
    return SharedPrefixWorkload(stage.prompts, stage.rate_req_per_s, stage.duration_s)


def stage_config(stage: MeasuredStage, trace_path: Path, *, seed: int = 0) -> dict[str, object]:
    """The ``SimConfig`` (as a mapping) replaying ``stage`` from its written requests."""
    return {
        "model": stage.model,
        "hardware": {
            "gpu": "h100-sxm",
            "tp": stage.tp,
            "dtype": stage.dtype,
            "engine": BLIS_ENGINE,
        },
        # V1 always chunks prefills under the token budget; no enable_chunked_prefill knob.
        "scheduler": {
            "kind": "vllm",
            "version": "v1",
            "max_num_seqs": stage.max_num_seqs,
            "max_num_batched_tokens": stage.max_num_batched_tokens,
        },
        # On by default in V1; stated so the replay does not depend on that default.
        "cache": {"enable_prefix_caching": True, "block_size": stage.prompts.block_size},
        "workload": {"trace": {"path": str(trace_path), "format": "servesim"}},
        "seed": seed,
    }


def replay_stage(stage: MeasuredStage, *, perf: PerfModel | None = None) -> StageComparison:
    """Simulate ``stage`` and compare it with the measurement."""
    with tempfile.TemporaryDirectory(prefix="servesim-blis-") as folder:
        trace_path = Path(folder) / f"{stage.name}.jsonl"
        num_requests = write_requests(stage_workload(stage), trace_path)
        summary = simulate(SimConfig.from_dict(stage_config(stage, trace_path)), perf=perf).summary
    ttft_s, e2e_s = summary.ttft.mean_s, summary.e2e.mean_s
    tpot_s = None
    if ttft_s is not None and e2e_s is not None:
        # The same definition as tpot_derived_s (PROVENANCE.md).
        tpot_s = (e2e_s - ttft_s) / (stage.prompts.output_tokens - 1)
    return StageComparison(
        stage=stage,
        num_requests=num_requests,
        num_completed=summary.num_completed,
        predicted_mean_ttft_s=ttft_s,
        predicted_tpot_s=tpot_s,
        predicted_mean_e2e_s=e2e_s,
        prefix_cache_hit_rate=summary.prefix_cache_hit_rate,
    )


def validate_blis(
    data_dir: Path, *, perf: PerfModel | None = None, on_run: Callable[[str], None] | None = None
) -> list[StageComparison]:
    """Replay every stage of the vLLM V1 / H100 set; one comparison per stage."""
    comparisons = []
    for stage in load_blis_stages(data_dir):
        if on_run is not None:
            on_run(stage.name)
        comparisons.append(replay_stage(stage, perf=perf))
    return comparisons


def blis_mape(
    comparisons: Sequence[StageComparison], *, both_not_overloaded: bool = False
) -> dict[str, float]:
    """MAPE per metric over the stages measured as not overloaded (their means are whole).

    ``both_not_overloaded`` also leaves out the stages predicted as overloaded, whose queueing
    errors dwarf everything else.
    """
    chosen = [c for c in comparisons if not c.stage.is_overloaded]
    if both_not_overloaded:
        chosen = [c for c in chosen if not c.is_predicted_overloaded]
    if not chosen:
        return {}
    return {
        k: sum(abs(c.errors()[k]) for c in chosen) / len(chosen) for k in ("ttft", "tpot", "e2e")
    }
