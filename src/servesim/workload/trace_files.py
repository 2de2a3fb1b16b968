"""Streaming the rows of a trace file (CSV or JSON lines) with their line numbers.

Each data row comes as a mapping of column name to raw value, or as a ``RowError`` when the
line itself is broken (undecodable bytes, malformed CSV, invalid JSON), so the caller can
report its exact location or skip and count it. Also detects the file type and the trace
format from the header or the first JSON object. ``servesim.workload.trace_reader`` turns
the rows into columns.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from servesim.core.errors import TraceError
from servesim.workload.trace_formats import (
    TraceFormat,
    detect_format,
    generic_format,
    resolve_format,
)


class RowError(Exception):
    """A problem with one field of one row (converted to ``TraceError`` with the location)."""

    def __init__(self, column: str | None, problem: str, kind: str | None = None) -> None:
        super().__init__(problem)
        self.column = column
        self.problem = problem
        # A short label without the offending value, for skip counts by problem.
        self.kind = kind or problem.split(":")[0]


# Leading bytes of compressed files: gzip is read as is; the others are named in the error.
_GZIP_MAGIC = b"\x1f\x8b"
_OTHER_COMPRESSION = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
}


def open_trace_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when it is gzip-compressed (by content, not by name).

    Raises:
        TraceError: another compression (bzip2, xz, zstd, zip), named so the user can
            decompress it first.
    """
    with path.open("rb") as handle:
        head = handle.read(6)
    if head.startswith(_GZIP_MAGIC):
        return gzip.open(path, "rb")
    for magic, name in _OTHER_COMPRESSION.items():
        if head.startswith(magic):
            raise TraceError(
                path, None, None, f"{name}-compressed: decompress it first (plain or gzip only)"
            )
    return path.open("rb")


def _decoded_lines(path: Path, bad_lines: set[int] | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text); an undecodable line is replaced by an empty one and its number
    added to ``bad_lines`` (or, without that set, raises ``TraceError``). A UTF-8 byte-order
    mark opening the file is dropped (CSV and JSONL alike)."""
    with open_trace_bytes(path) as handle:
        try:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    if bad_lines is None:
                        raise TraceError(path, number, None, "not valid UTF-8 text") from None
                    bad_lines.add(number)
                    yield number, "\n"
                    continue
                yield number, text.removeprefix("\ufeff") if number == 1 else text
        except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt gzip stream
            raise TraceError(path, None, None, f"corrupt gzip data: {exc}") from None


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
    """``"jsonl"`` or ``"csv"``, by suffix (``.gz`` looked through), else by content."""
    name = path.name.lower().removesuffix(".gz")
    suffix = Path(name).suffix
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".txt"):
        return "csv"
    # No telling suffix: look at the first non-blank byte.
    with open_trace_bytes(path) as handle:
        try:
            head = handle.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
        except (OSError, EOFError, zlib.error) as exc:
            raise TraceError(path, None, None, f"corrupt gzip data: {exc}") from None
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
