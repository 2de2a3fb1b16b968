"""Energy of a replica from the utilisation power model: idle gaps, repeat rows, PP overlap.

Every expectation is computed by hand with a linear curve on a GPU rated 700 W TDP / 100 W
idle (the fit's reference ratings, so no scaling): P = 100 + 600 u_c + 300 u_m, capped at 700.
"""

from __future__ import annotations

import numpy as np
import pytest

from servesim.metrics.efficiency import replica_energy_j
from servesim.perf.opmodels.power import PowerFit, PowerParams
from tests.metrics.factories import replica

LINEAR = PowerFit("ref", 100.0, 700.0, {"any": PowerParams(100.0, 600.0, 1.0, 300.0, 1.0)})


def _energy(durations, flops, nbytes, busy_s, makespan_s, **overrides) -> float:
    return replica_energy_j(
        replica(**overrides),
        np.array(durations, dtype=float),
        np.array(flops, dtype=float),
        np.array(nbytes, dtype=float),
        busy_s,
        makespan_s,
        LINEAR,
    )


def test_idle_only_run_draws_idle_power() -> None:
    assert _energy([], [], [], 0.0, 10.0) == pytest.approx(100.0 * 10)
    assert _energy([], [], [], 0.0, 10.0, num_gpus=4) == pytest.approx(4 * 100.0 * 10)


def test_one_iteration_integrates_power_over_its_duration() -> None:
    # 1 s at u_c = 5e14 / 1e15 = 0.5, u_m = 1.5e12 / 3e12 = 0.5 -> 100 + 300 + 150 = 550 W;
    # then 3 s idle at 100 W
    assert _energy([1.0], [5e14], [1.5e12], 1.0, 4.0) == pytest.approx(550.0 + 300.0)


def test_repeat_rows_carry_totals_so_utilisation_is_unchanged() -> None:
    # a run of 4 decode steps: 2 s, 4x the FLOPs and bytes of one 0.5 s step -> same power
    one = _energy([0.5], [1e14], [1.2e12], 0.5, 0.5)
    run = _energy([2.0], [4e14], [4.8e12], 2.0, 2.0)
    assert run == pytest.approx(4 * one)
    assert one == pytest.approx(0.5 * (100 + 600 * 0.2 + 300 * 0.8))


def test_power_cap_holds_at_full_utilisation() -> None:
    # u_c = u_m = 1 -> 100 + 600 + 300 = 1000 W, capped at 700 W
    assert _energy([1.0], [1e15], [3e12], 1.0, 1.0) == pytest.approx(700.0)


def test_utilisation_is_per_gpu() -> None:
    # 2 GPUs share 1e15 FLOPs in 1 s: u_c = 0.5 each -> 400 W each
    assert _energy([1.0], [1e15], [0.0], 1.0, 1.0, num_gpus=2) == pytest.approx(800.0)


def test_pipeline_overlap_is_squeezed_into_busy_time() -> None:
    # two 1 s micro-batches overlapping entirely (busy union 1 s): rho = 2, each row runs
    # 0.5 s at u_c = 2 * 0.2 = 0.4 -> 340 W; total 2 * 0.5 * 340 = 340 J (not 2 x 220 J)
    e = _energy([1.0, 1.0], [2e14, 2e14], [0.0, 0.0], 1.0, 1.0)
    assert e == pytest.approx(340.0)
    # work-conserving: same energy as one 1 s iteration doing both rows' work
    assert e == pytest.approx(_energy([1.0], [4e14], [0.0], 1.0, 1.0))
