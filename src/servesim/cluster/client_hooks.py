"""The benchmark-client side of ``cluster.runner.Cluster``: polling the client for sends,
and handing each finished request back to it at its completion time."""

from __future__ import annotations

from collections.abc import Callable

from servesim.cluster.admission import OpenLoopSender
from servesim.core.events import EventLoop, EventPriority
from servesim.engine.records import SimulationRecords
from servesim.engine.sequence import Seq
from servesim.workload.clients import BenchmarkClient
from servesim.workload.request import Request


class ClientHooks:
    """Mixin of ``Cluster``: the methods that drive a benchmark client (its attributes are
    set by ``Cluster.__init__``)."""

    client: BenchmarkClient | OpenLoopSender | None
    client_seqs: dict[Seq, None]
    wakeups: set[float]
    loop: EventLoop
    records: SimulationRecords
    first_measured_gap: int
    is_exhausted: bool

    def _send(self, request: Request) -> None:
        """A client request reaches the entry router (``Cluster._send``)."""
        raise NotImplementedError

    def _completion_hook(self, on_done: Callable[[Seq], None]) -> Callable[[Seq], None]:
        def done(seq: Seq) -> None:
            on_done(seq)
            self._client_done(seq)

        return done

    def _wake_at(self, t: float) -> None:
        if t not in self.wakeups:
            self.wakeups.add(t)
            self.loop.schedule(t, self._client_poll, t, priority=EventPriority.ARRIVAL)

    def _client_poll(self, t: float) -> None:
        """Send what the client releases now; wake again when it next has something."""
        assert self.client is not None
        self.wakeups.discard(t)
        for request in self.client.poll(self.loop.now):
            self._send(request)
        self._schedule_client()

    def _schedule_client(self) -> None:
        assert self.client is not None
        wake = self.client.next_wakeup()
        if wake is not None:
            self._wake_at(max(wake, self.loop.now))
        self.is_exhausted = not self.client.has_unsent

    def _client_done(self, seq: Seq) -> None:
        """``seq`` left the engine (finished or rejected): if the client sent it, it reaches
        the client at its completion time (which output processing may put after ``now``)."""
        if seq not in self.client_seqs:
            return
        del self.client_seqs[seq]
        now = self.loop.now
        t = float(self.records.requests.column("completion_s")[seq.row])
        t = t if t >= now else now  # NaN (rejected) or already past: now
        self.loop.schedule(
            t, self._client_notify, seq.request.request_id, priority=EventPriority.ARRIVAL
        )

    def _client_notify(self, request_id: int) -> None:
        assert self.client is not None
        client = self.client
        was_warming = client.main_start_s is None
        client.on_done(request_id, self.loop.now)
        if was_warming and client.main_start_s is not None:
            self.first_measured_gap = len(self.records.token_gaps.values_s)
        self._schedule_client()
