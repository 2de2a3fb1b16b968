"""What the lab evaluates: a ``Policy`` is a named set of overrides of a scenario's config.

A policy may be given as

- ``path/to/file.py:ClassName``: a ``ReplicaScheduler`` subclass or a router class (anything
  with ``route(request, views)``), loaded the same way ``--scheduler``/``--router`` load it;
- a class object defined at the top level of a Python file (sent to workers by its file path);
- a registry name of a built-in scheduler (``vllm``, ``sarathi``...) or router;
- a mapping with the keys ``scheduler`` (a scheduler config: ``{"kind": "sarathi",
  "chunk_size": 256}``, or ``{"kind": "custom", "path": "f.py:C", "options": {...}}``),
  ``router`` (a name or ``file.py:Class``), ``cache`` (KV-cache fields), ``admission``
  (a name, ``file.py:Class`` or ``{"kind": ..., "options": {...}}``), ``eviction`` (a
  prefix-cache eviction policy), ``autoscale`` (a scaling policy: a name, path or
  ``{"policy": ..., "options": {...}}``), ``placement`` (a MoE expert placement) and ``name``.

A file's class is told apart by what it defines: a ``ReplicaScheduler`` subclass, ``route``
(router), ``admit`` (admission), ``evict`` (eviction), ``decide`` (autoscaling) or ``place``
(expert placement).

Every form becomes the same plain, picklable ``Policy``, so built-in and user policies go
through one code path (the workers' guard, ``servesim.lab.guard``).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servesim.cluster.admission import ADMISSION_POLICIES
from servesim.cluster.placement import PLACEMENTS
from servesim.cluster.routers import ROUTERS
from servesim.cluster.scaling import SCALING_POLICIES
from servesim.core.errors import ConfigError, UnknownNameError
from servesim.core.registry import Registry, load_from_path
from servesim.engine.eviction import EVICTION_POLICIES
from servesim.engine.schedulers import SCHEDULERS, ReplicaScheduler
from servesim.lab.forking import call_forked

POLICY_KEYS = ("scheduler", "router", "cache", "admission", "eviction", "autoscale", "placement")

#: the plug-in kinds beyond schedulers and routers: (key, method that marks the class, registry)
PLUGIN_KINDS: tuple[tuple[str, str, Registry[Any]], ...] = (
    ("admission", "admit", ADMISSION_POLICIES),
    ("eviction", "evict", EVICTION_POLICIES),
    ("autoscale", "decide", SCALING_POLICIES),
    ("placement", "place", PLACEMENTS),
)

# Importing a policy file (to see what it is) must not take long: it runs again in every run.
_IMPORT_WALL_S = 30.0


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy as the lab runs it.

    Attributes:
        name: label in reports (the class name, registry name or the mapping's ``name``).
        overrides_json: the config overrides (keys of ``POLICY_KEYS``) as key-sorted JSON, so
            the policy is hashable, picklable and compares by value.
    """

    name: str
    overrides_json: str

    @property
    def overrides(self) -> dict[str, Any]:
        """The overrides as a fresh dict (scheduler / router / cache)."""
        return json.loads(self.overrides_json)  # type: ignore[no-any-return]


def resolve_policy(policy: Policy | str | type | Mapping[str, Any]) -> Policy:
    """Turn any accepted policy form into a ``Policy`` (see the module docstring).

    Raises:
        ConfigError: a file or class that is neither a scheduler nor a router, unknown keys.
        UnknownNameError: a name that is no built-in scheduler or router.
    """
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, type):
        return _from_class(policy, _class_spec(policy))
    if isinstance(policy, str):
        return _from_string(policy)
    if isinstance(policy, Mapping):
        return _from_mapping(policy)
    raise ConfigError("policy", policy, "must be file.py:Class, a class, a name or a mapping")


def _make(name: str, overrides: Mapping[str, Any]) -> Policy:
    return Policy(name=name, overrides_json=json.dumps(dict(overrides), sort_keys=True))


def _from_string(spec: str) -> Policy:
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        path_str, _, _ = spec.rpartition(":")
        # An absolute path: workers may run in another directory.
        absolute = f"{Path(path_str).resolve()}:{spec.rpartition(':')[2]}"
        role, name, problem = _classify_isolated(absolute)
        if problem:
            raise ConfigError("policy", spec, problem)
        return _from_role(role, name, absolute)
    if spec in SCHEDULERS:
        return _make(spec.lower(), {"scheduler": {"kind": spec.lower()}})
    if spec in ROUTERS:
        return _make(spec.lower(), {"router": spec.lower()})
    for role, _, registry in PLUGIN_KINDS:
        if spec in registry:
            return _from_role(role, spec.lower(), spec.lower())
    names = [*SCHEDULERS.names(), *ROUTERS.names()]
    for _, _, registry in PLUGIN_KINDS:
        names += registry.names()
    raise UnknownNameError("policy", spec, names)


def _class_spec(cls: type) -> str:
    """``/abs/file.py:ClassName`` of a class defined at the top level of a file."""
    try:
        source = inspect.getsourcefile(cls)
    except TypeError:
        source = None
    module = sys.modules.get(cls.__module__)
    if source is None or getattr(module, cls.__name__, None) is not cls:
        raise ConfigError(
            "policy", cls.__qualname__, "must be a class defined at the top level of a .py file"
        )
    return f"{Path(source).resolve()}:{cls.__name__}"


def _from_class(cls: type, spec: str) -> Policy:
    return _from_role(_role(cls), cls.__name__, spec)


