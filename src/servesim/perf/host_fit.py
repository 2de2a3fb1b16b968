"""Host-time constants of one engine profile, fitted to a user's measured runs.

``servesim calibrate --from-runs`` replays each run (a ``vllm bench serve`` result) with the
engine profile's host model (``HostOverhead``) and searches the constants that make the
replayed mean TTFT, TPOT, ITL and E2E match the measured ones. What is fitted:

- the per-step fixed cost: ``base_s`` when the engine runs its CPU work between GPU steps
  (``overlap="none"``), ``exposed_s`` when it overlaps it (``overlap="step"``: there the
  step's CPU time only shows when it exceeds the GPU time, so the serial hand-off is what
  every step pays);
- the per-sequence cost ``per_seq_s`` (each running decode sequence);
- the per-token cost ``per_token_s`` only where the runs tell it apart from the per-sequence
  cost (decode-only steps have one token per sequence, so only prefill-heavy steps separate
  them): fitted as a third parameter when the two-parameter fit misses by more than 0.1% RMS
  (``PER_TOKEN_MIN_LOSS``), kept when that halves the error (``PER_TOKEN_MIN_GAIN``).

Everything else of the profile stays as it is: the overlap mode, the CUDA-graph rules and
eager launch cost, ``per_prefill_seq_s`` and ``cpu_speed``. Each parameter is bounded to a
physically sensible range (``FIT_BOUNDS``). The search is Nelder-Mead on the logarithms of
the parameters (derivative-free and deterministic: the replays are seeded); the error is the
mean squared relative error of the compared means over all runs. Leave-one-run-out refits
without run i and predicts run i.

The replays themselves belong to a higher layer: this module receives them as a callback
``replay(run_index, host) -> predicted means``. ``HostOverridePerfModel`` is the cost model
such a callback simulates with: the GPU time of a base model (memoised across the search),
the host time of the candidate constants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize

from servesim.core.errors import ConfigError
from servesim.perf.calibration import HostOverhead
from servesim.perf.types import BatchShape, MemoryPlan, PerfModel, ReplicaPlan, StageTimes

# The means compared (``vllm bench serve`` keys); a run contributes those it measured.
FITTED_METRICS: tuple[str, ...] = ("mean_ttft_ms", "mean_tpot_ms", "mean_itl_ms", "mean_e2el_ms")

# Physically sensible range of every fitted constant (seconds).
FIT_BOUNDS: dict[str, tuple[float, float]] = {
    # 20 us (a C++ batch manager's loop) .. 20 ms (5x vLLM 0.6's ~4 ms step bubble, RFC #6854)
    "base_s": (2e-5, 2e-2),
    # the serial hand-off under overlap: 1 us .. 5 ms (25x the BLIS-fitted 0.2 ms)
    "exposed_s": (1e-6, 5e-3),
    # 0.1 us (C++) .. 1 ms per running sequence (3x vLLM 0.6's 0.3 ms, set on apex_plus)
    "per_seq_s": (1e-7, 1e-3),
    # 1 ns (nothing) .. 5 us per scheduled token (40 ms on an 8,192-token step: input
    # preparation is vectorised; tokenising in Python is ~1-2 us/token, the far end)
    "per_token_s": (1e-9, 5e-6),
}
# Where a fitted constant starts when the profile has it at zero (per_token_s).
START_WHEN_ZERO: dict[str, float] = {"per_token_s": 1e-7, "exposed_s": 1e-4}
# The three-parameter fit (with per_token_s) is tried only when the two-parameter fit misses
# by more than 0.1% RMS (below that the runs leave nothing for a third constant to explain),
# and kept when it at least halves the error and per_token_s is determined by the runs. A
# per-token cost can hide in a larger per-sequence cost at well under 1% RMS (prefill-heavy
# runs, tests/perf/test_host_fit.py), so the floor is low; on noisy runs the leave-one-run-out
# column shows whether the third constant predicts or only fits (then use --per-token off).
PER_TOKEN_MIN_LOSS = 1e-6
PER_TOKEN_MIN_GAIN = 0.5
# A constant whose doubling moves no compared mean of any run by this much is reported as
# not determined by the runs (its fitted value is then the profile's, or wherever the flat
# search stopped inside its bounds).
MIN_SENSITIVITY = 0.005
# Nelder-Mead: stop at 0.2% in every parameter; the first simplex steps by x2 per axis.
XATOL_LOG = 2e-3
SIMPLEX_STEP_LOG = math.log(2.0)
MAX_EVALS_PER_PARAM = 60

Replay = Callable[[int, HostOverhead], Mapping[str, float]]


class HostOverridePerfModel:
    """``base``'s GPU time with the host time of ``host`` for plans of ``host_profile``.

    Exact for the latencies when ``host`` differs from the plan's profile only in the CPU
    constants (``base_s``, ``exposed_s``, ``per_*``): the eager launch bound and the CUDA-graph
    rules that shape the GPU time are the base model's (energy keeps the base's host time).
    """

    def __init__(self, base: PerfModel, host_profile: str, host: HostOverhead) -> None:
        self.base = base
        self.host_profile = host_profile
        self.host = host

    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        """The base model's stage times; the overhead recomputed with ``host``."""
        times = self.base.iteration_time(plan, batch)
        if plan.host_profile != self.host_profile:
            return times
        overhead_s = self.host.host_time_s(
            batch.num_decode_seqs, batch.num_prefill_seqs, batch.num_tokens, max(times.stage_s)
        )
        return replace(times, overhead_s=overhead_s)

    def memory_plan(
        self,
        plan: ReplicaPlan,
        *,
        block_size_tokens: int = 16,
        gpu_memory_utilization: float = 0.9,
        max_num_batched_tokens: int = 8192,
    ) -> MemoryPlan:
        """The base model's memory plan (host time does not change it)."""
        return self.base.memory_plan(
            plan,
            block_size_tokens=block_size_tokens,
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_batched_tokens=max_num_batched_tokens,
        )


