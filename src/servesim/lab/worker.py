"""One evaluation run (a policy on one scenario and seed), isolated in a forked child process.

The child gets a wall-clock limit (``SIGALRM``, then ``SIGKILL`` from the parent as a backstop
for code that never returns to the interpreter) and an address-space limit
(``resource.setrlimit(RLIMIT_AS)``: the limit is added to the child's size at the fork, so it
bounds what the evaluation allocates, not what servesim already holds). Hooks run under the
per-call limit of ``servesim.lab.guard``. Whatever happens, the parent gets a ``RunResult``:
figures, or a ``Failure`` (category, message, scenario, seed, simulated time).

Forking keeps start-up free (the child inherits the parent's imports) and isolates the
policy's state: nothing it does in one run is visible to the next.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from servesim.api import simulate
from servesim.core.errors import ServesimError
from servesim.engine.contracts import ContractError
from servesim.lab import guard
from servesim.lab.counterfactual import counterfactual_regret
from servesim.lab.diagnostics import diagnose
from servesim.lab.forking import call_forked
from servesim.lab.objectives import run_metrics
from servesim.lab.policy import Policy
from servesim.lab.suites import Run, apply_policy

# Seconds the parent waits beyond the wall-clock limit before it kills the child (the child's
# own alarm normally reports first, with the hook and the simulated time).
_KILL_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one run.

    Attributes:
        wall_s: wall-clock seconds for the whole run (a suite scenario takes about 1 s).
        memory_bytes: address space the run may add (None: unlimited); isolated runs only.
        hook_cpu_s: CPU seconds one hook call may take (CPU, not wall time, so a busy machine
            does not fail a fast policy; a hook that sleeps is caught by ``wall_s``).
            Built-in hooks take tens of microseconds; 20 ms catches a policy doing real work
            in every call (an O(n^2) queue scan) without flagging a sort of a long queue.
    """

    wall_s: float = 60.0
    memory_bytes: int | None = 4 * 2**30
    hook_cpu_s: float | None = 0.02


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a run produced no figures.

    Attributes:
        category: ``timeout``, ``memory``, ``error`` or ``contract`` (``guard.CATEGORIES``).
        message: one line naming the hook and the limit or exception.
        scenario: the scenario's name.
        seed: the run's seed.
        sim_time_s: the last simulated time a policy hook saw.
    """

    category: str
    message: str
    scenario: str
    seed: int
    sim_time_s: float

    def line(self) -> str:
        """``scenario/seed: category: message (t=12.3 s simulated)``."""
        return (
            f"{self.scenario}/seed {self.seed}: {self.category}: {self.message} "
            f"(t={self.sim_time_s:.3f} s simulated)"
        )


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of one run.

    Attributes:
        scenario: scenario name.
        seed: seed.
        metrics: ``objectives.METRICS`` figures (None on failure or skip).
        failure: what went wrong (None when it ran).
        skip_reason: why it did not run here ("" when it did).
        diagnostics: ``diagnostics.diagnose`` output when asked for.
    """

    scenario: str
    seed: int
    metrics: Mapping[str, float] | None = None
    failure: Failure | None = None
    skip_reason: str = ""
    diagnostics: Mapping[str, Any] | None = field(default=None, compare=True)


@dataclass(frozen=True, slots=True)
class Task:
    """Everything a worker needs (picklable; the policy travels by file path)."""

    policy: Policy
    run: Run
    limits: Limits
    isolate: bool = True
    with_diagnostics: bool = False
    num_counterfactual: int = 0


def run_task(task: Task) -> RunResult:
    """Run one task: skipped, in this process (``isolate=False``), or in a forked child."""
    if task.run.skip_reason:
        return RunResult(task.run.scenario, task.run.seed, skip_reason=task.run.skip_reason)
    if not task.isolate or not hasattr(os, "fork"):
        return _evaluate(task)
    return _in_child(task)


def _failure(task: Task, category: str, message: str, sim_time_s: float | None = None) -> RunResult:
    run = task.run
    now = guard.STATE.sim_time_s if sim_time_s is None else sim_time_s
    fail = Failure(category, message, run.scenario, run.seed, now)
    return RunResult(run.scenario, run.seed, failure=fail)


def _evaluate(task: Task) -> RunResult:
    """Simulate and score; every exception becomes a ``Failure``."""
    guard.reset(task.limits.hook_cpu_s)
    try:
        with _alarm(task.limits.wall_s):
            overrides = guard.guard_overrides(task.policy.overrides)
            config = apply_policy(json.loads(task.run.config_json), overrides)
            result = simulate(config)
            metrics = run_metrics(result)
            diag = diagnose(result) if task.with_diagnostics else None
            if diag is not None and task.num_counterfactual:
                diag["router_counterfactual"] = _counterfactual(config, result, task)
    except guard.PolicyFailure as exc:
        return _failure(task, exc.category, exc.message)
    except ContractError as exc:  # the engine's checks of what a hook returned
        return _failure(task, "contract", f"{exc.rule}: {exc.detail}", exc.now_s)
    except guard.EvaluationTimeout:
        where = f" in hook {guard.STATE.hook}" if guard.STATE.hook else ""
        return _failure(task, "timeout", f"wall-clock limit of {task.limits.wall_s:g} s{where}")
    except MemoryError:
        where = f" in hook {guard.STATE.hook}" if guard.STATE.hook else ""
        return _failure(task, "memory", f"memory limit exceeded{where}")
    except (ServesimError, ValidationError) as exc:
        return _failure(task, "error", f"invalid policy config: {str(exc).splitlines()[0]}")
    except Exception as exc:  # the engine tripped over what a policy did
        return _failure(task, "contract", f"engine failed: {type(exc).__name__}: {exc}")
    run = task.run
    return RunResult(run.scenario, run.seed, metrics=metrics, diagnostics=diag)


def _counterfactual(config: Mapping[str, Any], result: Any, task: Task) -> Any:
    """``counterfactual.counterfactual_regret`` of this run (same config, same seed)."""
    log = list(guard.STATE.route_log)

    def rerun(forced: dict[int, int]) -> Any:
        guard.STATE.forced_routes = forced
        guard.STATE.route_log = []
        try:
            return simulate(config)
        finally:
            guard.STATE.forced_routes = {}

    return counterfactual_regret(result, log, rerun, task.num_counterfactual)


@contextmanager
def _alarm(wall_s: float) -> Iterator[None]:
    """Raise ``EvaluationTimeout`` after ``wall_s`` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise guard.EvaluationTimeout

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, wall_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def _limit_memory(extra_bytes: int | None) -> None:
    if extra_bytes is None:
        return
    with open("/proc/self/statm", encoding="ascii") as f:
        size_bytes = int(f.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = size_bytes + extra_bytes
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _limited_evaluate(task: Task) -> RunResult:
    """In the child: the memory limit, then the run."""
    _limit_memory(task.limits.memory_bytes)
    return _evaluate(task)


def _in_child(task: Task) -> RunResult:
    wall_s = task.limits.wall_s
    outcome = call_forked(_limited_evaluate, task, wall_s=wall_s + _KILL_GRACE_S)
    if outcome.timed_out:
        return _failure(task, "timeout", f"killed after the {wall_s:g} s limit")
    if outcome.has_value:
        return outcome.value  # type: ignore[no-any-return]
    if outcome.error:
        return _failure(task, "error", outcome.error)
    if outcome.killed_by_sigkill:
        return _failure(task, "memory", "worker killed (out of memory)")
    return _failure(task, "error", f"worker died (status {outcome.status})")
