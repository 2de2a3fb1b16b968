"""Error types. Every user-facing failure is a ``ServesimError`` with a one-line message.

The CLI turns any ``ServesimError`` into that line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class ServesimError(Exception):
    """Base class for errors caused by the user's input or a deployment that cannot work."""


class ConfigError(ServesimError):
    """A configuration value is invalid: names the field, the value and the constraint."""

    def __init__(self, field: str, value: object, constraint: str) -> None:
        self.field = field
        self.value = value
        self.constraint = constraint
        super().__init__(f"{field}={value!r}: {constraint}")


class UnknownNameError(ServesimError):
    """A name (model, GPU, scheduler, ...) is not in its catalog or registry."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        close = difflib.get_close_matches(name.lower(), [k.lower() for k in self.known], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        listing = ", ".join(self.known) if len(self.known) <= 30 else f"{len(self.known)} entries"
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {listing})")


class InfeasibleError(ServesimError):
    """A deployment cannot work (e.g. the weights do not fit); the message gives the breakdown."""


class TraceError(ServesimError):
    """A malformed workload trace: names the file, the line and the column."""

    def __init__(
        self, path: str | Path, line: int | None, column: str | None, problem: str
    ) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        where = self.path
        if line is not None:
            where += f":{line}"
        if column is not None:
            where += f" column {column!r}"
        super().__init__(f"{where}: {problem}")