def fitted_names(host: HostOverhead, *, per_token: bool) -> tuple[str, ...]:
    """The constants fitted for a profile (module docstring)."""
    fixed = "exposed_s" if host.overlap == "step" else "base_s"
    return (fixed, "per_seq_s", "per_token_s") if per_token else (fixed, "per_seq_s")


def relative_errors(
    predicted: Mapping[str, float], measured: Mapping[str, float]
) -> dict[str, float]:
    """(predicted - measured) / measured for every ``FITTED_METRICS`` key both have."""
    out = {}
    for key in FITTED_METRICS:
        meas, pred = measured.get(key), predicted.get(key)
        if meas and pred is not None and math.isfinite(pred) and meas > 0:
            out[key] = (float(pred) - float(meas)) / float(meas)
    return out


@dataclass(frozen=True, slots=True)
class HostFit:
    """One fit over a set of runs.

    Attributes:
        host: the profile with the fitted constants.
        params: fitted constant -> value (seconds).
        loss: mean squared relative error over the runs' compared means.
        errors: per run fitted (by index), metric -> relative error.
        num_replays: replays the search ran (memoised repeats not counted).
    """

    host: HostOverhead
    params: Mapping[str, float]
    loss: float
    errors: Mapping[int, Mapping[str, float]]
    num_replays: int


class _Objective:
    """Memoised replays of a set of runs for candidate log-parameters."""

    def __init__(
        self,
        base: HostOverhead,
        names: Sequence[str],
        runs: Sequence[int],
        measured: Sequence[Mapping[str, float]],
        replay: Replay,
    ) -> None:
        self.base, self.names, self.runs = base, tuple(names), tuple(runs)
        self.measured, self.replay = measured, replay
        self.memo: dict[tuple[int, tuple[float, ...]], dict[str, float]] = {}

    def host(self, log_x: np.ndarray) -> HostOverhead:
        values = {n: float(math.exp(v)) for n, v in zip(self.names, log_x, strict=True)}
        return replace(self.base, **values)  # type: ignore[arg-type]

    def errors(self, run: int, log_x: np.ndarray) -> dict[str, float]:
        key = (run, tuple(round(float(v), 9) for v in log_x))
        found = self.memo.get(key)
        if found is None:
            predicted = self.replay(run, self.host(log_x))
            found = self.memo[key] = relative_errors(predicted, self.measured[run])
        return found

    def __call__(self, log_x: np.ndarray) -> float:
        squares = [e * e for r in self.runs for e in self.errors(r, log_x).values()]
        return float(np.mean(squares)) if squares else 0.0


