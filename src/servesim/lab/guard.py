"""Guards around a user's policy hooks: per-call time limit and failure category.

A worker replaces a policy's user class by a guarded subclass before the simulation builds it:
each hook call (``schedule``, ``on_batch_done``, ``route``...) is timed, the simulated time it
saw is noted, and anything it raises becomes a ``PolicyFailure`` naming the hook. What a hook
returns is checked by the engine itself, for every policy (``servesim.engine.contracts``).
The guarded class is registered under a content-addressed name (``lab_guard_<crc>``, in
snake_case as config files spell registry names) in the scheduler or router registry, which
is how the engine's ``kind: custom`` / ``router:`` lookups find it, so the engine needs no
special case.

User plug-ins of the other kinds (admission ``admit``, eviction ``add``/``reuse``/``evict``,
autoscaling ``decide``, expert placement ``place``) are guarded the same way in their own
registries.

Built-in policies chosen by ``kind`` run unguarded: they are the reference, not the suspect.
"""

from __future__ import annotations

import time
import traceback
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import servesim
from servesim.cluster.admission import ADMISSION_POLICIES
from servesim.cluster.placement import PLACEMENTS
from servesim.cluster.routers import ROUTERS
from servesim.cluster.scaling import SCALING_POLICIES
from servesim.core.errors import ConfigError, ServesimError
from servesim.core.registry import Registry, load_from_path
from servesim.engine.batch import Batch
from servesim.engine.eviction import EVICTION_POLICIES
from servesim.engine.schedulers import SCHEDULERS, ReplicaScheduler

#: Failure categories of an evaluation (``Failure.category``).
CATEGORIES = ("timeout", "memory", "error", "contract")

_SCHEDULER_HOOKS = ("on_batch_done", "on_finish", "on_decode_ticks", "can_skip", "num_queued")

# the other plug-in kinds: override key -> (field naming the class, registry, hooks)
_PLUGINS: dict[str, tuple[str, Registry[Any], tuple[str, ...]]] = {
    "admission": ("kind", ADMISSION_POLICIES, ("admit",)),
    "eviction": ("", EVICTION_POLICIES, ("add", "reuse", "evict")),
    "autoscale": ("policy", SCALING_POLICIES, ("decide",)),
    "placement": ("", PLACEMENTS, ("place",)),
}


class PolicyFailure(Exception):
    """A policy broke a limit or a contract, or raised; ``category`` is one of CATEGORIES."""

    def __init__(self, category: str, message: str) -> None:
        self.category = category
        self.message = message
        super().__init__(f"{category}: {message}")


class EvaluationTimeout(BaseException):
    """The evaluation's wall-clock limit fired (a ``BaseException``, so a policy's
    ``except Exception`` cannot swallow it)."""


@dataclass(slots=True)
class GuardState:
    """Per-process state of the running evaluation (workers run one at a time).

    Attributes:
        hook_limit_s: most wall seconds one hook call may take (None: no limit).
        sim_time_s: the latest simulated time a hook saw (reported on failure).
        hook: the hook running now ("" outside policy code).
        route_regrets: per routing decision of the policy's router, the prompt tokens queued
            ahead of the request on the chosen replica minus the fewest on any candidate
            (``diagnostics.router_regret``).
        route_log: per routing decision: (request id, position taken, candidates).
        forced_routes: decision number -> position to take instead of the router's answer
            (the counterfactual re-simulations, ``servesim.lab.counterfactual``).
    """

    hook_limit_s: float | None = None
    sim_time_s: float = 0.0
    hook: str = ""
    route_regrets: list[int] = field(default_factory=list)
    route_log: list[tuple[int, int, int]] = field(default_factory=list)
    forced_routes: dict[int, int] = field(default_factory=dict)


STATE = GuardState()
_PACKAGE_DIR = Path(servesim.__file__).resolve().parent
_GUARDED: dict[str, type] = {}


def reset(hook_limit_s: float | None) -> None:
    """Start a new evaluation in this process."""
    STATE.hook_limit_s = hook_limit_s
    STATE.sim_time_s = 0.0
    STATE.hook = ""
    STATE.route_regrets = []
    STATE.route_log = []
    STATE.forced_routes = {}


