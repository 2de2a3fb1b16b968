"""Fidelity against real measurements: replay measured serving runs and compare the means.

Two datasets under ``../shared/data/validation`` (never copied into the package; the caller
passes the data folder):

- ``apex_vllm_llama70b`` (``validate_apex``, modules ``apex`` and ``apex_data``): vLLM 0.6
  Llama-3.1-70B on 8x H100, every plan (8TP, 4TP, 2TP and the data-parallel 2DP4TP, 4DP2TP)
  replayed on the traces it served.
- ``blis_vllm_v1_h100`` (``validate_blis``, module ``blis``): vLLM V1 on H100, four models,
  constant-rate shared-prefix stages.
"""

from servesim.validate.apex import (
    PlanComparison,
    RunComparison,
    mape,
    mape_by_subset,
    replay,
    replay_config,
    replay_plan,
    validate_apex,
)
from servesim.validate.apex_data import (
    APEX_DATASET,
    CONSISTENCY_LIMIT,
    MeasuredPlan,
    MeasuredRun,
    ServedMeans,
    combine_replicas,
    load_apex_plans,
    load_apex_runs,
)
from servesim.validate.blis import (
    BLIS_DATASET,
    MeasuredStage,
    StageComparison,
    blis_mape,
    load_blis_stages,
    replay_stage,
    stage_config,
    stage_workload,
    validate_blis,
)
from servesim.validate.vllm_bench import load_vllm_bench, replay_vllm_bench  # noqa: F401

__all__ = [
    "APEX_DATASET",
    "BLIS_DATASET",
    "CONSISTENCY_LIMIT",
    "MeasuredPlan",
    "MeasuredRun",
    "MeasuredStage",
    "PlanComparison",
    "RunComparison",
    "ServedMeans",
    "StageComparison",
    "blis_mape",
    "combine_replicas",
    "load_apex_plans",
    "load_apex_runs",
    "load_blis_stages",
    "mape",
    "mape_by_subset",
    "replay",
    "replay_config",
    "replay_plan",
    "replay_stage",
    "stage_config",
    "stage_workload",
    "validate_apex",
    "validate_blis",
]
