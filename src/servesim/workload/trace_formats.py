"""The public trace formats servesim reads, and auto-detection from a file's first line.

Units (from each data folder's PROVENANCE.md), as ``format``: file, arrival column (unit),
prompt / output columns:

- ``azure``: CSV, ``TIMESTAMP`` absolute datetime (100 ns digits), ``ContextTokens`` /
  ``GeneratedTokens``.
- ``vidur``: CSV, ``arrived_at`` seconds from the first row, ``num_prefill_tokens`` /
  ``num_decode_tokens``.
- ``vidur-lengths``: CSV, no arrivals (Sarathi ShareGPT, Vidur arXiv), columns as ``vidur``.
- ``mooncake``: JSONL, ``timestamp`` ms, ``input_length`` / ``output_length``, ``hash_ids``
  (512-token prefix blocks).
- ``apex``: JSONL, ``StartTimeOffset`` ns, ``ContextTokens`` / ``GeneratedTokens``.
- ``burstgpt``: CSV, ``Timestamp`` s, ``Request tokens`` / ``Response tokens`` (0 response
  tokens = a failed request).
- ``served``: JSONL (APEX vLLM served traces), ``arrival_time_s`` s, ``prompt_tokens`` /
  ``output_tokens``.
- ``servesim``: JSONL written by ``write_requests`` (``Request`` field names).
- ``csv`` / ``jsonl``: generic, with a user column mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from servesim.core.errors import ConfigError, TraceError, UnknownNameError

ARRIVAL_UNITS_TO_S: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@dataclass(frozen=True, slots=True)
class TraceFormat:
    """How to read one trace format.

    Attributes:
        name: format key (``--trace-format``).
        file_type: ``"csv"`` (header row) or ``"jsonl"`` (one object per line).
        prompt_column: input-token column.
        output_column: output-token column.
        arrival_column: arrival-time column, or None for length-only traces.
        arrival_unit: ``"s"``, ``"ms"``, ``"us"``, ``"ns"`` or ``"datetime"`` (ISO strings).
        hash_column: column holding a list of prefix-block ids, if any.
        block_size: tokens per prefix block of ``hash_column``.
        zero_output_is_failure: rows with 0 output tokens are failed requests (BurstGPT).
        session_column: conversation id column, if any.
        has_request_fields: the servesim format: optional ``Request`` fields per row (session,
            group, prefix blocks with their ``prefix_block_size``, priority, class, user,
            adapter).
        id_column: a request-id column; a repeated id is a malformed row.
        optional_columns: the other columns a row may have; any column outside these and
            the ones above is an error (a misspelt optional field is never ignored). None:
            other columns are allowed (CSV exports whose extra columns vary).
    """

    name: str
    file_type: str
    prompt_column: str
    output_column: str
    arrival_column: str | None
    arrival_unit: str = "s"
    hash_column: str | None = None
    block_size: int = 0
    zero_output_is_failure: bool = False
    session_column: str | None = None
    has_request_fields: bool = False
    id_column: str | None = None
    optional_columns: tuple[str, ...] | None = None

    def known_columns(self) -> frozenset[str] | None:
        """Every column a row may have (None: any)."""
        if self.optional_columns is None:
            return None
        named = (self.arrival_column, self.prompt_column, self.output_column, self.hash_column,
                 self.session_column, self.id_column)  # fmt: skip
        return frozenset([c for c in named if c] + list(self.optional_columns))

    def required_columns(self) -> tuple[str, ...]:
        """Columns that must be present in every row."""
        cols = [self.prompt_column, self.output_column]
        if self.arrival_column:
            cols.insert(0, self.arrival_column)
        if self.hash_column and not self.has_request_fields:
            cols.append(self.hash_column)
        return tuple(cols)


# The servesim format's optional ``Request`` fields (``servesim.workload.native``).
SERVESIM_OPTIONAL_COLUMNS = (
    "prefix_block_size",
    "group_id",
    "priority",
    "slo_class",
    "adapter_id",
    "user_id",
)

FORMATS: dict[str, TraceFormat] = {
    f.name: f
    for f in (
        TraceFormat("azure", "csv", "ContextTokens", "GeneratedTokens", "TIMESTAMP", "datetime"),
        TraceFormat("vidur", "csv", "num_prefill_tokens", "num_decode_tokens", "arrived_at"),
        TraceFormat("vidur-lengths", "csv", "num_prefill_tokens", "num_decode_tokens", None),
        TraceFormat(
            "mooncake",
            "jsonl",
            "input_length",
            "output_length",
            "timestamp",
            "ms",
            hash_column="hash_ids",
            block_size=512,
            optional_columns=(),
        ),
        TraceFormat(
            "apex",
            "jsonl",
            "ContextTokens",
            "GeneratedTokens",
            "StartTimeOffset",
            "ns",
            id_column="RequestID",
            optional_columns=("TotalTokens",),
        ),
        TraceFormat(
            "burstgpt",
            "csv",
            "Request tokens",
            "Response tokens",
            "Timestamp",
            "s",
            zero_output_is_failure=True,
        ),
        TraceFormat(
            "served",
            "jsonl",
            "prompt_tokens",
            "output_tokens",
            "arrival_time_s",
            "s",
            id_column="request_id",
        ),
        TraceFormat(
            "servesim",
            "jsonl",
            "num_prompt_tokens",
            "num_output_tokens",
            "arrival_s",
            "s",
            hash_column="prefix_block_hashes",
            session_column="session_id",
            has_request_fields=True,
            id_column="request_id",
            optional_columns=SERVESIM_OPTIONAL_COLUMNS,
        ),
    )
}
GENERIC = ("csv", "jsonl")

# Detection order: a format whose required columns are a superset of another's comes first.
_DETECT_ORDER = (
    "servesim",
    "mooncake",
    "apex",
    "served",
    "azure",
    "burstgpt",
    "vidur",
    "vidur-lengths",
)


def format_names() -> list[str]:
    """All format names accepted by ``load_trace(format=...)``."""
    return sorted([*FORMATS, *GENERIC])


def detect_format(path: str, file_type: str, columns: list[str]) -> TraceFormat:
    """The known format whose required columns all appear in ``columns`` (header or keys)."""
    present = set(columns)
    for name in _DETECT_ORDER:
        fmt = FORMATS[name]
        if fmt.file_type == file_type and set(fmt.required_columns()) <= present:
            # BurstGPT_3 inserts columns; detection by name keeps working.
            if name == "burstgpt" and "Session ID" in present:
                return replace(fmt, session_column="Session ID")
            return fmt
    shown = ", ".join(columns[:8])
    raise TraceError(
        path,
        1,
        None,
        f"unrecognised {file_type} trace columns [{shown}]; pass a format "
        f"({', '.join(format_names())}) or a column mapping",
    )


def generic_format(
    file_type: str,
    columns: dict[str, str],
    arrival_unit: str = "s",
    block_size: int = 0,
) -> TraceFormat:
    """A user-described format: ``columns`` maps ``prompt``, ``output`` and optionally
    ``arrival``, ``hashes`` and ``session`` to the file's column names."""
    if file_type not in GENERIC:
        raise UnknownNameError("generic trace file type", file_type, GENERIC)
    known = {"prompt", "output", "arrival", "hashes", "session"}
    unknown = set(columns) - known
    if unknown:
        raise ConfigError("columns", sorted(unknown), f"keys must be among {sorted(known)}")
    for key in ("prompt", "output"):
        if key not in columns:
            raise ConfigError("columns", dict(columns), f"needs a {key!r} column")
    if arrival_unit not in (*ARRIVAL_UNITS_TO_S, "datetime"):
        raise ConfigError("arrival_unit", arrival_unit, "must be s, ms, us, ns or datetime")
    if "hashes" in columns and block_size < 1:
        raise ConfigError("block_size", block_size, "must be >= 1 with a hashes column")
    return TraceFormat(
        name=file_type,
        file_type=file_type,
        prompt_column=columns["prompt"],
        output_column=columns["output"],
        arrival_column=columns.get("arrival"),
        arrival_unit=arrival_unit,
        hash_column=columns.get("hashes"),
        block_size=block_size if "hashes" in columns else 0,
        session_column=columns.get("session"),
    )


def resolve_format(name: str) -> TraceFormat:
    """The built-in format called ``name`` (generic ones need ``generic_format``)."""
    if name in FORMATS:
        return FORMATS[name]
    if name in GENERIC:
        raise ConfigError("format", name, "a generic format needs a column mapping (columns=...)")
    raise UnknownNameError("trace format", name, format_names())
