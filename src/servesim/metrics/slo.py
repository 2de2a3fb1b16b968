"""SLO attainment and goodput, overall and per SLO class.

Definitions (DistServe, OSDI'24, section 2; ``vllm bench serve --goodput``):

- A request *meets its SLO* when it completed, its TTFT is at most the TTFT target and its TPOT
  is at most the TPOT target (a missing target is not checked). As in vllm's goodput, a request
  with a single output token has TPOT 0 for this check (it has no inter-token time).
- *Attainment* is the fraction of requests that meet their SLO. The denominator is every
  request in the records: rejected requests and requests still unfinished when the run stopped
  count as misses, so overload can never look like good attainment.
- *Goodput* is the rate of requests that meet their SLO: ``num_met / duration_s`` (vllm's
  "Request goodput (req/s)"). DistServe's "maximum rate at which attainment stays above the
  target" is a search over rates; ``servesim capacity`` does that search on top of this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

# DistServe evaluates "90% of requests within the SLO" as the attainment goal.
DEFAULT_ATTAINMENT_TARGET = 0.9


@dataclass(frozen=True, slots=True)
class SLOTargets:
    """Latency targets for one class of requests (None: not checked).

    Attributes:
        ttft_s: time-to-first-token target, queueing included.
        tpot_s: time-per-output-token target (mean gap after the first token, per request).
    """

    ttft_s: float | None = None
    tpot_s: float | None = None


@dataclass(frozen=True, slots=True)
class SLOSpec:
    """Latency targets: a default plus optional per-class overrides.

    Attributes:
        ttft_s: default TTFT target.
        tpot_s: default TPOT target.
        attainment_target: fraction of requests that must meet the SLO (DistServe: 0.9).
        classes: ``(class name, targets)`` pairs; a class's None field falls back to the
            default target.
    """

    ttft_s: float | None = None
    tpot_s: float | None = None
    attainment_target: float = DEFAULT_ATTAINMENT_TARGET
    classes: tuple[tuple[str, SLOTargets], ...] = ()

    def targets_for(self, slo_class: str) -> SLOTargets:
        """The targets that apply to requests of ``slo_class``."""
        for name, targets in self.classes:
            if name == slo_class:
                return SLOTargets(
                    ttft_s=self.ttft_s if targets.ttft_s is None else targets.ttft_s,
                    tpot_s=self.tpot_s if targets.tpot_s is None else targets.tpot_s,
                )
        return SLOTargets(self.ttft_s, self.tpot_s)


@dataclass(frozen=True, slots=True)
class ClassAttainment:
    """SLO outcome for one class (or ``"all"``).

    Attributes:
        slo_class: class name, ``"all"`` for every request together.
        ttft_target_s, tpot_target_s: the targets checked (None: not checked; for ``"all"``
            each request is checked against its own class's targets, so these are None).
        num_requests: requests of the class in the records.
        num_met: requests that completed within both targets.
        attainment: num_met / num_requests (None when the class has no requests).
        goodput_per_s: num_met / duration.
        meets_attainment_target: attainment >= the spec's attainment target.
    """

    slo_class: str
    ttft_target_s: float | None
    tpot_target_s: float | None
    num_requests: int
    num_met: int
    attainment: float | None
    goodput_per_s: float
    meets_attainment_target: bool

    def to_dict(self) -> dict[str, object]:
        """JSON-able mapping."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class SLOResult:
    """Attainment overall and per class."""

    attainment_target: float
    overall: ClassAttainment
    per_class: tuple[ClassAttainment, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-able mapping."""
        return {
            "attainment_target": self.attainment_target,
            "overall": self.overall.to_dict(),
            "per_class": [c.to_dict() for c in self.per_class],
        }


def meets_targets(
    ttft_s: np.ndarray, tpot_s: np.ndarray, completed: np.ndarray, targets: SLOTargets
) -> np.ndarray:
    """Boolean mask of requests that completed within ``targets``.

    Args:
        ttft_s: per-request TTFT (NaN when never produced).
        tpot_s: per-request TPOT with 0 for single-token outputs (vllm's goodput rule).
        completed: per-request completion mask.
        targets: the targets to check.
    """
    ok = completed.copy()
    # NaN compares False, so a request without a first token never passes a TTFT check.
    if targets.ttft_s is not None:
        ok &= ttft_s <= targets.ttft_s
    if targets.tpot_s is not None:
        ok &= tpot_s <= targets.tpot_s
    return ok


def _attainment(
    name: str, targets: SLOTargets | None, met: np.ndarray, duration_s: float, goal: float
) -> ClassAttainment:
    return attainment_from_counts(name, targets, int(met.size), int(met.sum()), duration_s, goal)


def attainment_from_counts(
    name: str,
    targets: SLOTargets | None,
    num: int,
    num_met: int,
    duration_s: float,
    goal: float,
) -> ClassAttainment:
    """A class's outcome from its request and met counts (a long run streams the counts)."""
    attainment = num_met / num if num else None
    return ClassAttainment(
        slo_class=name,
        ttft_target_s=None if targets is None else targets.ttft_s,
        tpot_target_s=None if targets is None else targets.tpot_s,
        num_requests=num,
        num_met=num_met,
        attainment=attainment,
        goodput_per_s=num_met / duration_s if duration_s > 0 else 0.0,
        meets_attainment_target=attainment is not None and attainment >= goal,
    )


def evaluate_slo(
    spec: SLOSpec,
    *,
    ttft_s: np.ndarray,
    tpot_s: np.ndarray,
    completed: np.ndarray,
    class_index: np.ndarray,
    class_names: list[str] | Mapping[int, str],
    duration_s: float,
) -> SLOResult:
    """Attainment and goodput of every class present in the records, plus overall."""
    met = np.zeros(completed.shape, dtype=bool)
    per_class: list[ClassAttainment] = []
    for index in sorted(int(i) for i in np.unique(class_index)):
        name = class_names[index]
        targets = spec.targets_for(name)
        in_class = class_index == index
        met_class = meets_targets(ttft_s[in_class], tpot_s[in_class], completed[in_class], targets)
        met[in_class] = met_class
        per_class.append(_attainment(name, targets, met_class, duration_s, spec.attainment_target))
    overall = _attainment("all", None, met, duration_s, spec.attainment_target)
    return SLOResult(spec.attainment_target, overall, tuple(per_class))
