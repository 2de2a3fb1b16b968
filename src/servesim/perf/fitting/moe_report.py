"""Held-out report of the MoE fits: ``python -m servesim.perf.fitting.moe_report``.

Shape-wise 4-fold cross-validation per stack and leave-one-GPU-out from H100 vLLM (``servesim
calibration`` prints the same figures from the shipped calibration).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from servesim.perf.fitting import moe
from servesim.perf.fitting.heldout import crossval_predictions, error_stats, group_report, take
from servesim.perf.fitting.moe import STACKS, fit, load_rows, predict


def report(root: Path, num_folds: int = 4) -> tuple[list[dict], list[dict]]:
    """Held-out rows per (GPU, stack, dtype, regime), and leave-one-GPU-out from H100 vLLM."""
    from servesim.specs.catalog.gpus import get_gpu

    table: list[dict] = []
    h100 = None
    for folder, gpu_name, framework, version in STACKS:
        rows = load_rows(root, folder, framework, version)
        if rows is None:
            continue
        gpu = get_gpu(gpu_name)
        pred = crossval_predictions(moe, rows, gpu, num_folds)
        unseen = np.isnan(pred)  # a format whose only shapes were held out: in-sample, labelled
        if unseen.any():
            pred[unseen] = predict(fit(rows, gpu), gpu, take(rows, unseen))
            label = np.where(unseen, rows["regime"] + " IN-SAMPLE", rows["regime"])
            rows = {**rows, "regime": label}
        stack = f"{framework}-{version}"
        table += group_report(pred, rows, gpu=folder, stack=stack)
        if (folder, framework) == ("h100_sxm", "vllm"):
            h100 = fit(rows, gpu)
    transfer: list[dict] = []
    for folder, gpu_name, framework, version in STACKS:
        rows = load_rows(root, folder, framework, version) if h100 else None
        if rows is None or folder == "h100_sxm" or framework != "vllm":
            continue
        pred = predict(h100, get_gpu(gpu_name), rows)  # type: ignore[arg-type]
        known = ~np.isnan(pred)
        for label in sorted(set(rows["dtype"][known])):
            mask = known & (rows["dtype"] == label)
            stats = error_stats(pred[mask], rows["latency_s"][mask]).to_dict()
            transfer.append(
                {"gpu": folder, "stack": f"{framework}-{version}", "dtype": label, **stats}
            )
    return table, transfer


if __name__ == "__main__":
    from servesim.core.paths import shared_data_dir
    from servesim.perf.fitting.tables import aic_root

    data = shared_data_dir()
    if data is None:
        sys.exit("shared data not found (set SERVESIM_SHARED_DATA)")
    held_out, loo = report(aic_root(data))
    for row in held_out:
        print(json.dumps(row))
    print("# leave-one-GPU-out: fit on H100 vllm-0.24.0, predict with the target's data sheet")
    for row in loo:
        print(json.dumps(row))
