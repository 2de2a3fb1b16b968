"""What the cluster's entry hands its policies: replica views built on access (a router that
reads two replicas does not pay for all), and the request row an arrival gets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from servesim.engine.records import SimulationRecords
from servesim.engine.replica import Replica
from servesim.engine.simulation import ReplicaView, append_request_row
from servesim.workload.request import Request


class Subset(Sequence[ReplicaView]):
    """The views of some replicas, in a given order (built on access)."""

    def __init__(self, views: Sequence[ReplicaView], indices: list[int]) -> None:
        self._views = views
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int) -> ReplicaView:  # type: ignore[override]
        return self._views[self._indices[i]]


class ReplicaViews(Sequence[ReplicaView]):
    """A view of each replica, built on access."""

    def __init__(self, replicas: list[Replica], view: Callable[[Replica], ReplicaView]) -> None:
        self._replicas = replicas
        self._view = view

    def __len__(self) -> int:
        return len(self._replicas)

    def __getitem__(self, i: int) -> ReplicaView:  # type: ignore[override]
        return self._view(self._replicas[i])


def append_row(records: SimulationRecords, request: Request, replica_id: int) -> int:
    """The request's row, as the engine driver writes it on arrival."""
    if request.slo_class not in records.slo_classes:
        records.slo_classes.append(request.slo_class)
    index = records.slo_classes.index(request.slo_class)
    return append_request_row(records, request, replica_id, index)