def _role(cls: type) -> str:
    if issubclass(cls, ReplicaScheduler):
        return "scheduler"
    if callable(getattr(cls, "route", None)):
        return "router"
    for role, method, _ in PLUGIN_KINDS:
        if callable(getattr(cls, method, None)):
            return role
    raise ConfigError(
        "policy",
        cls.__name__,
        "is neither a ReplicaScheduler subclass nor a router (no route method), nor a "
        "plug-in with admit, evict, decide or place",
    )


def _from_role(role: str, name: str, spec: str) -> Policy:
    if role == "scheduler":
        return _make(name, {"scheduler": {"kind": "custom", "path": spec}})
    if role == "admission":
        return _make(name, {"admission": {"kind": spec}})
    if role == "autoscale":
        return _make(name, {"autoscale": {"policy": spec}})
    return _make(name, {role: spec})


def _classify(spec: str) -> tuple[str, str, str]:
    """``(role, class name, "")``, or ``("", "", problem)``: load ``spec`` and look at it."""
    try:
        cls = load_from_path(spec, "policy")
        if not isinstance(cls, type):
            return "", "", "must name a class"
        return _role(cls), cls.__name__, ""
    except ConfigError as exc:
        return "", "", exc.constraint
    except Exception as exc:  # the user's module failed to import: say how
        return "", "", f"cannot be loaded: {type(exc).__name__}: {exc}"


def _classify_isolated(spec: str) -> tuple[str, str, str]:
    """``_classify`` in a forked child, so the parent never runs the policy's module code
    (its top level could hang, or patch servesim for every later evaluation)."""
    if not hasattr(os, "fork"):
        return _classify(spec)
    outcome = call_forked(_classify, spec, wall_s=_IMPORT_WALL_S)
    if outcome.timed_out:
        return "", "", f"importing it took over {_IMPORT_WALL_S:g} s"
    if not outcome.has_value:
        return "", "", f"cannot be loaded: {outcome.error or 'its process died'}"
    return outcome.value  # type: ignore[no-any-return]


def _from_mapping(mapping: Mapping[str, Any]) -> Policy:
    unknown = sorted(set(mapping) - {*POLICY_KEYS, "name"})
    if unknown:
        raise ConfigError("policy", unknown, f"unknown keys; valid: name, {', '.join(POLICY_KEYS)}")
    overrides: dict[str, Any] = {}
    scheduler = mapping.get("scheduler")
    if isinstance(scheduler, str):
        scheduler = _from_string(scheduler).overrides.get("scheduler")
        if scheduler is None:
            raise ConfigError("policy.scheduler", mapping["scheduler"], "is not a scheduler")
    if scheduler is not None:
        scheduler = dict(scheduler)
        path = scheduler.get("path")
        if scheduler.get("kind") == "custom" and isinstance(path, str) and ":" in path:
            file_part, _, attr = path.rpartition(":")
            scheduler["path"] = f"{Path(file_part).resolve()}:{attr}"
        overrides["scheduler"] = scheduler
    router = mapping.get("router")
    if router is not None:
        if not isinstance(router, str):
            raise ConfigError("policy.router", router, "must be a router name or file.py:Class")
        routed = _from_string(router).overrides.get("router")
        if routed is None:
            raise ConfigError("policy.router", router, "is not a router")
        overrides["router"] = routed
    if mapping.get("cache") is not None:
        overrides["cache"] = dict(mapping["cache"])
    for role, _, _ in PLUGIN_KINDS:
        if mapping.get(role) is not None:
            overrides[role] = _plugin_override(role, mapping[role])
    if not overrides:
        raise ConfigError("policy", dict(mapping), f"sets none of {', '.join(POLICY_KEYS)}")
    name = mapping.get("name") or _default_name(overrides)
    return _make(str(name), overrides)


def _plugin_override(role: str, value: Any) -> Any:
    """The override of a plug-in key: a name or path (checked to be that kind), or for
    ``admission`` / ``autoscale`` a mapping with the name and its ``options``."""
    field = "policy" if role == "autoscale" else "kind"
    if isinstance(value, Mapping) and role in ("admission", "autoscale"):
        unknown = sorted(set(value) - {field, "options"})
        if unknown or not isinstance(value.get(field), str):
            raise ConfigError(
                f"policy.{role}", dict(value), f"needs {field!r} and optional options"
            )
        named = _plugin_override(role, value[field])
        return {**named, "options": dict(value.get("options") or {})}
    if not isinstance(value, str):
        raise ConfigError(f"policy.{role}", value, "must be a name or file.py:Class")
    resolved = _from_string(value).overrides.get(role)
    if resolved is None:
        raise ConfigError(
            f"policy.{role}", value, f"is not a{'n' * (role[0] in 'ae')} {role} policy"
        )
    return resolved


def _default_name(overrides: Mapping[str, Any]) -> str:
    parts = []
    scheduler = overrides.get("scheduler")
    if scheduler is not None:
        kind = scheduler.get("kind", "vllm")
        path = scheduler.get("path", "")
        parts.append(path.rpartition(":")[2] if kind == "custom" else kind)
    if overrides.get("router") is not None:
        parts.append(str(overrides["router"]).rpartition(":")[2])
    for role, _, _ in PLUGIN_KINDS:
        value = overrides.get(role)
        if isinstance(value, Mapping):
            value = value.get("policy" if role == "autoscale" else "kind")
        if value is not None:
            parts.append(str(value).rpartition(":")[2])
    return "+".join(parts) or "policy"
