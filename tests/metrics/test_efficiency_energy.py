"""Energy of a replica: the iteration rows' op-by-op energy plus idle draw outside busy time."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.metrics.efficiency import replica_energy_j
from tests.metrics.factories import replica


def test_idle_only_run_draws_idle_power() -> None:
    # the factory's replica idles at 100 W per GPU
    assert replica_energy_j(replica(), np.array([]), 0.0, 10.0) == pytest.approx(1000.0)
    four = replica(num_gpus=4)
    assert replica_energy_j(four, np.array([]), 0.0, 10.0) == pytest.approx(4000.0)


def test_busy_time_is_the_rows_energy_and_the_rest_idles() -> None:
    # rows of 550 J and 300 J over 2 busy seconds; 3 more seconds idle at 2 x 100 W
    rep = replica(num_gpus=2)
    got = replica_energy_j(rep, np.array([550.0, 300.0]), 2.0, 5.0)
    assert got == pytest.approx(850.0 + 3.0 * 2 * 100.0)


def test_busy_longer_than_makespan_adds_no_negative_idle() -> None:
    assert replica_energy_j(replica(), np.array([10.0]), 2.0, 1.0) == pytest.approx(10.0)
