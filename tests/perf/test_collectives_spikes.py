"""A single-size spike of a comm table is not a regime (``MAX_LINK_OVER_BUS``)."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.perf.fitting import collectives as fitting
from servesim.perf.opmodels.collectives import CollectiveFit, collective_s
from servesim.specs.catalog.gpus import get_gpu

H100 = get_gpu("h100-sxm")


def _eager_fit_without_1kb() -> CollectiveFit:
    """SGLang eager custom all-reduce, H100, 4 GPUs, <= 32 KB, as a fold that holds out 1 KB
    sees it: a 29.2-30.2 us host floor with one spike (2 KB: 70.1 us)."""
    sizes = np.array([256, 512, 2048, 4096, 8192, 16384, 32768], dtype=float)
    t = np.array([30.24, 29.16, 70.10, 29.62, 29.39, 29.34, 29.31]) * 1e-6
    return fitting.fit_group("all_reduce", "custom_eager", 4, sizes, t, H100)


def test_a_spike_through_three_sizes_is_not_fitted_as_a_regime() -> None:
    fit = _eager_fit_without_1kb()
    assert all(seg.link_over_bus <= fitting.MAX_LINK_OVER_BUS for seg in fit.segments)
    # the held-out 1 KB is the floor's (measured 29.63 us), not a line up to the spike (46 us
    # before the bound: 23.0 us + bus bytes x 6867 / 450 GB/s through 256 B, 512 B and 2 KB)
    assert collective_s(fit, H100, 1024.0) == pytest.approx(29.6e-6, rel=0.03)


def test_the_bound_leaves_a_steep_measured_regime_alone() -> None:
    # NCCL's LL regime at ~1/60 of the link (H100 NCCL all-reduce at 4 GPUs, fitted 59.6):
    # 9 us + 1.5 x bus bytes / 7.5 GB/s, a regime over eight sizes, is kept as fitted
    sizes = 2.0 ** np.arange(9, 17)
    bus_bw = H100.intra_node_link.bandwidth_bytes_per_s / 60.0
    t = 9e-6 + 1.5 * sizes / bus_bw
    fit = fitting.fit_group("all_reduce", "nccl", 4, sizes, t, H100)
    (seg,) = fit.segments
    assert seg.link_over_bus == pytest.approx(60.0, rel=1e-3)
    assert seg.alpha_s == pytest.approx(9e-6, rel=1e-3)
