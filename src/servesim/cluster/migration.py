"""Live migration of decoding requests between replicas of a pool (Llumnix, OSDI'24).

Placeholder round: the balancer is scheduled but migrates nothing yet (see the report).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servesim.cluster.runner import Cluster


class Migrator:
    """Periodically moves decoding requests from the fullest to the emptiest replica."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def start(self) -> None:
        """Schedule the first balancing round."""
        return