def _log_bounds(names: Sequence[str]) -> list[tuple[float, float]]:
    return [(math.log(FIT_BOUNDS[n][0]), math.log(FIT_BOUNDS[n][1])) for n in names]


def _start(base: HostOverhead, names: Sequence[str]) -> np.ndarray:
    out = []
    for name, (low, high) in zip(names, _log_bounds(names), strict=True):
        value = getattr(base, name) or START_WHEN_ZERO.get(name, FIT_BOUNDS[name][0])
        out.append(min(max(math.log(value), low), high))
    return np.asarray(out, dtype=np.float64)


def _simplex(x0: np.ndarray, bounds: Sequence[tuple[float, float]]) -> np.ndarray:
    points = [x0]
    for i, (_, high) in enumerate(bounds):
        step = SIMPLEX_STEP_LOG if x0[i] + SIMPLEX_STEP_LOG <= high else -SIMPLEX_STEP_LOG
        point = x0.copy()
        point[i] += step
        points.append(point)
    return np.asarray(points)


def fit_host(
    base: HostOverhead,
    names: Sequence[str],
    measured: Sequence[Mapping[str, float]],
    replay: Replay,
    *,
    runs: Sequence[int] | None = None,
    start: Mapping[str, float] | None = None,
) -> HostFit:
    """Fit ``names`` of ``base`` to the runs ``runs`` (default: all) of ``measured``.

    Args:
        base: the profile's host model (everything not in ``names`` is kept).
        names: the constants to fit (keys of ``FIT_BOUNDS``).
        measured: per run, its measured means (``vllm bench serve`` keys).
        replay: predicted means of run i under a candidate host model.
        runs: the run indices fitted.
        start: starting values (default: the profile's, ``START_WHEN_ZERO`` for zeros).
    """
    unknown = [n for n in names if n not in FIT_BOUNDS]
    if unknown:
        raise ConfigError("fitted host constants", unknown, f"must be in {sorted(FIT_BOUNDS)}")
    chosen = tuple(range(len(measured))) if runs is None else tuple(runs)
    objective = _Objective(base, names, chosen, measured, replay)
    bounds = _log_bounds(names)
    x0 = _start(replace(base, **(start or {})), names)
    result = minimize(
        objective,
        x0,
        method="Nelder-Mead",
        bounds=bounds,
        options={
            "initial_simplex": _simplex(x0, bounds),
            "xatol": XATOL_LOG,
            "fatol": 1e-9,
            "maxfev": MAX_EVALS_PER_PARAM * len(names),
        },
    )
    best = np.asarray(result.x, dtype=np.float64)
    host = objective.host(best)
    return HostFit(
        host=host,
        params={n: getattr(host, n) for n in names},
        loss=objective(best),
        errors={r: objective.errors(r, best) for r in chosen},
        num_replays=len(objective.memo),
    )


@dataclass(frozen=True, slots=True)
class HostCalibration:
    """The fit over all runs, how well it predicts runs left out, and what was determined.

    Attributes:
        fit: the fit over every run.
        before: per run, the relative errors of the profile's own constants.
        leave_one_out: per run i, the errors predicting it with constants fitted without it
            (empty with a single run).
        loo_params: per run i, the constants fitted without it.
        undetermined: fitted constants the runs do not determine (``MIN_SENSITIVITY``).
        per_token_loss: the three-parameter fit's error when it was tried (None: not tried).
        two_param_loss: the two-parameter fit's error.
    """

    fit: HostFit
    before: Mapping[int, Mapping[str, float]]
    leave_one_out: Mapping[int, Mapping[str, float]]
    loo_params: Mapping[int, Mapping[str, float]]
    undetermined: tuple[str, ...]
    per_token_loss: float | None
    two_param_loss: float


