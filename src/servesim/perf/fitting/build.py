"""Fit every operator family of every kernel stack to its measured tables, with held-out reports.

For each stack of ``servesim.perf.stacks`` and each GPU it has tables for, each family module
(``fitting.gemm``, ``fitting.attention``, ``fitting.moe``, ``fitting.collectives``) reads its
rows, fits its parameters on all of them (the shipped figures), and is scored twice on data it
never saw:
- **held-out shapes**: 4 shape-wise folds (a whole weight shape, head configuration, MoE model
  shape or message size out at a time), per (GPU, stack, op, dtype, regime);
- **leave one GPU out**: the GPU's own tables removed, the others' fits carried to it by the
  transfer rules (``opmodels.transfer``: donor by trait, clock / SM / link rules), beside the
  data-sheet-only rule they replaced (nearest GPU, fit unchanged).
The same code fits a user's own tables (``servesim calibrate --tables DIR``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from servesim.perf.fitting.heldout import (
    Rows,
    crossval_predictions,
    error_stats,
    group_report,
)
from servesim.perf.fitting.tables import TableRef, find_tables, select
from servesim.perf.opmodels.transfer import Borrowed, borrow
from servesim.perf.stacks import STACKS, TABLE_GPUS, nearest_calibrated
from servesim.specs.catalog import get_gpu
from servesim.specs.gpu import GPUSpec

# family -> the fitting module and the (table family folder, framework) it reads; ``None`` as
# framework means the stack's own framework. Collectives have two parts: the engine's custom
# all-reduce and NCCL (its own framework folder).
FAMILY_PARTS: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "gemm": (("", "gemm", None),),
    "attention": (("", "attention", None),),
    "moe": (("", "moe", None),),
    "collectives": (("custom", "comm", None), ("nccl", "comm", "nccl")),
    "mla": (("", "mla", None),),
}
FAMILY_MODULES = {
    "gemm": "servesim.perf.fitting.gemm",
    "attention": "servesim.perf.fitting.attention",
    "moe": "servesim.perf.fitting.moe",
    "collectives": "servesim.perf.fitting.collectives",
    "mla": "servesim.perf.fitting.mla",
}

Progress = Callable[[str], None]


@dataclass(slots=True)
class StackFit:
    """Everything ``fit_kernel_stacks`` produced."""

    kernel_stacks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    heldout: list[dict[str, Any]] = field(default_factory=list)
    transfer: list[dict[str, Any]] = field(default_factory=list)
    transfer_summary: list[dict[str, Any]] = field(default_factory=list)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def table_version(
    refs: list[TableRef], gpu_folder: str, family: str, framework: str, preferred: str
) -> str | None:
    """The stack's own version where measured, else the newest of that framework (stand-in)."""
    versions = {r.version for r in select(refs, gpu=gpu_folder, family=family, framework=framework)}
    if preferred in versions:
        return preferred
    return max(versions, key=_version_key) if versions else None


@dataclass(frozen=True, slots=True)
class _Part:
    name: str  # "" for single-part families
    framework: str
    version: str
    rows: Rows


def _parts(
    refs: list[TableRef], root: Path, family: str, gpu_folder: str, fw: str, ver: str
) -> list[_Part]:
    module = _module(family)
    parts = []
    for name, folder, framework in FAMILY_PARTS[family]:
        framework = framework or fw
        version = table_version(refs, gpu_folder, folder, framework, ver)
        if version is None:
            continue
        rows = module.load_rows(root, gpu_folder, framework, version)
        if rows is not None and len(rows["latency_s"]):
            parts.append(_Part(name, framework, version, rows))
    return parts


def _module(family: str) -> ModuleType:
    return importlib.import_module(FAMILY_MODULES[family])


def _fit_parts(family: str, parts: list[_Part], gpu: GPUSpec) -> dict[str, Any]:
    module = _module(family)
    if len(parts) == 1 and parts[0].name == "":
        return module.fit(parts[0].rows, gpu)
    return {p.name: module.fit(p.rows, gpu) for p in parts}


def _predict_part(family: str, params: dict[str, Any], part: _Part, gpu: GPUSpec) -> np.ndarray:
    own = params if part.name == "" else params[part.name]
    return _module(family).predict(own, gpu, part.rows)


