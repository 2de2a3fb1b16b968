"""Row-by-row parsing of trace files into compact columns, with exact error locations.

Rows stream from the file one at a time and land in ``array`` buffers (machine numbers, not
Python objects), so a million-row trace costs a few tens of MB. Every malformed row raises a
``TraceError`` naming the file, the line and the column, or, with ``skip_bad_rows``, is skipped
and counted by problem. Nothing is dropped silently. Reading the file itself (line numbers,
CSV/JSON decoding, format detection) is ``servesim.workload.trace_files``; its names are
re-exported here.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from servesim.workload.native import Extras
from servesim.workload.trace_files import (
    Row,
    RowError,
    csv_header,
    csv_rows,
    file_type_of,
    first_json_keys,
    jsonl_rows,
    resolve_trace_format,
)
from servesim.workload.trace_formats import ARRIVAL_UNITS_TO_S, TraceFormat

__all__ = [
    "MAX_TOKENS",
    "Row",
    "RowError",
    "RowParser",
    "TraceColumns",
    "csv_header",
    "csv_rows",
    "file_type_of",
    "first_json_keys",
    "jsonl_rows",
    "resolve_trace_format",
]

# Token counts above this are surely corrupt (no model has a 2^31-token context).
MAX_TOKENS = 2**31 - 1
_MAX_HASH = 2**62


@dataclass
class TraceColumns:
    """Parsed rows, one entry per accepted row."""

    arrival_s: array = field(default_factory=lambda: array("d"))
    prompt: array = field(default_factory=lambda: array("q"))
    output: array = field(default_factory=lambda: array("q"))
    hash_values: array = field(default_factory=lambda: array("q"))
    hash_offsets: array = field(default_factory=lambda: array("q", [0]))
    session: array = field(default_factory=lambda: array("q"))
    block_size: int = 0
    request_fields: Extras | None = None
    num_rows_read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    first_skipped: list[str] = field(default_factory=list)


def _tokens(value: Any, column: str) -> int:
    """A token count: a non-negative integer (``"12"``, ``12`` or ``12.0``)."""
    if isinstance(value, bool) or value is None:
        raise RowError(
            column, f"expected an integer token count, got {value!r}", "not an integer token count"
        )
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise RowError(column, f"not a number: {text[:40]!r}") from None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise RowError(column, f"not an integer token count: {value!r}")
        value = int(value)
    if not isinstance(value, int):
        raise RowError(column, f"not an integer token count: {type(value).__name__}")
    if value < 0:
        raise RowError(column, f"negative token count {value}", "negative token count")
    if value > MAX_TOKENS:
        raise RowError(column, f"token count {value} is over {MAX_TOKENS}", "token count too large")
    return value


def _number(value: Any, column: str) -> float:
    if isinstance(value, bool) or value is None:
        raise RowError(column, f"expected a number, got {value!r}", "not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise RowError(column, f"not a number: {value.strip()[:40]!r}") from None
    if not isinstance(value, int | float):
        raise RowError(column, f"expected a number, got {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:
        raise RowError(column, "number too large") from None
    if not math.isfinite(out):
        raise RowError(column, f"not a finite number: {value!r}")
    return out


class _DatetimeClock:
    """Absolute datetimes -> seconds since the first row (keeps 100 ns digits exactly)."""

    def __init__(self) -> None:
        self.first: datetime | None = None
        self.first_frac = 0.0

    def seconds(self, value: Any, column: str) -> float:
        if not isinstance(value, str):
            raise RowError(column, f"expected a datetime string, got {value!r}")
        text = value.strip()
        whole, _, frac = text.partition(".")
        tz = ""
        for sign in ("+", "-", "Z"):
            if sign in frac:
                frac, _, rest = frac.partition(sign)
                tz = sign + rest if sign != "Z" else "+00:00"
        if frac and not frac.isdigit():
            raise RowError(column, f"not a datetime: {text[:40]!r}")
        try:
            moment = datetime.fromisoformat(whole + tz)
            frac_s = float("0." + frac) if frac else 0.0
        except (ValueError, OverflowError):
            raise RowError(column, f"not a datetime: {text[:40]!r}") from None
        if self.first is None:
            self.first, self.first_frac = moment, frac_s
        try:
            delta = moment - self.first
        except TypeError:
            raise RowError(column, "mixes datetimes with and without a time zone") from None
        return delta.days * 86400.0 + delta.seconds + (frac_s - self.first_frac)


def _hashes(value: Any, column: str) -> list[int]:
    if not isinstance(value, list):
        raise RowError(column, f"expected a list of block ids, got {type(value).__name__}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < _MAX_HASH:
            raise RowError(column, f"block id {item!r} is not a non-negative integer")
    return value


class RowParser:
    """Turns one row (a mapping of column -> raw value) into validated numbers."""

    def __init__(self, fmt: TraceFormat) -> None:
        self.fmt = fmt
        self.clock = _DatetimeClock()
        self.unit = ARRIVAL_UNITS_TO_S.get(fmt.arrival_unit, 1.0)
        self.last_arrival = -math.inf
        self.block_size = fmt.block_size  # servesim format: from the rows
        self.request_fields: tuple[int, int, int, str, str | None] | None = None
        self.known_columns = fmt.known_columns()
        self._checked_keys: object = None  # the last key set found all known
        # request id digest -> line of its first row (8-byte digests keep this compact)
        self.id_lines: dict[bytes, int] = {}

    def check_row(self, row: dict[str, Any], line: int) -> None:
        """Refuse a row with an unknown column or a request id seen before."""
        known = self.known_columns
        if known is not None and row.keys() != self._checked_keys:
            for key in row:
                if key not in known:
                    close = difflib.get_close_matches(key, sorted(known), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise RowError(
                        key,
                        f"unknown field {key!r}{hint} (fields: {', '.join(sorted(known))})",
                        "unknown field",
                    )
            self._checked_keys = row.keys()
        column = self.fmt.id_column
        if column and row.get(column) is not None:
            value = row[column]
            digest = hashlib.blake2b(repr(value).encode(), digest_size=8).digest()
            first = self.id_lines.setdefault(digest, line)
            if first != line:
                raise RowError(
                    column, f"duplicate id {value!r} (first at line {first})", "duplicate id"
                )

    def _get(self, row: dict[str, Any], column: str) -> Any:
        if column not in row or row[column] is None:
            raise RowError(column, "missing column")
        return row[column]

    def parse(self, row: dict[str, Any]) -> tuple[float, int, int, list[int] | None, int]:
        """(arrival_s, prompt, output, hashes, session) of a row; raises ``RowError``."""
        fmt = self.fmt
        arrival = math.nan
        if fmt.arrival_column:
            raw = self._get(row, fmt.arrival_column)
            if fmt.arrival_unit == "datetime":
                arrival = self.clock.seconds(raw, fmt.arrival_column)
            else:
                arrival = _number(raw, fmt.arrival_column) * self.unit
                if arrival < 0:
                    raise RowError(
                        fmt.arrival_column,
                        f"negative arrival time {raw!r}",
                        "negative arrival time",
                    )
        prompt = _tokens(self._get(row, fmt.prompt_column), fmt.prompt_column)
        output = _tokens(self._get(row, fmt.output_column), fmt.output_column)
        if prompt == 0:
            raise RowError(fmt.prompt_column, "0 prompt tokens")
        if output == 0:
            what = (
                "failed request (0 response tokens)"
                if fmt.zero_output_is_failure
                else ("0 output tokens")
            )
            raise RowError(fmt.output_column, what)
        hashes = self._parse_hashes(row, prompt)
        session = -1
        optional = fmt.has_request_fields and row.get(fmt.session_column or "") is None
        if fmt.session_column and not optional:
            session = _tokens(self._get(row, fmt.session_column), fmt.session_column)
        if fmt.has_request_fields:
            self.request_fields = _request_fields(row)
        if fmt.arrival_column:
            if arrival < self.last_arrival:
                raise RowError(
                    fmt.arrival_column,
                    f"timestamps not sorted: {arrival:.6f} s after {self.last_arrival:.6f} s",
                )
            self.last_arrival = arrival
        return arrival, prompt, output, hashes, session

    def _parse_hashes(self, row: dict[str, Any], prompt: int) -> list[int] | None:
        fmt = self.fmt
        if not fmt.hash_column:
            return None
        block_size = fmt.block_size
        if fmt.has_request_fields:  # optional, with the block size in its own field
            if row.get(fmt.hash_column) is None:
                return []
            block_size = _tokens(self._get(row, "prefix_block_size"), "prefix_block_size")
            if block_size < 1 or (self.block_size and block_size != self.block_size):
                raise RowError(
                    "prefix_block_size",
                    f"{block_size} differs from the file's {self.block_size}",
                    "inconsistent prefix_block_size",
                )
        hashes = _hashes(self._get(row, fmt.hash_column), fmt.hash_column)
        expected = -(-prompt // block_size)
        if len(hashes) != expected:
            raise RowError(
                fmt.hash_column,
                f"{len(hashes)} block ids for {prompt} tokens (expected {expected} "
                f"blocks of {block_size})",
                "wrong number of block ids",
            )
        self.block_size = block_size
        return hashes


def _integer(value: Any, column: str) -> int:
    """Any integer (priorities may be negative)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowError(column, f"expected an integer, got {value!r}", "not an integer")
    return value


def _request_fields(row: dict[str, Any]) -> tuple[int, int, int, str, str | None]:
    """(group, priority, user, slo_class, adapter) of a servesim-format row."""
    group = row.get("group_id")
    slo_class = row.get("slo_class", "default")
    adapter = row.get("adapter_id")
    if not isinstance(slo_class, str) or not slo_class:
        raise RowError(
            "slo_class", f"expected a non-empty string, got {slo_class!r}", "bad slo_class"
        )
    if adapter is not None and not isinstance(adapter, str):
        raise RowError(
            "adapter_id", f"expected a string or null, got {adapter!r}", "bad adapter_id"
        )
    return (
        -1 if group is None else _tokens(group, "group_id"),
        _integer(row.get("priority", 0), "priority"),
        _tokens(row.get("user_id", 0), "user_id"),
        slo_class,
        adapter,
    )
