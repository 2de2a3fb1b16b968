"""Counterfactual router regret: re-simulate a run with one routing decision changed.

The myopic regret (``diagnostics.router_regret``) compares queued prompt tokens at the arrival
instant; it ignores decode load, prefix hits, heterogeneous replicas and what the decision does
to later requests. This one measures: for a few decisions of the run (evenly spaced over the
decisions that had a choice), the run is simulated again once per alternative replica, with
that decision forced and every other one left to the policy (its later decisions may differ:
they see the state the forced one made). The simulation is deterministic, so everything before
the forced decision is the original run.

Per decision: the request's TTFT as routed minus its best TTFT over the alternatives
(``ttft_regret_s``; > 0: another replica would have served it sooner), and, for that best
alternative, the change in the run's mean TTFT over all requests (``externality_s``; > 0:
the alternative that helps this request delays the others, the price a cache- or load-aware
router pays knowingly). TTFTs are the lab's penalised ones (an unserved request's is its wait
until the scenario's stop), so an alternative that starves requests cannot look good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from servesim.api import Result
from servesim.lab.objectives import penalised_latencies

#: ``rerun(forced)``: the run again with ``forced`` (decision number -> position) applied
Rerun = Callable[[dict[int, int]], Result]

# a TTFT gain below this is noise of the float sums, not a better choice
_TOLERANCE_S = 1e-6


def penalised_ttft(result: Result) -> dict[int, float]:
    """Each request's TTFT under the penalty rule, by request id."""
    cols = result.requests_columns()
    done = cols["reject_reason"] == "none"
    cfg = result.config
    horizon = float(cfg.max_time_s or np.nanmax(cols["completion_s"], initial=0.0))
    ttft, _ = penalised_latencies(cols, done, horizon, cfg)
    return dict(zip(cols["request_id"].tolist(), ttft.tolist(), strict=True))


def sample_decisions(log: Sequence[tuple[int, int, int]], num: int) -> list[int]:
    """Numbers of ``num`` decisions evenly spread over those with two or more candidates."""
    choices = [k for k, (_, _, n) in enumerate(log) if n > 1]
    if not choices or num <= 0:
        return []
    if len(choices) <= num:
        return choices
    spots = np.linspace(0, len(choices) - 1, num + 2)[1:-1]
    return sorted({choices[round(float(x))] for x in spots})


def counterfactual_regret(
    result: Result, log: Sequence[tuple[int, int, int]], rerun: Rerun, num_decisions: int
) -> dict[str, object] | None:
    """Re-simulate ``num_decisions`` decisions of ``log`` (request id, position, candidates)
    with each alternative; None when the run made no decision with a choice."""
    picks = sample_decisions(log, num_decisions)
    if not picks:
        return None
    base = penalised_ttft(result)
    base_mean = float(np.mean(list(base.values())))
    rows = []
    for k in picks:
        request_id, chosen, n = log[k]
        best: tuple[float, float] | None = None  # (request's TTFT, run's mean TTFT)
        for alt in range(n):
            if alt == chosen:
                continue
            ttft = penalised_ttft(rerun({k: alt}))
            option = (ttft[request_id], float(np.mean(list(ttft.values()))))
            if best is None or option[0] < best[0]:
                best = option
        assert best is not None  # n > 1
        rows.append((base[request_id] - best[0], best[1] - base_mean))
    regret = np.asarray([r for r, _ in rows])
    externality = np.asarray([e for _, e in rows])
    return {
        "num_decisions": len(rows),
        "num_resimulations": sum(log[k][2] - 1 for k in picks),
        "regretful_fraction": float((regret > _TOLERANCE_S).mean()),
        "mean_ttft_regret_s": float(np.maximum(regret, 0.0).mean()),
        "max_ttft_regret_s": float(regret.max()),
        "mean_externality_s": float(externality.mean()),
    }
