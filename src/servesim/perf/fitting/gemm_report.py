"""Held-out report of the GEMM fits: ``python -m servesim.perf.fitting.gemm_report``.

Shape-wise 4-fold cross-validation per stack, leave-one-GPU-out from H100, the legacy curve as
baseline (``servesim calibration`` prints the same figures from the shipped calibration).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from servesim.perf.fitting.gemm import (
    STACKS,
    eager_mask,
    fit,
    load_rows,
    predict,
    with_datasheet,
)
from servesim.perf.fitting.heldout import Rows, crossval_predictions, group_report, take
from servesim.perf.opmodels.gemm import ELEMENT_BYTES, PEAK_DTYPE
from servesim.specs.gpu import GPUSpec


def legacy_predict(gpu: GPUSpec, rows: Rows, curve: object) -> np.ndarray:
    """The legacy roofline (``servesim.perf.kernels``) on the same rows (the baseline)."""
    from servesim.perf.kernels import gemm_time_s as legacy

    out = np.full(rows["latency_s"].shape, np.nan)
    for label in ("bf16", "fp8", "fp8_block"):
        sel = (rows["op"] == "gemm") & (rows["dtype"] == label)
        if not sel.any() or PEAK_DTYPE[label] not in gpu.peak_flops_per_s:
            continue
        w, a, o = ELEMENT_BYTES[label]
        m, n, k = rows["m"][sel], rows["n"][sel], rows["k"][sel]
        flops = 2.0 * m * n * k
        nbytes = k * n * w + m * k * a + m * n * o
        peak = gpu.peak_flops_per_s[PEAK_DTYPE[label]]
        out[sel] = legacy(curve, flops, nbytes, m, k, n, peak, gpu.hbm_bandwidth_bytes_per_s)
    return out


def _report_rows(pred: np.ndarray, rows: Rows, **labels: str) -> list[dict]:
    ok = np.isfinite(pred) & ~eager_mask(rows)
    return group_report(pred[ok], take(rows, ok), **labels)


#: Leave-one-GPU-out: the H100 fit of the same framework prices the other GPUs' tables.
LOGO_SOURCE = {"vllm": "h100_sxm vllm 0.24.0", "sglang": "h100_sxm sglang 0.5.14"}


def _logo_rows(loaded: list[tuple[str, str, GPUSpec, Rows]], fits: dict[str, dict]) -> list[dict]:
    """Leave-one-GPU-out rows: each non-H100 stack priced by its framework's H100 fit, with and
    without the fitted correction grid."""
    report: list[dict] = []
    for tag, fw, gpu, rows in loaded:
        source = LOGO_SOURCE.get(fw)
        if source is None or source not in fits or tag.startswith("h100_sxm"):
            continue
        params = fits[source]
        nogrid = {label: {**p, "correction": None} for label, p in params.items()}
        for kind, p in ((f"from {source}", params), (f"from {source}, no grid", nogrid)):
            report += _report_rows(predict(p, gpu, rows), rows, stack=tag, kind=kind)
    return report


def main(argv: list[str]) -> int:
    """Held-out report: ``python -m servesim.perf.fitting.gemm_report [--quick] [--out FILE]``.

    ``--quick`` skips the cross-validation (in-sample, leave-one-GPU-out and legacy only).
    """
    from servesim.core.paths import shared_data_dir
    from servesim.perf.calibration import load_calibration
    from servesim.perf.fitting.tables import aic_root
    from servesim.specs.catalog import get_gpu

    quick = "--quick" in argv
    out_path = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
    data = shared_data_dir()
    if data is None:
        print("no shared data folder", file=sys.stderr)
        return 1
    root = aic_root(data)
    calibration = load_calibration()
    report: list[dict] = []
    fits: dict[str, dict] = {}
    loaded = []
    for folder, catalog, fw, ver in STACKS:
        rows = load_rows(root, folder, fw, ver)
        if rows is None:
            continue
        gpu = with_datasheet(get_gpu(catalog))
        tag = f"{folder} {fw} {ver}"
        loaded.append((tag, fw, gpu, rows))
        t0 = time.time()
        params = fit(rows, gpu)
        fits[tag] = params
        report += _report_rows(predict(params, gpu, rows), rows, stack=tag, kind="in-sample")
        legacy = calibration.for_gpu(catalog).gemm
        report += _report_rows(legacy_predict(gpu, rows, legacy), rows, stack=tag, kind="legacy")
        if not quick:
            cv = crossval_predictions(sys.modules[__name__], rows, gpu)
            report += _report_rows(cv, rows, stack=tag, kind="held-out shapes (4-fold)")
        print(f"{tag}: {time.time() - t0:.0f} s", file=sys.stderr)
    report += _logo_rows(loaded, fits)
    for line in report:
        print(json.dumps(line))
    if out_path is not None:
        out_path.write_text(json.dumps({"report": report, "fits": fits}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
