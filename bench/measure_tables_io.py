"""Write measured rows as kernel tables in the aiconfigurator layout.

``<out>/<gpu>/<family>/<framework>/<version>/<table>.parquet`` plus a ``collection_meta.yaml``
beside them, with exactly the reference column names and Arrow types (read back by
``servesim.perf.fitting.tables``). Units as the reference: ``latency`` in milliseconds,
``message_size`` in elements. pyarrow is imported only when a table is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_STAMP_COLUMNS = (
    ("framework", "string"),
    ("version", "string"),
    ("device", "string"),
    ("op_name", "string"),
    ("kernel_source", "string"),
)
_ATTENTION_COLUMNS = (
    ("batch_size", "int64"),
    ("isl", "int64"),
    ("num_heads", "int64"),
    ("num_key_value_heads", "int64"),
    ("head_dim", "int64"),
    ("beam_width", "int64"),
    ("attn_dtype", "string"),
    ("kv_cache_dtype", "string"),
    ("step", "int64"),
    ("window_size", "int64"),
)

# Column order and Arrow type of each table, as in shared/data/profiling/aiconfigurator.
SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "gemm_perf": (
        *_STAMP_COLUMNS,
        ("gemm_dtype", "string"),
        ("m", "int64"),
        ("n", "int64"),
        ("k", "int64"),
        ("latency", "double"),
    ),
    "context_attention_perf": (*_STAMP_COLUMNS, *_ATTENTION_COLUMNS, ("latency", "double")),
    "generation_attention_perf": (*_STAMP_COLUMNS, *_ATTENTION_COLUMNS, ("latency", "double")),
    "nccl_perf": (
        *_STAMP_COLUMNS,
        ("nccl_dtype", "string"),
        ("num_gpus", "int64"),
        ("message_size", "int64"),
        ("latency", "double"),
    ),
}


@dataclass(frozen=True, slots=True)
class TableTarget:
    """Where one table goes: the layout's folder fields and the file stem."""

    gpu: str  # folder name, e.g. ``h100_sxm``
    family: str  # gemm, attention, comm
    framework: str  # ``torch``
    version: str  # torch.__version__
    table: str  # file stem, a key of SCHEMAS

    def folder(self, out_dir: Path) -> Path:
        """``<out>/<gpu>/<family>/<framework>/<version>``."""
        return out_dir / self.gpu / self.family / self.framework / self.version

    def path(self, out_dir: Path) -> Path:
        """The parquet file of this table under ``out_dir``."""
        return self.folder(out_dir) / f"{self.table}.parquet"


def _check_row(table: str, row: dict, index: int) -> None:
    """Refuse a row whose columns differ from the schema (a typo would silently vanish)."""
    expected = [name for name, _ in SCHEMAS[table]]
    if sorted(row) != sorted(expected):
        missing = sorted(set(expected) - set(row))
        extra = sorted(set(row) - set(expected))
        raise ValueError(f"{table} row {index}: missing {missing}, unexpected {extra}")


def write_table(rows: list[dict], target: TableTarget, out_dir: Path) -> Path:
    """Write plain-Python ``rows`` (one dict per measurement) as ``target`` under ``out_dir``.

    Returns:
        The parquet file written (its folders are created).

    Raises:
        ValueError: an unknown table, or a row whose columns are not exactly the schema's.
    """
    import pyarrow as pa  # offline tool: keep pyarrow off the import path of --dry-run
    import pyarrow.parquet as pq

    if target.table not in SCHEMAS:
        raise ValueError(f"unknown table {target.table!r}; known: {sorted(SCHEMAS)}")
    for index, row in enumerate(rows):
        _check_row(target.table, row, index)
    types = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64()}
    schema = pa.schema([(name, types[kind]) for name, kind in SCHEMAS[target.table]])
    columns = {name: [row[name] for row in rows] for name in schema.names}
    path = target.path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def write_collection_meta(
    folder: Path, framework: str, version: str, statuses: dict[str, str], notes: dict[str, str]
) -> Path:
    """Write ``collection_meta.yaml`` with the reference's fields.

    Args:
        folder: the ``<framework>/<version>`` folder holding the tables.
        framework: ``runtime.framework``.
        version: ``runtime.version``.
        statuses: table stem -> ``complete`` or ``partial`` (an interrupted run).
        notes: extra facts (device, NCCL version, command) written as YAML comments, so the
            fields stay exactly those of aiconfigurator's files.
    """
    lines = [f"# {key}: {value}" for key, value in sorted(notes.items())]
    lines += [
        "",
        "schema_version: 1",
        "provenance: collected",
        "runtime:",
        f"  framework: {framework}",
        f'  version: "{version}"',  # quoted: "2.10" must stay a string
        "tables:",
    ]
    for table in sorted(statuses):
        lines += [f"  {table}:", f"    status: {statuses[table]}"]
    path = folder / "collection_meta.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True, slots=True)
class Stamp:
    """The columns every row of a run shares."""

    framework: str  # ``torch``
    version: str  # torch.__version__
    device: str  # torch.cuda.get_device_name()

    def row(self, op_name: str, kernel_source: str, **columns: object) -> dict:
        """One table row: the stamp, the op, its kernel and the table's own columns."""
        return {
            "framework": self.framework,
            "version": self.version,
            "device": self.device,
            "op_name": op_name,
            "kernel_source": kernel_source,
            **columns,
        }
