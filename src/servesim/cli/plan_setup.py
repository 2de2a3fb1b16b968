"""What ``servesim plan`` searches, built from its flags: the scenario, the search space,
the search options (objective, target rate) and the executor."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from servesim.config import SimConfig
from servesim.core.errors import ConfigError
from servesim.planner.executors import Executor, make_executor
from servesim.planner.rank import TARGET_OBJECTIVES, check_objective
from servesim.planner.scenario import DEFAULT_MIN_REQUESTS, Scenario, SLOCriterion
from servesim.planner.search import SearchOptions
from servesim.planner.space import SearchSpace, parse_gpus, parse_ints, scheduler_grid

DEFAULT_OBJECTIVE = "goodput_per_dollar"


def plan_executor(
    inline: bool, workers: int | None, use_ray: bool, address: str | None
) -> Executor:
    """``--ray``/``--ray-address``, ``--inline`` or a local process pool."""
    if use_ray or address is not None:
        return make_executor("ray", num_workers=workers, ray_address=address)
    return make_executor("inline" if inline else "process", num_workers=workers)


def plan_scenario(cfg: SimConfig, criterion: SLOCriterion, requests_per_replica: int) -> Scenario:
    """The search's scenario: the config's model, workload, cache and seed."""
    return Scenario(
        model=cfg.model,
        workload=cfg.effective_workload().model_copy(update={"num_requests": None}),
        criterion=criterion,
        cache=cfg.effective_cache(),
        seed=cfg.seed,
        requests_per_replica=requests_per_replica,
        # A count the user asks for is what a probe sends (the floor only guards the default).
        min_requests=min(DEFAULT_MIN_REQUESTS, requests_per_replica),
        engine=cfg.hardware.engine,
    )


def search_options(
    objective: str | None,
    target_rate: float | None,
    tol: float,
    exhaustive: bool,
    mix: bool,
    *,
    bracketing: bool = False,
) -> SearchOptions:
    """The search's objective: ``cost_at_rate`` when a target rate is given, else
    ``goodput_per_dollar``; ``--mix`` alone searches capacities (its slices need them)."""
    if target_rate is not None and not (math.isfinite(target_rate) and target_rate > 0):
        raise ConfigError("--target-rate", target_rate, "must be a finite rate > 0 req/s")
    if objective is None:
        objective = "cost_at_rate" if target_rate is not None and not mix else DEFAULT_OBJECTIVE
    rate = target_rate if objective in TARGET_OBJECTIVES else None
    check_objective(objective, rate)
    return SearchOptions(
        objective=objective,
        target_rate_per_s=rate,
        rel_tol=tol,
        exhaustive=exhaustive,
        bracketing=bracketing,
    )


# --chunked-prefill -> the values of enable_chunked_prefill to try (None: vLLM's default)
_CHUNK_CHOICES: dict[str, tuple[bool | None, ...]] = {
    "auto": (None,),
    "off": (False,),
    "on": (True,),
    "both": (False, True),
    "all": (None, False, True),
}


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def search_space(flags: Mapping[str, Any]) -> SearchSpace:
    """The search space ``plan``'s flags (its parameters by name) describe."""
    chunk = _CHUNK_CHOICES.get(flags["chunked_prefill"])
    if chunk is None:
        raise ConfigError(
            "--chunked-prefill", flags["chunked_prefill"], "must be auto, off, on, both or all"
        )
    return SearchSpace(
        gpus=parse_gpus(flags["gpus"]),
        max_total_gpus=flags["max_gpus"],
        max_price_per_hour_usd=flags["budget"],
        tp_options=parse_ints(flags["tp"], "--tp"),
        pp_options=parse_ints(flags["pp"], "--pp"),
        max_replicas=flags["max_replicas"],
        dtypes=_names(flags["dtypes"]),
        kv_dtypes=tuple(
            None if k == "auto" else k for k in flags["kv_dtypes"].split(",") if k.strip()
        ),
        schedulers=scheduler_grid(
            parse_ints(flags["max_num_seqs"], "--max-num-seqs"),
            (None, *parse_ints(flags["max_num_batched_tokens"], "--max-num-batched-tokens")),
            chunk,
        ),
        disaggregated=flags["disagg"],
        per_phase=not flags["same_hardware_pools"],
        ep_options=parse_ints(flags["ep"], "--ep"),
        dp_attention_options=parse_ints(flags["dp_attention"], "--dp-attention"),
        all2all_backends=_names(flags["all2all_backends"]),
        dense_mlp_modes=_names(flags["dense_mlp"]),
        routers=_names(flags["routers"]),
        per_phase_knobs=flags["per_phase_knobs"],
        placements=_names(flags["placements"]),
        networks=tuple(None if n == "auto" else n for n in _names(flags["networks"])),
    )
