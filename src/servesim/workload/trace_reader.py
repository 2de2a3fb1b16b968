"""Row-by-row parsing of trace files into compact columns, with exact error locations.

Rows stream from the file one at a time and land in ``array`` buffers (machine numbers, not
Python objects), so a million-row trace costs a few tens of MB. Every malformed row raises a
``TraceError`` naming the file, the line and the column, or, with ``skip_bad_rows``, is skipped
and counted by problem. Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
import math
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from servesim.core.errors import TraceError
from servesim.workload.native import Extras
from servesim.workload.trace_formats import (
    ARRIVAL_UNITS_TO_S,
    TraceFormat,
    detect_format,
    generic_format,
    resolve_format,
)

# Token counts above this are surely corrupt (no model has a 2^31-token context).
MAX_TOKENS = 2**31 - 1
_MAX_HASH = 2**62


class RowError(Exception):
    """A problem with one field of one row (converted to ``TraceError`` with the location)."""

    def __init__(self, column: str | None, problem: str, kind: str | None = None) -> None:
        super().__init__(problem)
        self.column = column
        self.problem = problem
        # A short label without the offending value, for skip counts by problem.
        self.kind = kind or problem.split(":")[0]


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


def _decoded_lines(path: Path, bad_lines: set[int] | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text); an undecodable line is replaced by an empty one and its number
    added to ``bad_lines`` (or, without that set, raises ``TraceError``)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError:
                if bad_lines is None:
                    raise TraceError(path, number, None, "not valid UTF-8 text") from None
                bad_lines.add(number)
                yield number, "\n"


Row = dict[str, Any] | RowError


def _not_utf8() -> RowError:
    return RowError(None, "not valid UTF-8 text")


def csv_rows(path: Path) -> Iterator[tuple[int, Row]]:
    """(line number, row dict) per data row of a CSV file with a header; a malformed row
    comes as a ``RowError`` (so the caller can skip it), a broken header raises."""
    bad_lines: set[int] = set()
    line_numbers = [0]  # the last physical line handed to the csv reader

    def text() -> Iterator[str]:
        for number, line in _decoded_lines(path, bad_lines):
            line_numbers[-1] = number
            yield line

    reader = csv.reader(text())
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
    except csv.Error as exc:
        raise TraceError(path, line_numbers[-1] or None, None, f"bad header: {exc}") from None
    if header is None:
        raise TraceError(path, None, None, "empty file")
    if bad_lines:
        raise TraceError(path, min(bad_lines), None, "header is not valid UTF-8 text")
    header = [cell.strip().lstrip("\ufeff") for cell in header]
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader moves on to the next line
            yield line_numbers[-1], RowError(None, f"malformed CSV: {exc}", "malformed CSV")
            continue
        line = line_numbers[-1]
        if line in bad_lines:
            yield line, _not_utf8()
        elif not cells or not any(cell.strip() for cell in cells):
            continue
        elif len(cells) > len(header):
            problem = f"{len(cells)} fields, header has {len(header)}"
            yield line, RowError(None, problem, "too many fields")
        else:
            yield line, dict(zip(header, cells, strict=False))


def csv_header(path: Path) -> list[str]:
    """The header cells of a CSV file ([] if empty)."""
    for _number, line in _decoded_lines(path):
        if line.strip():
            try:
                row = next(csv.reader([line]))
            except csv.Error:
                return []
            return [cell.strip().lstrip("\ufeff") for cell in row]
    return []


def jsonl_rows(path: Path) -> Iterator[tuple[int, Row]]:
    """(line number, record) per non-blank line of a JSON-lines file; a malformed line comes
    as a ``RowError``."""
    bad_lines: set[int] = set()
    for number, line in _decoded_lines(path, bad_lines):
        if number in bad_lines:
            yield number, _not_utf8()
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            yield number, RowError(None, f"invalid JSON ({exc})", "invalid JSON")
            continue
        if not isinstance(record, dict):
            yield number, RowError(None, "each line must be a JSON object", "not a JSON object")
            continue
        yield number, record


def first_json_keys(path: Path, max_lines: int = 20) -> list[str]:
    """Keys of the first JSON object among the first ``max_lines`` non-blank lines ([] if
    none), so one corrupt leading line does not defeat format detection."""
    seen = 0
    for _number, line in _decoded_lines(path, set()):
        if not line.strip():
            continue
        seen += 1
        if seen > max_lines:
            break
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            return list(record)
    return []


def file_type_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".txt"):
        return "csv"
    # No telling suffix: look at the first non-blank byte.
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
    return "jsonl" if head.startswith(b"{") else "csv"


def resolve_trace_format(
    path: Path, format: str | None, columns: dict[str, str] | None, **generic: Any
) -> TraceFormat:
    """The format to read ``path`` with: named, generic with ``columns``, or detected."""
    if columns is not None:
        return generic_format(format or file_type_of(path), columns, **generic)
    if format is not None:
        return resolve_format(format)
    file_type = file_type_of(path)
    if path.stat().st_size == 0:
        raise TraceError(path, None, None, "empty file")
    names = csv_header(path) if file_type == "csv" else first_json_keys(path)
    return detect_format(str(path), file_type, names)
