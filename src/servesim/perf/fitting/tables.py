"""Read kernel tables in the aiconfigurator layout: ``<gpu>/<family>/<framework>/<version>/``.

Used offline by the fits (``python -m servesim.perf.calibrate``, ``servesim calibrate
--tables DIR``). The layout and units are those of ``shared/data/profiling/aiconfigurator``
(its PROVENANCE.md): ``latency`` in milliseconds, message sizes in elements.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servesim.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class TableRef:
    """One measured table on disk."""

    gpu: str  # folder name, e.g. ``h100_sxm``
    family: str  # gemm, attention, moe, comm, mla, quantize
    framework: str  # vllm, sglang, nccl
    version: str  # e.g. ``0.24.0``
    table: str  # file stem, e.g. ``gemm_perf``
    path: Path


def find_tables(root: Path) -> list[TableRef]:
    """Every ``*.parquet`` of the layout under ``root`` (sorted, so fits are deterministic)."""
    if not root.is_dir():
        raise ConfigError("tables", str(root), "is not a folder")
    refs = []
    for path in sorted(root.glob("*/*/*/*/*.parquet")):
        version = path.parent
        framework = version.parent
        family = framework.parent
        gpu = family.parent
        refs.append(TableRef(gpu.name, family.name, framework.name, version.name, path.stem, path))
    return refs


def select(
    refs: list[TableRef],
    *,
    gpu: str | None = None,
    family: str | None = None,
    framework: str | None = None,
    version: str | None = None,
    table: str | None = None,
) -> list[TableRef]:
    """The refs matching every given field."""
    out = []
    for r in refs:
        if gpu is not None and r.gpu != gpu:
            continue
        if family is not None and r.family != family:
            continue
        if framework is not None and r.framework != framework:
            continue
        if version is not None and r.version != version:
            continue
        if table is not None and r.table != table:
            continue
        out.append(r)
    return out


def read_columns(ref: TableRef) -> dict[str, np.ndarray]:
    """All columns of one table as numpy arrays (strings as object arrays)."""
    import pyarrow.parquet as pq  # offline only: the runtime never needs pyarrow

    table = pq.read_table(ref.path)
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        column = table.column(name).to_pylist()
        array = np.asarray(column)
        if array.dtype.kind in "OUS":
            array = np.asarray(column, dtype=object)
        out[name] = array
    return out


def aic_root(data_dir: Path) -> Path:
    """The aiconfigurator tables inside the shared data folder."""
    return data_dir / "profiling" / "aiconfigurator"
