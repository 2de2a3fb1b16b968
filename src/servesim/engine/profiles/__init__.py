"""Serving engines as profiles (``EngineProfile``): one module per engine, registered by name.

``vllm-0.6``, ``vllm-v1``, ``vllm-v1-async``, ``sglang``, ``trtllm``. ``engine: auto`` follows
the scheduler config: vLLM ``version: v1`` is ``vllm-v1``, everything else ``vllm-0.6`` (the
engine loop other schedulers are modelled in).
"""

from __future__ import annotations

from typing import Any

from servesim.engine.profiles import sglang, trtllm, vllm  # noqa: F401  (registers them)
from servesim.engine.profiles.base import (
    ENGINES,
    LARGE_GPU_BYTES,
    EngineProfile,
    EngineTiming,
    Launcher,
    LaunchSettings,
)

AUTO = "auto"


def get_engine(name: str) -> EngineProfile:
    """The profile ``name``; raises ``UnknownNameError`` listing the valid names."""
    return ENGINES.get(name)


def engine_names() -> list[str]:
    """Registered engine profiles, sorted."""
    return ENGINES.names()


def resolve_engine(
    setting: str, scheduler_kind: str = "vllm", version: str | None = None
) -> EngineProfile:
    """The profile for an ``engine`` setting; ``auto`` follows the scheduler config."""
    if setting != AUTO:
        return get_engine(setting)
    if scheduler_kind == "vllm" and version == "v1":
        return get_engine("vllm-v1")
    return get_engine("vllm-0.6")


__all__ = [
    "AUTO",
    "ENGINES",
    "LARGE_GPU_BYTES",
    "EngineProfile",
    "EngineTiming",
    "LaunchSettings",
    "Launcher",
    "engine_names",
    "get_engine",
    "resolve_engine",
]


def with_engine_defaults(
    scheduler: dict[str, Any] | None,
    cache: dict[str, Any] | None,
    engine: str,
    gpu_memory_bytes: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Raw scheduler and cache mappings with ``engine``'s defaults under what the user set.

    A user-set field wins; a scheduler of another ``kind`` than the profile's keeps only its
    own fields (the engine then contributes its host model and kernels, not its rules).
    """
    profile = get_engine(engine)
    user_sched = dict(scheduler or {})
    defaults = profile.scheduler_defaults(gpu_memory_bytes)
    if user_sched.get("kind", defaults["kind"]) == defaults["kind"]:
        user_sched = {**defaults, **user_sched}
    return user_sched, {**profile.cache, **dict(cache or {})}
