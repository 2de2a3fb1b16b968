"""Admission control at the cluster entry: accept or reject each arriving request before it is
routed (``AdmissionPolicy``), from a read-only view of the routable entry replicas.

Built-ins (``deployment: {admission: {kind: ..., options: {...}}}``):

- ``accept_all`` (default): every request is routed (no admission control).
- ``token_bucket``: rate limiting as API gateways do it (Envoy, NGINX ``limit_req``): the bucket
  holds at most ``burst`` tokens, refills at ``rate_per_s``; a request takes one token or is
  rejected.
- ``slo_ttft``: SLO-aware load shedding: reject when even the best entry replica's predicted
  TTFT (its queued prompt tokens plus this prompt at its prefill rate from the perf model, plus
  one decode step per queued request if it is busy: the ``slo_aware`` router's estimate)
  exceeds ``ttft_s`` times ``slack``: a request bound to miss its SLO is refused at once
  rather than queued behind others it would delay too.

A user policy is a class in a plain file (``kind: path/to/file.py:Class``), built as
``cls(**options)``; it may define ``bind(context)`` to receive the entry pools' plans, the
perf model and its own random stream (a ``RouterContext``). ``admit`` must return a bool
(checked: ``admission-result``).

A rejected request gets a row like any other, with no replica work: completion NaN, counted
under ``num_rejected_by_admission`` and in ``ClusterStats.num_admission_rejected``; its row
reason is ``REJECT_REASON`` (see there), so every metric counts it as unserved (the lab's
penalty rule scores it at the scenario's horizon). With a policy other than ``accept_all``
the cluster sends the requests itself at their arrival times (``OpenLoopSender``), with
skip-ahead off, as it does for benchmark clients; per-request results are the same (a test
checks it with a bucket that never empties).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from servesim.cluster.config import AdmissionConfig
from servesim.cluster.routers import RouterContext, SLOAwareRouter
from servesim.core.errors import ConfigError
from servesim.core.registry import Registry
from servesim.engine.contracts import ContractError
from servesim.engine.records import RejectReason
from servesim.engine.simulation import ReplicaView
from servesim.workload.request import Request

#: The row reason of a request refused at the entry: its own, so a refused request is never
#: mistaken for one a run cut short left unfinished.
REJECT_REASON = RejectReason.REJECTED_BY_ADMISSION


class AdmissionPolicy(Protocol):
    """Accepts or rejects a request arriving at the cluster entry."""

    def admit(self, request: Request, views: Sequence[ReplicaView], now_s: float) -> bool:
        """True to route ``request``; ``views``: the entry replicas that take requests now."""
        ...


ADMISSION_POLICIES: Registry[type[Any]] = Registry("admission policy")


@ADMISSION_POLICIES.register("accept_all")
class AcceptAll:
    """Every request is routed."""

    def admit(self, request: Request, views: Sequence[ReplicaView], now_s: float) -> bool:
        """Always."""
        return True


@ADMISSION_POLICIES.register("token_bucket")
class TokenBucket:
    """A request takes one token from a bucket of ``burst`` refilled at ``rate_per_s``.

    Args:
        rate_per_s: sustained admitted requests per second.
        burst: bucket size (requests admitted back to back after a quiet spell); it starts
            full.
    """

    def __init__(self, rate_per_s: float, burst: float = 1.0) -> None:
        if not rate_per_s > 0:
            raise ConfigError("admission.options.rate_per_s", rate_per_s, "must be > 0")
        if not burst >= 1:
            raise ConfigError("admission.options.burst", burst, "must be >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._last_s = 0.0

    def admit(self, request: Request, views: Sequence[ReplicaView], now_s: float) -> bool:
        """Refill for the time since the last arrival, then take a token if there is one."""
        self._tokens = min(self.burst, self._tokens + (now_s - self._last_s) * self.rate_per_s)
        self._last_s = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@ADMISSION_POLICIES.register("slo_ttft")
class SLOTTFTAdmission:
    """Reject when the best replica's predicted TTFT exceeds ``slack * ttft_s``.

    Args:
        ttft_s: the TTFT target.
        slack: multiple of the target a prediction may reach (the estimate is rough: it
            ignores batching with other prefills and prefix hits).
        probe_tokens: prompt length the prefill rate is measured at.
    """

    def __init__(self, ttft_s: float, slack: float = 1.0, probe_tokens: int = 2048) -> None:
        if not ttft_s > 0 or not slack > 0:
            raise ConfigError("admission.options", (ttft_s, slack), "ttft_s and slack must be > 0")
        self.limit_s = ttft_s * slack
        self._predictor = SLOAwareRouter(probe_tokens)

    def bind(self, context: RouterContext) -> None:
        """Measure each entry replica's prefill rate and decode step with the perf model."""
        self._predictor.bind(context)

    def admit(self, request: Request, views: Sequence[ReplicaView], now_s: float) -> bool:
        """Admit if some replica would start it within the limit."""
        if not views:
            return True  # nothing is routable: the router's own check reports it
        return min(self._predictor.predicted_ttft_s(request, views)) <= self.limit_s


def make_admission(config: AdmissionConfig, context: RouterContext) -> AdmissionPolicy:
    """Build the policy ``config.kind`` names (or loads) with its options, bound to ``context``."""
    policy: AdmissionPolicy = ADMISSION_POLICIES.build(
        config.kind,
        config.options,
        field="admission",
        method="admit",
        signature="request, views, now_s",
        context=context,
    )
    return policy


def entry_admission(config: AdmissionConfig, context: RouterContext) -> AdmissionPolicy | None:
    """The cluster entry's gate: None for ``accept_all`` (the default routes everything, so
    the run takes the engine's own arrival path, unchanged), else ``make_admission``."""
    if config.kind == "accept_all":
        return None
    return make_admission(config, context)


def check_admit(name: str, answer: object, now_s: float) -> bool:
    """``answer`` if it is a bool, else an ``admission-result`` ``ContractError``."""
    if answer is True or answer is False:
        return answer
    raise ContractError(
        name, "admission-result", f"admit returned {answer!r}, not True or False", now_s
    )


class OpenLoopSender:
    """Releases requests at their arrival times (the cluster's sender when admission control
    is on): the ``poll`` / ``next_wakeup`` / ``has_unsent`` part of a benchmark client."""

    def __init__(self, requests: Iterable[Request]) -> None:
        self._pending = deque(requests)
        self.warmup_ids: frozenset[int] = frozenset()
        self.main_start_s: float | None = 0.0
        last = 0.0
        for request in self._pending:
            if not request.arrival_s >= last:
                raise ConfigError(
                    f"requests[{request.request_id}].arrival_s",
                    request.arrival_s,
                    f"arrivals must be sorted; previous was {last}",
                )
            last = request.arrival_s

    @property
    def has_unsent(self) -> bool:
        """True while some request has still to arrive."""
        return bool(self._pending)

    def poll(self, now_s: float) -> list[Request]:
        """The requests arriving by ``now_s``, in order."""
        out = []
        pending = self._pending
        while pending and pending[0].arrival_s <= now_s:
            out.append(pending.popleft())
        return out

    def next_wakeup(self) -> float | None:
        """The next arrival time (None: none left)."""
        return self._pending[0].arrival_s if self._pending else None

    def on_done(self, request_id: int, now_s: float) -> None:
        """Open loop: a completion releases nothing."""
