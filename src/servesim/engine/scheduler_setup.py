"""The scheduler a replica's config names, and the facts read from it before the replica is
built (the memory plan's token budget, whether prefixes are cached)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servesim.engine.schedulers import SCHEDULERS, ReplicaScheduler
from servesim.engine.schedulers.vllm import prefix_caching_default

if TYPE_CHECKING:
    from servesim.engine.setup import ReplicaSetup


def make_scheduler(config: object, *, max_model_len: int) -> ReplicaScheduler:
    """Instantiate the scheduler a config names (``custom`` loads its ``path``)."""
    kind = str(getattr(config, "kind", ""))
    name = str(getattr(config, "path", "")) if kind == "custom" else kind
    cls = SCHEDULERS.get(name)
    return cls(config, max_model_len=max_model_len)


def memory_token_budget(config: object, *, max_model_len: int) -> int:
    """Tokens of the step the memory plan reserves activations for: the scheduler's own
    budget (its engine's default when unset, e.g. 512 for vLLM 0.6 on a >32K-context model),
    capped at vLLM's profiling run of ``max(max_model_len, 2048)`` tokens. One rule for the
    replica, the deployment check and the planner."""
    budget = make_scheduler(config, max_model_len=max_model_len).token_budget
    return min(budget, max(max_model_len, 2048))


def prefix_caching(setup: ReplicaSetup) -> bool:
    """Whether the replica caches prefixes: as configured, else its scheduler's default."""
    caching = setup.cache.enable_prefix_caching
    return prefix_caching_default(setup.scheduler) if caching is None else caching
