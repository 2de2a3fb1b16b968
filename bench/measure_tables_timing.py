"""Kernel timing as aiconfigurator's collector does it (``collector/helper.py``).

Warm up, capture the op in a CUDA graph, warm up the replay, then time ``num_runs`` replays
with CUDA events and divide: kernel time without host launch overhead. Where capture fails the
op runs eagerly (and the caller records that in ``kernel_source``). The device is reached only
through a ``Timer``, so the arithmetic is testable on a fake clock without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Run = Callable[[], None]


class Timer(Protocol):
    """The device operations timing needs (CUDA events and graphs in measure_tables_torch)."""

    def warmup(self, run: Run, num_iters: int) -> None:
        """Run ``run`` ``num_iters`` times and wait for the device."""

    def capture(self, run: Run) -> Run | None:
        """A replay of ``run`` captured in a graph, or None where capture fails or is off."""

    def elapsed_ms(self, step: Run, num_iters: int) -> float:
        """Device time of ``num_iters`` back-to-back calls of ``step``, in milliseconds."""


@dataclass(frozen=True, slots=True)
class Timing:
    """One timed op."""

    latency_ms: float  # per op call (a step may hold several calls: ops_per_step)
    used_cuda_graph: bool  # False: eager fallback (launch overhead included)
    num_runs: int  # steps timed


def num_runs_for(estimate_ms: float, *, target_ms: float, min_runs: int, max_runs: int) -> int:
    """Steps to time so the timed span is about ``target_ms`` (CUDA events resolve ~0.5 us).

    aiconfigurator times 6 replays; a microsecond kernel then spans a few microseconds, so
    short steps get more replays, up to ``max_runs``.
    """
    if estimate_ms <= 0.0:
        return max_runs
    wanted = int(target_ms / estimate_ms) + 1
    return max(min_runs, min(max_runs, wanted))


def time_op(
    run: Run,
    timer: Timer,
    *,
    ops_per_step: int = 1,
    num_warmups: int = 3,
    min_runs: int = 6,
    max_runs: int = 1000,
    target_ms: float | None = 10.0,
) -> Timing:
    """Time ``run`` (one step holding ``ops_per_step`` op calls) on ``timer``.

    Args:
        run: one step; it may call the op several times on distinct weights (GEMM does, so
            that a call does not find its weights in L2 from the previous one).
        timer: the device.
        ops_per_step: op calls in one step; the latency is per call.
        num_warmups: eager calls before capture and replays before timing.
        min_runs: fewest steps timed (aiconfigurator: 6).
        max_runs: most steps timed.
        target_ms: timed span aimed at; None times exactly ``min_runs`` steps (collectives,
            where every rank must run the same count).

    Returns:
        The per-call latency and whether a CUDA graph was used.
    """
    timer.warmup(run, num_warmups)
    replay = timer.capture(run)
    step = replay if replay is not None else run
    timer.warmup(step, num_warmups)
    num_runs = min_runs
    if target_ms is not None:
        estimate_ms = timer.elapsed_ms(step, 1)
        num_runs = num_runs_for(
            estimate_ms, target_ms=target_ms, min_runs=min_runs, max_runs=max_runs
        )
    elapsed_ms = timer.elapsed_ms(step, num_runs)
    return Timing(elapsed_ms / num_runs / ops_per_step, replay is not None, num_runs)
