"""Benchmark suites: named, versioned sets of scenarios, stored as YAML data in ``lab/suites/``.

A scenario is a simulation config (model, hardware, deployment, workload, SLO) without a
policy, seed or stop time; a suite lists scenarios, the seeds every scenario runs with, and its
fast (screening) mode. A scenario whose config names ``{data}`` (a trace in ``../shared/data``)
is skipped, with the reason recorded, when that folder is absent.

Changing a suite's scenarios changes what its scores mean: bump its ``version`` and regenerate
the baselines (``python -m servesim.lab.baselines``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from servesim.config import SimConfig
from servesim.core.errors import ConfigError, UnknownNameError
from servesim.core.paths import shared_data_dir

DATA_MARK = "{data}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FastModeConfig(_Strict):
    """Screening mode: fewer requests and seeds (its rank agreement is measured by
    ``bench/bench_lab.py``)."""

    fraction: float = Field(0.25, gt=0, le=1, description="Share of each scenario's requests.")
    num_seeds: int = Field(1, ge=1, description="First seeds of the suite's list to run.")
    min_requests: int = Field(50, ge=1, description="Never fewer requests than this.")


class ScenarioConfig(_Strict):
    """One scenario of a suite."""

    name: str = Field(min_length=1, description="Unique within the suite.")
    description: str = Field("", description="What it exercises.")
    config: dict[str, Any] = Field(description="SimConfig keys (no seed, policy or stop time).")
    num_requests: int = Field(ge=1, description="Requests in the full mode.")
    max_time_s: float = Field(
        gt=0,
        description="Simulated stop time in the full mode; requests unfinished then are "
        "scored at the worst latency (scaled with the request count in the fast mode).",
    )
    seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="This scenario's seeds (None: the suite's). A trace replay draws nothing "
        "at random, so it runs one seed: repeating it would count one result several times.",
    )


class SuiteConfig(_Strict):
    """A suite file (``lab/suites/<name>.yaml``)."""

    name: str = Field(min_length=1, description="Suite name (the file's stem).")
    version: int = Field(ge=1, description="Bumped whenever a scenario changes.")
    description: str = Field("", description="What the suite is for.")
    seeds: list[int] = Field(min_length=1, description="Seeds every scenario runs with.")
    fast: FastModeConfig = Field(default_factory=FastModeConfig)
    baselines: list[str] = Field(
        min_length=1,
        description="Built-in policies whose scores are recorded (first: the "
        "reference a Score is compared to).",
    )
    scenarios: list[ScenarioConfig] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Run:
    """One (scenario, seed) evaluation of a suite, before a policy is applied.

    Attributes:
        scenario: the scenario's name.
        seed: the seed.
        config_json: the simulation config (key-sorted JSON) without the policy.
        skip_reason: why it cannot run here ("" when it can).
    """

    scenario: str
    seed: int
    config_json: str
    skip_reason: str = ""


def suite_names() -> list[str]:
    """Names of the suites shipped with servesim."""
    folder = resources.files("servesim.lab") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_suite(suite: SuiteConfig | str | Path) -> SuiteConfig:
    """A shipped suite by name, or a suite YAML file by path."""
    if isinstance(suite, SuiteConfig):
        return suite
    text = str(suite)
    if text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            raise ConfigError("suite", text, "file does not exist")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    else:
        if text not in suite_names():
            raise UnknownNameError("suite", text, suite_names())
        resource = resources.files("servesim.lab") / "suites" / f"{text}.yaml"
        raw = yaml.safe_load(resource.read_text(encoding="utf-8"))
    parsed = SuiteConfig.model_validate(raw)
    names = [s.name for s in parsed.scenarios]
    if len(set(names)) != len(names):
        raise ConfigError("suite.scenarios", names, "scenario names must be unique")
    return parsed


def suite_runs(
    suite: SuiteConfig, *, fast: bool = False, seeds: list[int] | None = None
) -> list[Run]:
    """Every (scenario, seed) of ``suite``, in a fixed order, fast mode scaled down."""
    data = shared_data_dir()
    runs = []
    for scenario in suite.scenarios:
        chosen = list(seeds) if seeds is not None else list(scenario.seeds or suite.seeds)
        if fast and seeds is None:
            chosen = chosen[: suite.fast.num_seeds]
        num, stop_s = scenario.num_requests, scenario.max_time_s
        if fast:
            num = min(num, max(suite.fast.min_requests, round(num * suite.fast.fraction)))
            stop_s = scenario.max_time_s * num / scenario.num_requests
        config, reason = _with_data(scenario.config, data)
        config = {**config, "num_requests": num, "max_time_s": stop_s}
        for seed in chosen:
            text = json.dumps({**config, "seed": seed}, sort_keys=True)
            runs.append(Run(scenario.name, seed, text, reason))
    return runs


def _with_data(config: Mapping[str, Any], data: Path | None) -> tuple[dict[str, Any], str]:
    """``config`` with ``{data}`` replaced by the shared-data folder (or a skip reason)."""
    text = json.dumps(config, sort_keys=True)
    if DATA_MARK not in text:
        return dict(config), ""
    if data is None:
        return dict(config), "../shared/data is absent (this scenario replays a real trace)"
    replaced = json.loads(text.replace(DATA_MARK, data.as_posix()))
    missing = [p for p in _paths(replaced) if not Path(p).is_file()]
    if missing:
        return dict(config), f"trace file {missing[0]} is absent"
    return replaced, ""


def _paths(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "path" and isinstance(v, str)]
        return found + [p for v in node.values() for p in _paths(v)]
    if isinstance(node, list):
        return [p for v in node for p in _paths(v)]
    return []


def apply_policy(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A scenario config with a policy's overrides applied.

    In a ``deployment`` every pool gets the scheduler and cache fields (``eviction`` is the
    cache's), the expert ``placement`` and the ``autoscale`` policy (pools that autoscale;
    a suite with none refuses it); the router shorthand applies to the deployment's entry
    router either way (``SimConfig.effective_deployment``). ``admission`` is the deployment's:
    a scenario given as ``replicas`` x ``hardware`` is rewritten as its deployment first.
    """
    out = copy.deepcopy(dict(config))
    if ("admission" in overrides or "placement" in overrides) and "deployment" not in out:
        out = _as_deployment(out)
    targets = out["deployment"]["pools"] if "deployment" in out else [out]
    for target in targets:
        if "scheduler" in overrides:
            target["scheduler"] = copy.deepcopy(overrides["scheduler"])
        if "cache" in overrides:
            target["cache"] = {**target.get("cache", {}), **overrides["cache"]}
        if "eviction" in overrides:
            target["cache"] = {**target.get("cache", {}), "eviction": overrides["eviction"]}
        if "placement" in overrides:
            target["expert_placement"] = overrides["placement"]
    if "autoscale" in overrides:
        _apply_autoscale(targets, overrides["autoscale"])
    if "admission" in overrides:
        out["deployment"]["admission"] = copy.deepcopy(overrides["admission"])
    if "router" in overrides:
        out["router"] = overrides["router"]
    return out


def _apply_autoscale(targets: list[dict[str, Any]], policy: Mapping[str, Any]) -> None:
    scaled = [t for t in targets if t.get("autoscale")]
    if not scaled:
        raise ConfigError("policy.autoscale", dict(policy), "no pool of this scenario autoscales")
    for target in scaled:
        target["autoscale"] = {**target["autoscale"], **copy.deepcopy(dict(policy))}


def _as_deployment(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its pools spelled out as a ``deployment`` (same simulation)."""
    deployment = SimConfig.from_dict(config).effective_deployment().model_dump(mode="json")
    out = {k: v for k, v in config.items() if k not in _POOL_KEYS}
    out["deployment"] = deployment
    return out


# the top-level keys a deployment replaces (``hardware`` stays: offloading reads it)
_POOL_KEYS = ("replicas", "disagg", "router", "scheduler", "cache")
