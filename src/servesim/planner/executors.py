"""Executors: run plan evaluations in-process, on a local process pool, or on Ray.

All three take a top-level function and a list of picklable tasks and yield
``(index, result)`` as evaluations finish (any order). Results are independent of the executor
because each task carries its own seed; the search consumes them in a fixed order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures import ProcessPoolExecutor as _Pool
from typing import Any, Protocol

from servesim.core.errors import ConfigError


class Executor(Protocol):
    """Runs ``fn`` on every task; yields ``(task index, result)`` as each finishes."""

    name: str

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Evaluate ``fn(task)`` for each task."""
        ...

    def close(self) -> None:
        """Release workers."""
        ...


class InProcessExecutor:
    """Runs tasks one after another in this process (debugging, tests, tiny searches)."""

    name = "in-process"

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Evaluate in order."""
        for i, task in enumerate(tasks):
            yield i, fn(task)

    def close(self) -> None:
        """Nothing to release."""


class LocalPoolExecutor:
    """A local pool of worker processes (default: one per core)."""

    name = "process-pool"

    def __init__(self, num_workers: int | None = None) -> None:
        self.num_workers = num_workers or os.cpu_count() or 1
        self._pool: _Pool | None = None

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Submit every task; yield each as it completes."""
        if self._pool is None:
            self._pool = _Pool(max_workers=self.num_workers)
        pending: dict[Future[Any], int] = {self._pool.submit(fn, t): i for i, t in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: pending[f]):
                yield pending.pop(future), future.result()

    def close(self) -> None:
        """Shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class RayExecutor:
    """Ray tasks on a local or remote cluster (``pip install 'servesim[ray]'``).

    ``address``: the cluster's (default: ``RAY_ADDRESS``, else a new local instance for this
    process, ``num_cpus`` CPUs, never another process's cluster found on the machine).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "executor", "ray", "ray is not installed (pip install 'servesim[ray]')"
            ) from None
        self._ray = ray
        if not ray.is_initialized():
            # No address and no RAY_ADDRESS: a Ray instance of this process's own. Ray's
            # ``address=None`` would also join the cluster last started on this machine
            # (/tmp/ray/ray_current_cluster, ray.init's docs), e.g. another test run's.
            address = address or os.environ.get("RAY_ADDRESS") or "local"
            kwargs: dict[str, Any] = {
                "address": address,
                "ignore_reinit_error": True,
                "log_to_driver": False,
            }
            if address == "local" and num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            ray.init(**kwargs)
            self._owns = True
        else:
            self._owns = False

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Submit every task as a Ray task; yield each as it completes."""
        remote = self._ray.remote(fn)
        pending = {remote.remote(t): i for i, t in enumerate(tasks)}
        while pending:
            ready, _ = self._ray.wait(list(pending), num_returns=1)
            for ref in ready:
                yield pending.pop(ref), self._ray.get(ref)

    def close(self) -> None:
        """Shut Ray down if this executor started it."""
        if self._owns:
            self._ray.shutdown()


def make_executor(
    kind: str = "process", *, num_workers: int | None = None, ray_address: str | None = None
) -> Executor:
    """``inline`` (in-process), ``process`` (local pool) or ``ray``."""
    if kind == "inline":
        return InProcessExecutor()
    if kind == "process":
        if (num_workers or os.cpu_count() or 1) <= 1:
            return InProcessExecutor()
        return LocalPoolExecutor(num_workers)
    if kind == "ray":
        return RayExecutor(ray_address, num_workers)
    raise ConfigError("executor", kind, "must be inline, process or ray")
