"""Calibration: the packaged file loads, and the fit's held-out error meets its targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.perf.calibrate import (
    HELDOUT_MODELS,
    _gemm_arrays,
    _gemm_predict,
    _mape,
    _split,
    comm_bucket_mape,
    comm_groups,
    fit_comm_lines,
    fit_gemm,
)
from servesim.perf.calibrate_data import GEMM_OPS, read_apex_comm, read_vidur_compute
from servesim.perf.calibrate_defaults import REFERENCE_GPUS
from servesim.perf.calibration import load_calibration


def test_packaged_calibration_loads() -> None:
    cal = load_calibration()
    assert cal.for_gpu("h100-sxm").calibrated
    assert cal.for_gpu("a100-sxm-80gb").calibrated
    assert not cal.for_gpu("l40s").calibrated
    assert not cal.for_gpu("mi300x").calibrated
    fit = cal.collective("h100-sxm", "nvswitch", "all_reduce", 8)
    assert fit is not None and fit.time_s(1e6) < fit.time_s(1e8)


@pytest.mark.parametrize("gpu", ["h100", "a100"])
def test_heldout_gemm_mape_under_10_percent(shared_data: Path, gpu: str) -> None:
    peak, bw = REFERENCE_GPUS[gpu]
    samples = [s for s in read_vidur_compute(shared_data, gpu) if s.op in GEMM_OPS and s.time_s > 0]
    train, test = _split(samples)
    assert test and {s.model for s in test} <= set(HELDOUT_MODELS)
    assert not {s.model for s in train} & set(HELDOUT_MODELS)
    curve = fit_gemm(train, peak, bw)
    mape = _mape(_gemm_predict(curve, test, peak, bw), _gemm_arrays(test)[3])
    assert mape < 10.0


def test_all_reduce_mape_under_15_percent_per_size(shared_data: Path) -> None:
    groups = comm_groups(read_apex_comm(shared_data))
    checked = 0
    for (_source, _gpu, _topo, coll, _n), group in groups.items():
        if coll != "all_reduce":
            continue
        errors = comm_bucket_mape(fit_comm_lines(group), group)
        assert max(errors.values()) < 15.0, errors
        checked += 1
    assert checked >= 6
