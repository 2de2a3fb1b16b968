"""The public Python API: ``simulate(config) -> Result``.

Use it as ``from servesim.api import simulate``::

    result = simulate({"hardware": {"gpu": "h100-sxm"}, "num_requests": 200})
    print(result.summary.ttft.p99_s)
    df = result.requests_table().to_pandas()

``config`` is a ``SimConfig``, a mapping with the same keys as the YAML file, or a path to one.
What a run produced, ``Result``, lives in ``servesim.result``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servesim.cluster import build_deployment, run_cluster
from servesim.cluster.deployment import Deployment, pool_plan
from servesim.cluster.moe import ExpertOffloadPerf
from servesim.config import SimConfig
from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.metrics import summarize
from servesim.metrics.summary import engine_lines
from servesim.perf import RooflinePerfModel
from servesim.perf.types import PerfModel, ReplicaPlan
from servesim.result import Result
from servesim.specs.catalog import resolve_model

if TYPE_CHECKING:  # the planner and the output writers load on first use (start-up time)
    from servesim.planner.capacity import CapacityResult, Probe
    from servesim.planner.executors import Executor
    from servesim.planner.scenario import Scenario, SLOCriterion
    from servesim.planner.search import SearchOptions, SearchProgress, SearchReport
    from servesim.planner.space import PlanSpec, SearchSpace

# Called with (requests done, requests arrived) as the run advances.
ProgressCallback = Callable[[int, int], None]


def load_config(config: SimConfig | Mapping[str, Any] | str | Path) -> SimConfig:
    """Accept a ``SimConfig``, a mapping, or a path to a YAML file."""
    if isinstance(config, SimConfig):
        return config
    if isinstance(config, (str, Path)):
        return SimConfig.from_yaml(config)
    return SimConfig.from_dict(config)


def replica_plan(config: SimConfig) -> ReplicaPlan:
    """The ``ReplicaPlan`` one replica of ``config``'s first pool runs (model, GPU, parallelism,
    formats), built by the same code as every simulated deployment."""
    return pool_plan(config.effective_deployment().pools[0], config.model)


def simulate(
    config: SimConfig | Mapping[str, Any] | str | Path,
    *,
    perf: PerfModel | None = None,
    on_progress: ProgressCallback | None = None,
) -> Result:
    """Run one simulation and summarise it.

    Args:
        config: a ``SimConfig``, a mapping with the YAML keys, or a YAML path.
        perf: the cost model (default: ``RooflinePerfModel()``).
        on_progress: called by the engine as the run advances (for progress bars).

    Raises:
        ServesimError: unknown model/GPU/preset; ``DeploymentError`` listing every problem of
            a deployment that cannot work (weights that do not fit, bad TP/PP/EP, ...).
        pydantic.ValidationError: a bad config value (the CLI prints one line per problem).
    """
    cfg = load_config(config)
    perf = perf if perf is not None else RooflinePerfModel()
    if cfg.hardware.offload_cached_experts is not None:
        perf = _with_expert_offload(perf, cfg)
    deployment = _deployment(cfg, perf)
    workload_config = cfg.effective_workload()
    workload = workload_config.build(RandomStreams(cfg.seed))
    client = workload_config.client
    run = run_cluster(
        workload,
        deployment,
        perf,
        seed=cfg.seed,
        duration_s=cfg.max_time_s,
        on_progress=on_progress,
        client=client.options() if client is not None else None,
    )
    slo = cfg.slo.to_spec() if cfg.slo is not None else None
    return Result(
        config=cfg,
        summary=summarize(run.records, slo, engines=engine_lines(deployment)),
        records=run.records,
        workload_name=workload.name,
        num_skipped_rows=workload.num_skipped_rows,
        num_capped_requests=workload.num_capped_requests,
        cluster=run.stats,
        uncalibrated_gpus=_uncalibrated_gpus(perf, [pool.plan for pool in deployment.pools]),
    )


def _deployment(cfg: SimConfig, perf: PerfModel) -> Deployment:
    """``cfg``'s deployment with its speculative, LoRA and hybrid settings attached."""
    # Every simulation is a deployment; ``replicas`` x ``hardware`` is its one-pool case.
    deployment = build_deployment(cfg.effective_deployment(), cfg.model, perf, cfg.speculative)
    if cfg.speculative is not None or cfg.lora is not None or cfg.hybrid is not None:
        deployment = replace(
            deployment, speculative=cfg.speculative, lora=cfg.lora, hybrid=cfg.hybrid
        )
    return deployment