@dataclass
class _FitRun:
    """What one ``fit_kernel_stacks`` call shares across its (stack, GPU) entries."""

    refs: list[TableRef]
    root: Path
    families: tuple[str, ...]
    heldout: bool
    progress: Progress | None
    out: StackFit = field(default_factory=StackFit)
    # (stack, calibration key, family) -> its fitted parts, for the leave-one-GPU-out pass
    all_parts: dict[tuple[str, str, str], list[_Part]] = field(default_factory=dict)

    def entry(
        self, stack: str, gpu_folder: str, catalog: str, key: str, fw: str, ver: str
    ) -> dict[str, Any]:
        """``stack``'s calibration entry for one table GPU folder: every family with tables."""
        gpu = get_gpu(catalog)
        entry: dict[str, Any] = {
            "catalog_gpu": gpu.name,
            "architecture": gpu.architecture,
            "hbm_bytes_per_s": gpu.hbm_bandwidth_bytes_per_s,
            "sources": {},
        }
        for family in self.families:
            if self.progress is not None:
                self.progress(f"{stack} {key} {family}")
            parts = _parts(self.refs, self.root, family, gpu_folder, fw, ver)
            if not parts:
                continue
            self.all_parts[(stack, key, family)] = parts
            entry[family] = _fit_parts(family, parts, gpu)
            entry["sources"][family] = "; ".join(
                f"aiconfigurator {gpu_folder} {p.framework} {p.version}" for p in parts
            )
            if self.heldout:
                self.out.heldout.extend(_heldout_rows(family, parts, gpu, stack, key))
        return entry


def fit_kernel_stacks(
    root: Path,
    families: tuple[str, ...] = tuple(FAMILY_MODULES),
    *,
    gpu_map: dict[str, tuple[str, str]] | None = None,
    stacks: dict[str, dict[str, tuple[str, str]]] | None = None,
    heldout: bool = True,
    progress: Progress | None = None,
) -> StackFit:
    """Fit ``families`` for every stack and GPU with tables under ``root`` (aiconfigurator layout).

    Args:
        root: the tables' root folder.
        families: which operator families to fit.
        gpu_map: table GPU folder -> (catalog GPU, calibration key); default ``TABLE_GPUS``.
        stacks: stack -> {GPU folder: (framework, version)}; default the stacks' own tables.
        heldout: also score held-out shapes and leave-one-GPU-out (several refits each).
        progress: called with a line per (stack, GPU, family) as it starts.
    """
    run = _FitRun(find_tables(root), root, families, heldout, progress)
    gpu_map = gpu_map if gpu_map is not None else TABLE_GPUS
    if stacks is None:
        stacks = {name: dict(info.tables) for name, info in STACKS.items() if info.tables}
    out = run.out
    for stack, tables in stacks.items():
        entries: dict[str, dict[str, Any]] = {}
        for gpu_folder, (fw, ver) in tables.items():
            if gpu_folder not in gpu_map:
                continue
            catalog, key = gpu_map[gpu_folder]
            entry = run.entry(stack, gpu_folder, catalog, key, fw, ver)
            # more than the four fixed keys: at least one family had tables
            if len(entry) > 4:
                entries[key] = entry
        out.kernel_stacks[stack] = entries
    if heldout:
        out.transfer, out.transfer_summary = _transfer_rows(
            out.kernel_stacks, run.all_parts, gpu_map
        )
    return out


