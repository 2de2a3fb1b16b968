"""Early stop of a capacity probe: end the run as soon as its p99 targets are certainly lost.

A p99 target allows about 1% of requests over it. With numpy's ``linear`` percentile over
``n`` values, ``p99 >= v[i]`` where ``i = floor(0.99 (n - 1))`` of the sorted values, so once
``n - i`` finished requests are over the target the p99 is over it whatever the others do.
The threshold ``n - floor(0.99 (n - 1))`` never decreases with ``n``, so counting against the
probe's full request count is safe when fewer requests end up measured (rejections, requests
left unfinished: those fail the run anyway). Only finished requests count (the engine writes a
request's times when it finishes), so a stopped probe fails exactly when the full run would:
the capacity found is unchanged; only the failed probe's figures are partial.

TTFT mean and attainment targets have no such certain-failure test and are left to the full
run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from servesim.engine.records import SimulationRecords
from servesim.planner.scenario import SLOCriterion

# The percentile the criterion's targets are written against.
PERCENTILE = 99.0


def violations_to_fail(num_requests: int, percentile: float = PERCENTILE) -> int:
    """Values over a target that make the ``percentile`` of ``num_requests`` values exceed it."""
    if num_requests < 1:
        return 1
    index = math.floor(percentile / 100.0 * (num_requests - 1))
    return num_requests - index


@dataclass(slots=True)
class ViolationWatch:
    """A ``stop_when`` callback for ``run_cluster``: True once a p99 target is lost.

    Attributes:
        criterion: the SLO of the probe.
        num_requests: requests the probe sends.
        check_every: finished requests between two checks (a check scans the records).
        stopped: the metric found lost (``ttft_p99`` / ``tpot_p99``), or "" while running.
        num_over: finished requests over that target when the run was stopped.
    """

    criterion: SLOCriterion
    num_requests: int
    check_every: int = 0
    stopped: str = ""
    num_over: int = 0
    _calls: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.check_every <= 0:
            # A quarter of the allowance: a stop comes at most that many requests late.
            self.check_every = max(1, violations_to_fail(self.num_requests) // 4)

    @property
    def is_active(self) -> bool:
        """Whether the criterion has a target this watch can decide early."""
        return self.criterion.ttft_p99_s is not None or self.criterion.tpot_p99_s is not None

    def __call__(self, now: float, records: SimulationRecords) -> bool:
        """Check every ``check_every`` finished requests; True stops the run."""
        self._calls += 1
        if self._calls % self.check_every:
            return False
        lost = self.lost(records)
        if lost:
            self.stopped, self.num_over = lost
            return True
        return False

    def lost(self, records: SimulationRecords) -> tuple[str, int] | None:
        """(metric, requests over it) of the first target certainly lost, or None."""
        req = records.requests
        n = req.size
        done_s = req.column("completion_s")[:n]
        finished = np.isfinite(done_s)
        first_s = req.column("first_token_s")[:n][finished]
        need = violations_to_fail(self.num_requests)
        crit = self.criterion
        if crit.ttft_p99_s is not None:
            ttft = first_s - req.column("arrival_s")[:n][finished]
            over = int(np.count_nonzero(ttft > crit.ttft_p99_s))
            if over >= need:
                return "ttft_p99", over
        if crit.tpot_p99_s is not None:
            out = req.column("num_output_tokens")[:n][finished]
            multi = out > 1
            tpot = (done_s[finished][multi] - first_s[multi]) / (out[multi] - 1)
            over = int(np.count_nonzero(tpot > crit.tpot_p99_s))
            if over >= need:
                return "tpot_p99", over
        return None