def _with_expert_offload(perf: PerfModel, cfg: SimConfig) -> PerfModel:
    """Wrap ``perf`` so MoE experts beyond the cached ones live in host memory."""
    num_cached = cfg.hardware.offload_cached_experts
    moe = resolve_model(cfg.model).moe
    if moe is None:
        raise ConfigError("hardware.offload_cached_experts", num_cached, f"{cfg.model} is not MoE")
    if num_cached is None or num_cached >= moe.num_experts:
        raise ConfigError(
            "hardware.offload_cached_experts",
            num_cached,
            f"must be below the {moe.num_experts} experts per layer (otherwise nothing offloads)",
        )
    return ExpertOffloadPerf(perf, num_cached)


def _uncalibrated_gpus(perf: PerfModel, plans: list[ReplicaPlan]) -> tuple[str, ...]:
    """GPU names whose predictions are not backed by measured kernels (for a user warning)."""
    is_calibrated = getattr(perf, "is_calibrated", None)
    if is_calibrated is None:  # a user's own perf model: it answers for itself
        return ()
    return tuple(sorted({p.gpu.name for p in plans if not is_calibrated(p)}))


def write_outputs(
    result: Result, out_dir: str | Path, *, table_format: str = "parquet"
) -> list[str]:
    """Write ``summary.json``, ``vllm_bench.json`` (``Result.to_vllm_bench``),
    ``requests.parquet`` (or ``.csv``) and ``latency.png``.

    The plot needs matplotlib; without it that file is skipped and a note says so.
    Returns one line per file written or skipped, for the caller to show
    (``servesim.report.outputs`` does the writing).
    """
    from servesim.report.outputs import request_chunks, write_run_outputs

    requests = result.records.requests
    stream: dict[str, Any] = {}
    if requests.is_spilled:
        # A long run's request table lives mostly on disk: stream it out a chunk at a time.
        classes = result.records.slo_classes
        stream = {
            "chunks": lambda: request_chunks(requests.chunks(), classes),
            "num_rows": requests.size,
        }
    return write_run_outputs(
        out_dir,
        summary_json=result.to_json(),
        vllm_bench_json=json.dumps(result.to_vllm_bench(), indent=2, sort_keys=True) + "\n",
        columns=result.requests_columns,
        table=result.requests_table,
        kv_utilization=result.summary.kv_utilization,
        table_format=table_format,
        **stream,
    )


@dataclass(frozen=True, slots=True)
class CapacityReport:
    """Highest arrival rate at which ``config``'s deployment holds the SLO.

    Attributes:
        rate_per_s: the capacity (0.0 when even the lowest probed rate failed).
        rate_per_gpu: capacity per GPU.
        rate_per_dollar_hour: capacity per dollar-hour of rent.
        limiting: the metric that fails just above the capacity.
        search: the raw search (every probe).
        result: the simulation at the capacity (None when no rate held).
    """

    rate_per_s: float
    rate_per_gpu: float
    rate_per_dollar_hour: float
    limiting: str
    search: CapacityResult
    result: Result | None


