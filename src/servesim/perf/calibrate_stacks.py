"""The kernel-stack and power sections of ``calibration.json``, from measured tables.

``kernel_sections(data_dir)`` fits every stack's operator families to the aiconfigurator
tables of the shared data (``fitting.build``) and the power model to the H200 power columns,
with the held-out and leave-one-GPU-out reports the ``servesim calibration`` command prints.
``user_sections(tables, ...)`` does the same for a user's own tables (``servesim calibrate
--tables DIR``): their fits replace the chosen stack's entry for that GPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servesim.core.errors import ConfigError
from servesim.perf.opmodels.transfer import describe_rules
from servesim.perf.stacks import TABLE_GPUS, get_stack
from servesim.specs.catalog import get_gpu

Progress = Callable[[str], None]
POWER_TABLES = ("h200_sxm", "vllm", "0.22.0")  # the only tables with board power


def kernel_sections(
    data_dir: Path, *, heldout: bool = True, progress: Progress | None = None
) -> dict[str, Any]:
    """``kernel_stacks``, ``power`` and ``kernel_report`` for the shared data's tables."""
    from servesim.perf.fitting.build import fit_kernel_stacks
    from servesim.perf.fitting.tables import aic_root

    root = aic_root(data_dir)
    fitted = fit_kernel_stacks(root, heldout=heldout, progress=progress)
    power, power_report = _power(root, heldout)
    return {
        "kernel_stacks": fitted.kernel_stacks,
        "power": power,
        "kernel_report": {
            "heldout": fitted.heldout,
            "leave_one_gpu_out": fitted.transfer,
            "leave_one_gpu_out_summary": fitted.transfer_summary,
            "transfer_rules": describe_rules(),
            "power_heldout": power_report,
        },
    }


def _power(root: Path, heldout: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from servesim.perf.fitting import power
    from servesim.perf.fitting.heldout import crossval_predictions, group_report

    folder, framework, version = POWER_TABLES
    catalog, key = TABLE_GPUS[folder]
    rows = power.load_rows(root, folder, framework, version)
    if rows is None:
        return {}, []
    gpu = get_gpu(catalog)
    params = power.fit(rows, gpu)
    report: list[dict[str, Any]] = []
    if heldout:
        scored = {**rows, "latency_s": rows["power_w"]}  # score watts, not seconds
        pred = crossval_predictions(power, rows, gpu)
        report = group_report(pred, scored, gpu=key, family="power")
    return {key: params}, report


def user_sections(
    tables: Path,
    *,
    gpu_name: str | None,
    stack: str,
    base: dict[str, Any],
    heldout: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``base`` (a calibration document) with ``stack``'s entries replaced by fits of ``tables``.

    Each GPU folder of ``tables`` is one GPU: ``gpu_name`` names it when there is one folder,
    otherwise the folder name must be a catalog GPU name or alias. Every framework/version
    folder found is fitted (the newest per family when several).
    """
    from servesim.perf.fitting.build import fit_kernel_stacks
    from servesim.perf.fitting.tables import find_tables

    get_stack(stack)
    refs = find_tables(tables)
    folders = sorted({r.gpu for r in refs})
    if not folders:
        raise ConfigError("tables", str(tables), "holds no <gpu>/<family>/<fw>/<version>/*.parquet")
    if gpu_name is not None and len(folders) > 1:
        raise ConfigError("gpu", gpu_name, f"names one GPU but {tables} holds {len(folders)}")
    gpu_map: dict[str, tuple[str, str]] = {}
    for folder in folders:
        spec = get_gpu(gpu_name or folder)
        gpu_map[folder] = (spec.name, spec.name)
    layout: dict[str, tuple[str, str]] = {}
    for folder in folders:
        mine = [r for r in refs if r.gpu == folder and r.framework != "nccl"]
        if not mine:
            raise ConfigError("tables", f"{tables}/{folder}", "holds no kernel tables")
        newest = max(mine, key=lambda r: r.version)
        layout[folder] = (newest.framework, newest.version)
    fitted = fit_kernel_stacks(
        tables, gpu_map=gpu_map, stacks={stack: layout}, heldout=heldout, progress=progress
    )
    document = json.loads(json.dumps(base))
    entries = document.setdefault("kernel_stacks", {}).setdefault(stack, {})
    for key, entry in fitted.kernel_stacks.get(stack, {}).items():
        same = [k for k, e in entries.items() if e.get("catalog_gpu") == entry["catalog_gpu"]]
        for other in same:
            del entries[other]
        entries[key] = entry
    document["kernel_report"] = {"heldout": fitted.heldout, "leave_one_gpu_out": []}
    document["source"] = f"{base.get('source', '')}; {stack} refitted from {tables}"
    return document


def write_calibration(document: dict[str, Any], path: Path) -> None:
    """Write a calibration document deterministically (sorted keys, compact numbers)."""
    path.write_text(json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n")