def call_hook(hook: str, sim_time_s: float | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one policy hook under the time limit; its exceptions become ``PolicyFailure``."""
    if sim_time_s is not None:
        STATE.sim_time_s = float(sim_time_s)
    outer = STATE.hook
    STATE.hook = hook
    start = time.thread_time()
    try:
        result = fn(*args)
    except (PolicyFailure, MemoryError, EvaluationTimeout, ServesimError):
        # ``STATE.hook`` still names the hook for the failure message; servesim's own errors
        # (the block manager refusing blocks) are the engine's to report as contract errors
        raise
    except Exception as exc:
        category = "contract" if _raised_by_engine(exc) else "error"
        raise PolicyFailure(category, f"{hook} raised {type(exc).__name__}: {exc}") from exc
    STATE.hook = outer
    limit = STATE.hook_limit_s
    if limit is not None and time.thread_time() - start > limit:
        raise PolicyFailure("timeout", f"hook {hook} exceeded its {limit * 1e3:g} ms CPU limit")
    return result


def _raised_by_engine(exc: Exception) -> bool:
    """Raised inside servesim itself (a state method the policy called, an invariant check):
    the policy broke an engine contract rather than failing in its own code."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE_DIR)


def guard_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with user scheduler classes and every router (built-in ones too, for the
    regret diagnostics) replaced by their guarded names."""
    out = dict(overrides)
    scheduler = out.get("scheduler")
    if isinstance(scheduler, Mapping) and scheduler.get("kind") == "custom":
        out["scheduler"] = {**scheduler, "path": _guarded_name(str(scheduler["path"]), "s")}
    router = out.get("router")
    if isinstance(router, str):
        out["router"] = _guarded_name(router, "r")
    for key, (field_name, registry, hooks) in _PLUGINS.items():
        value = out.get(key)
        spec = value.get(field_name) if isinstance(value, Mapping) else value
        if isinstance(spec, str) and ":" in spec and spec.split(":", 1)[0].endswith(".py"):
            name = _guarded_plugin(key, spec, registry, hooks)
            out[key] = {**value, field_name: name} if isinstance(value, Mapping) else name
    return out


def _guarded_plugin(key: str, spec: str, registry: Registry[Any], hooks: tuple[str, ...]) -> str:
    """A user plug-in class whose ``hooks`` run under ``call_hook``, registered in
    ``registry`` under a content-addressed name."""
    path = Path(spec.rpartition(":")[0])
    digest = zlib.crc32(spec.encode() + (path.read_bytes() if path.is_file() else b""))
    name = f"lab_guard_{key}_{digest:08x}"
    if name not in _GUARDED:
        cls = load_from_path(spec, "policy")
        if not isinstance(cls, type):
            raise ConfigError("policy", spec, "must name a class")
        namespace = {
            h: _timed(h, getattr(cls, h)) for h in hooks if callable(getattr(cls, h, None))
        }
        guarded = type(f"Guarded{cls.__name__}", (cls,), namespace)
        registry.register(name)(guarded)
        _GUARDED[name] = guarded
    return name


def _guarded_name(spec: str, role: str) -> str:
    path = Path(spec.rpartition(":")[0])
    digest = zlib.crc32(spec.encode() + (path.read_bytes() if path.is_file() else b""))
    name = f"lab_guard_{role}{digest:08x}"
    if name not in _GUARDED:
        cls = ROUTERS.get(spec) if role == "r" else load_from_path(spec, "policy")
        if not isinstance(cls, type):
            raise ConfigError("policy", spec, "must name a class")
        if role == "s":
            guarded = _guard_scheduler(cls)
            SCHEDULERS.register(name)(guarded)
        else:
            guarded = _guard_router(cls)
            ROUTERS.register(name)(guarded)
        _GUARDED[name] = guarded
    return name


def _timed(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def method(self: Any, *args: Any) -> Any:
        now = args[-1] if name == "on_batch_done" else None
        return call_hook(name, now, original, self, *args)

    method.__name__ = name
    return method


def _guard_scheduler(cls: type) -> type:
    namespace: dict[str, Any] = {h: _timed(h, getattr(cls, h)) for h in _SCHEDULER_HOOKS}
    original = cls.schedule

    def schedule(self: ReplicaScheduler, now: float, state: Any) -> Batch | None:
        return call_hook("schedule", now, original, self, now, state)  # type: ignore[no-any-return]

    namespace["schedule"] = schedule
    return type(f"Guarded{cls.__name__}", (cls,), namespace)


def _guard_router(cls: type) -> type:
    original = cls.route

    def route(self: Any, request: Any, views: Sequence[Any]) -> Any:
        index = call_hook("route", request.arrival_s, original, self, request, views)
        if type(index) is int and 0 <= index < len(views):  # else the engine's check reports
            queued = [v.num_queued_prompt_tokens for v in views]
            STATE.route_regrets.append(queued[index] - min(queued))
            index = STATE.forced_routes.get(len(STATE.route_log), index)
            STATE.route_log.append((request.request_id, index, len(views)))
        return index

    return type(f"Guarded{cls.__name__}", (cls,), {"route": route})