def slo_criterion(
    config: SimConfig,
    *,
    ttft_p99_s: float | None = None,
    tpot_p99_s: float | None = None,
    min_attainment: float | None = None,
) -> SLOCriterion:
    """The capacity criterion: explicit p99 targets, else the config's SLO targets as p99s."""
    from servesim.planner.scenario import SLOCriterion

    slo = config.slo
    return SLOCriterion(
        ttft_p99_s=ttft_p99_s if ttft_p99_s is not None else (slo.ttft_s if slo else None),
        tpot_p99_s=tpot_p99_s if tpot_p99_s is not None else (slo.tpot_s if slo else None),
        min_attainment=min_attainment,
    )


def capacity(
    config: SimConfig | Mapping[str, Any] | str | Path,
    criterion: SLOCriterion,
    *,
    start_rate_per_s: float | None = None,
    rel_tol: float = 0.05,
    perf: PerfModel | None = None,
) -> CapacityReport:
    """Capacity search on ``config`` (any deployment ``simulate`` accepts).

    Each probe simulates the config with its workload rescaled to the probed rate; a probe
    stops at the expected last arrival plus the criterion's drain margin (overload shows as
    unfinished requests and fails).
    """
    from servesim.planner.capacity import Probe, capacity_search
    from servesim.planner.evaluate import probe_metrics
    from servesim.planner.scenario import Scenario

    cfg = load_config(config)
    perf = perf if perf is not None else RooflinePerfModel()
    workload = cfg.effective_workload()
    num = workload.num_requests or 1000
    results: dict[float, Result] = {}
    shape = Scenario(cfg.model, workload, criterion, seed=cfg.seed).shape()
    margin = criterion.drain_margin_s(shape.max_output_tokens)

    def probe(rate: float) -> Probe:
        run = cfg.model_copy(
            update={
                "workload": workload.with_rate(rate),
                "max_time_s": cfg.max_time_s or num / rate * 1.5 + margin,
            }
        )
        result = simulate(run, perf=perf)
        results[rate] = result
        holds, limiting, ratio = criterion.check(result.summary)
        return Probe(rate, holds, limiting, ratio, probe_metrics(result.summary))

    start = start_rate_per_s or workload.rate_per_s or 1.0
    found = capacity_search(probe, start_rate_per_s=start, rel_tol=rel_tol)
    return _capacity_report(found, results)


def _capacity_report(found: CapacityResult, results: dict[float, Result]) -> CapacityReport:
    """The report of a finished capacity search: the rate per GPU and per dollar-hour of its
    best probe's deployment."""
    best = results.get(found.rate_per_s) if found.best is not None else None
    eff = best.summary.efficiency if best is not None else None
    gpus = eff.num_gpus if eff is not None else 0
    price = eff.cost_usd / eff.gpu_hours * gpus if eff is not None and eff.gpu_hours else 0.0
    return CapacityReport(
        rate_per_s=found.rate_per_s,
        rate_per_gpu=found.rate_per_s / gpus if gpus else 0.0,
        rate_per_dollar_hour=found.rate_per_s / price if price else 0.0,
        limiting=found.limiting,
        search=found,
        result=best,
    )


def plan_config(scenario: Scenario, plan: PlanSpec, rate_per_s: float | None) -> SimConfig:
    """The validated ``SimConfig`` of a planner result (what ``--config`` accepts)."""
    from servesim.planner.deploy import sim_config_dict

    return SimConfig.from_dict(sim_config_dict(scenario, plan, rate_per_s))


def plan(
    scenario: Scenario,
    space: SearchSpace,
    *,
    options: SearchOptions | None = None,
    executor: Executor | None = None,
    store: str | Path | None = None,
    perf: PerfModel | None = None,
    on_progress: Callable[[SearchProgress], None] | None = None,
) -> SearchReport:
    """Deployment search (``servesim.planner.search.run_search``), optionally stored/resumed."""
    from servesim.planner.search import run_search
    from servesim.planner.store import PlanStore

    db = PlanStore(store) if store is not None else None
    try:
        return run_search(
            scenario,
            space,
            options=options,
            executor=executor,
            store=db,
            perf=perf,
            on_progress=on_progress,
        )
    finally:
        if db is not None:
            db.close()