def transfer_report(
    root: Path,
    kernel_stacks: dict[str, dict[str, dict[str, Any]]],
    families: tuple[str, ...] = tuple(FAMILY_MODULES),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Leave-one-GPU-out of already fitted ``kernel_stacks`` (e.g. the shipped ones) against the
    tables under ``root``: what ``fit_kernel_stacks`` stores, without refitting (a donor's fit
    is its all-rows fit either way). Returns (rows per op/dtype/regime, summary per family)."""
    refs = find_tables(root)
    all_parts: dict[tuple[str, str, str], list[_Part]] = {}
    for stack, info in STACKS.items():
        for gpu_folder, (fw, ver) in info.tables.items():
            key = TABLE_GPUS[gpu_folder][1]
            for family in families:
                if family in kernel_stacks.get(stack, {}).get(key, {}):
                    parts = _parts(refs, root, family, gpu_folder, fw, ver)
                    if parts:
                        all_parts[(stack, key, family)] = parts
    return _transfer_rows(kernel_stacks, all_parts, TABLE_GPUS)


def _scored(family: str, rows: Rows) -> np.ndarray:
    """Rows that measure the GPU: eager-timed fp8_block GEMM rows near their kernel's launch
    floor time the host, not the kernel (``fitting.gemm.eager_mask``), and are not scored."""
    if family == "gemm":
        from servesim.perf.fitting.gemm import eager_mask

        return ~eager_mask(rows)
    return np.ones(rows["latency_s"].shape, dtype=bool)


def _heldout_rows(
    family: str, parts: list[_Part], gpu: GPUSpec, stack: str, key: str
) -> list[dict[str, Any]]:
    """Held-out error per (op, dtype, regime), with the legacy model's error beside it.

    A format measured on too few shapes to hold one out (the fold fit cannot price it) is
    scored in sample and its regime says so.
    """
    from servesim.perf.calibration import load_calibration
    from servesim.perf.fitting.baseline import legacy_predict

    rows = []
    for part in parts:
        module = _module(family)
        pred = crossval_predictions(module, part.rows, gpu)
        missing = ~np.isfinite(pred)
        if missing.any():
            in_sample = module.predict(module.fit(part.rows, gpu), gpu, part.rows)
            pred = np.where(missing, in_sample, pred)
            regime = part.rows["regime"].astype(object).copy()
            regime[missing] = [f"{r} (in-sample)" for r in regime[missing]]
            part = _Part(part.name, part.framework, part.version, {**part.rows, "regime": regime})
        keep = _scored(family, part.rows) & np.isfinite(pred)
        scored = {k: v[keep] for k, v in part.rows.items()}
        after = group_report(pred[keep], scored, stack=stack, gpu=key, family=family)
        legacy = legacy_predict(family, load_calibration(), gpu, scored)
        known = ~np.isnan(legacy)
        before = {
            (r["op"], r["dtype"], r["regime"]): r
            for r in group_report(legacy[known], {k: v[known] for k, v in scored.items()})
        }
        for row in after:
            old = before.get((row["op"], row["dtype"], row["regime"]))
            row["before_mape"] = old["mape"] if old else None
            row["before_median_signed"] = old["median_signed"] if old else None
        rows.extend(after)
    return rows


def _transfer_rows(
    kernel_stacks: dict[str, dict[str, dict[str, Any]]],
    all_parts: dict[tuple[str, str, str], list[_Part]],
    gpu_map: dict[str, tuple[str, str]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each calibrated GPU predicted from the others by the transfer rules.

    Returns the per (op, dtype, regime) rows of the rules (``opmodels.transfer``) and a
    summary per (stack, target, family part) beside the data-sheet-only rule they replaced
    (nearest GPU by ``stacks.nearest_calibrated``, its fit applied unchanged: ``before``).
    """
    catalog_of = {key: catalog for catalog, key in gpu_map.values()}
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for (stack, target, family), parts in sorted(all_parts.items()):
        entries = kernel_stacks.get(stack, {})
        gpu = get_gpu(catalog_of[target])
        donors = {
            k: (get_gpu(catalog_of[k]), e[family])
            for k, e in entries.items()
            if k != target and family in e and k in catalog_of
        }
        found = borrow(family, gpu, donors) if donors else None
        if found is None:
            continue
        others = {
            k: (spec.architecture, spec.hbm_bandwidth_bytes_per_s)
            for k, (spec, _) in donors.items()
        }
        old = nearest_calibrated(gpu.architecture, gpu.hbm_bandwidth_bytes_per_s, others)
        after = _transfer_predictions(family, found.params, parts, gpu)
        for pred, scored in after:
            rows.extend(
                group_report(
                    pred, scored, stack=stack, gpu=target, source=found.donor, family=family
                )
            )
        before = _transfer_predictions(family, donors[old][1], parts, gpu) if old else []
        summary.extend(_summary_rows(stack, target, family, found, old, before, after))
    return rows, summary


def _transfer_predictions(
    family: str, params: dict[str, Any], parts: list[_Part], gpu: GPUSpec
) -> list[tuple[np.ndarray, Rows]]:
    """(prediction, rows) of the scored rows of each part ``params`` can price."""
    out = []
    for part in parts:
        if part.name and part.name not in params:
            continue
        pred = _predict_part(family, params, part, gpu)
        keep = _scored(family, part.rows) & np.isfinite(pred)
        out.append((pred[keep], {k: v[keep] for k, v in part.rows.items()}))
    return out


def _summary_rows(
    stack: str,
    target: str,
    family: str,
    found: Borrowed,
    old: str | None,
    before: list[tuple[np.ndarray, Rows]],
    after: list[tuple[np.ndarray, Rows]],
) -> list[dict[str, Any]]:
    """One row per family part (attention: prefill and decode apart), before and after."""

    def split(results: list[tuple[np.ndarray, Rows]]) -> dict[str, tuple]:
        if not results:
            return {}
        pred = np.concatenate([p for p, _ in results])
        ops = np.concatenate([r["op"] for _, r in results])
        actual = np.concatenate([r["latency_s"] for _, r in results])
        if family != "attention":
            return {family: (pred, actual)}
        return {op: (pred[ops == op], actual[ops == op]) for op in sorted(set(ops))}

    old_parts, new_parts = split(before), split(after)
    out = []
    for part, (pred, actual) in new_parts.items():
        donor = found.donors.get(part.split("_")[0], found.donor)
        row: dict[str, Any] = {"stack": stack, "gpu": target, "part": part, "source": donor}
        row.update(error_stats(pred, actual).to_dict())
        if part in old_parts and old is not None:
            stats = error_stats(*old_parts[part]).to_dict()
            row.update(before_source=old, before_mape=stats["mape"])
            row["before_median_signed"] = stats["median_signed"]
        out.append(row)
    return out