def _undetermined(
    fit: HostFit, measured: Sequence[Mapping[str, float]], replay: Replay
) -> list[str]:
    """Fitted constants whose doubling moves no compared mean by ``MIN_SENSITIVITY``."""
    out = []
    for name, value in fit.params.items():
        low, high = FIT_BOUNDS[name]
        probe = replace(fit.host, **{name: min(max(2 * value, low), high)})
        if probe == fit.host:
            probe = replace(fit.host, **{name: value / 2})
        moved = 0.0
        for run in fit.errors:
            pred = relative_errors(replay(run, probe), measured[run])
            moved = max(moved, *(abs(pred[k] - e) for k, e in fit.errors[run].items() if k in pred))
        if moved < MIN_SENSITIVITY:
            out.append(name)
    return out


def calibrate_host(
    base: HostOverhead,
    measured: Sequence[Mapping[str, float]],
    replay: Replay,
    *,
    per_token: str = "auto",
) -> HostCalibration:
    """Fit ``base`` to every run, then leave each run out in turn (module docstring).

    Args:
        base: the engine profile's host model.
        measured: per run, its measured means.
        replay: predicted means of run i under a candidate host model.
        per_token: ``auto`` (fit ``per_token_s`` where the two-parameter fit misses by
            ``PER_TOKEN_MIN_LOSS`` and it lowers the error by ``PER_TOKEN_MIN_GAIN``),
            ``on`` or ``off``.

    Raises:
        ConfigError: no runs, a run without any compared mean, or a bad ``per_token``.
    """
    if per_token not in ("auto", "on", "off"):
        raise ConfigError("--per-token", per_token, "must be auto, on or off")
    if not measured:
        raise ConfigError("--from-runs", None, "give at least one run")
    for i, run in enumerate(measured):
        if not any(run.get(k) for k in FITTED_METRICS):
            raise ConfigError("run", i, f"measures none of {', '.join(FITTED_METRICS)}")
    before = {i: relative_errors(replay(i, base), m) for i, m in enumerate(measured)}
    two = fit_host(base, fitted_names(base, per_token=False), measured, replay)
    fit, three_loss = _maybe_per_token(base, two, measured, replay, per_token)
    loo, loo_params = _leave_each_out(base, tuple(fit.params), measured, replay)
    return HostCalibration(
        fit=fit,
        before=before,
        leave_one_out=loo,
        loo_params=loo_params,
        undetermined=tuple(_undetermined(fit, measured, replay)),
        per_token_loss=three_loss,
        two_param_loss=two.loss,
    )


def _maybe_per_token(
    base: HostOverhead,
    two: HostFit,
    measured: Sequence[Mapping[str, float]],
    replay: Replay,
    per_token: str,
) -> tuple[HostFit, float | None]:
    """The fit to keep, and the three-parameter loss when ``per_token_s`` was tried."""
    if not (per_token == "on" or (per_token == "auto" and two.loss > PER_TOKEN_MIN_LOSS)):
        return two, None
    three = fit_host(base, fitted_names(base, per_token=True), measured, replay, start=two.params)
    is_better = three.loss <= (1 - PER_TOKEN_MIN_GAIN) * two.loss
    if per_token == "on" or (
        is_better and "per_token_s" not in _undetermined(three, measured, replay)
    ):
        return three, three.loss
    return two, three.loss


def _leave_each_out(
    base: HostOverhead,
    names: tuple[str, ...],
    measured: Sequence[Mapping[str, float]],
    replay: Replay,
) -> tuple[dict[int, Mapping[str, float]], dict[int, Mapping[str, float]]]:
    """Per run: its errors under a fit of the other runs, and that fit's parameters."""
    loo: dict[int, Mapping[str, float]] = {}
    loo_params: dict[int, Mapping[str, float]] = {}
    if len(measured) > 1:
        for i in range(len(measured)):
            others = [r for r in range(len(measured)) if r != i]
            held = fit_host(base, names, measured, replay, runs=others)
            loo_params[i] = held.params
            loo[i] = relative_errors(replay(i, held.host), measured[i])
    return loo, loo_params


def host_entry(host: HostOverhead, source: str) -> dict[str, Any]:
    """``host`` as a calibration document's ``host_profiles`` entry, with its ``source``."""
    return {**asdict(host), "source": source}
