"""A JSON object whose members parse on first access: the packaged calibration file is
~650 KB, of which a run reads ~40 KB (the GEMM curves, collectives, host profiles); the
measured kernel stacks (~500 KB) are read per stack, and only under a kernel stack that has
them, and the held-out report (~200 KB) only by ``servesim calibration``. Parsing all of it
cost 15 ms of every run's start-up; this view finds the members' spans with one vectorised
pass (~3 ms) and parses each member when asked for it.

Exact only for text whose strings hold no backslash (then every ``"`` opens or closes a
string) and that is ASCII (string and byte offsets agree): ``lazy_object`` returns None for
anything else, and for text whose brackets do not balance, and the caller parses it whole.
The view does not validate members it never parses, so it suits a file the package ships
(written by ``json.dumps``), not a user's file, which must fail on load if it is malformed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

# byte -> structural class: 1 quote, 2 opening bracket, 3 closing bracket, 4 comma
_CLASS = np.zeros(256, dtype=np.int8)
for _char, _code in {'"': 1, "{": 2, "[": 2, "}": 3, "]": 3, ",": 4}.items():
    _CLASS[ord(_char)] = _code


class _Structure:
    """Positions, classes and bracket depth of the structural characters outside strings."""

    def __init__(self, text: str) -> None:
        codes = _CLASS[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
        pos = np.flatnonzero(codes)
        kind = codes[pos]
        quote = kind == 1
        outside = ((np.cumsum(quote, dtype=np.int64) & 1) == 0) & ~quote
        step = np.where(kind == 2, 1, np.where(kind == 3, -1, 0)).astype(np.int64)
        step[~outside] = 0
        depth = np.cumsum(step)
        self.balanced = bool(quote.sum() % 2 == 0 and depth.size and depth[-1] == 0)
        self.balanced = self.balanced and bool(depth.min() >= 0)
        keep = outside & (kind == 4)
        # a comma's depth is the depth of the object or array it separates members of
        self.comma_pos = pos[keep]
        self.comma_depth = depth[keep]

    def commas(self, lo: int, hi: int, depth: int) -> list[int]:
        """Positions of the commas at ``depth`` between ``lo`` and ``hi``."""
        first, last = np.searchsorted(self.comma_pos, (lo, hi))
        found = self.comma_pos[first:last]
        return found[self.comma_depth[first:last] == depth].tolist()


class LazyObject(Mapping[str, Any]):
    """The object ``text[lo:hi]`` (braces included) at bracket depth ``depth``; a member
    that is itself an object is again a ``LazyObject`` while ``nest`` > 0."""

    def __init__(
        self, text: str, structure: _Structure, lo: int, hi: int, depth: int, nest: int
    ) -> None:
        self._text, self._structure, self._depth, self._nest = text, structure, depth, nest
        self._spans: dict[str, tuple[int, int]] = {}
        self._values: dict[str, Any] = {}
        if not text[lo + 1 : hi - 1].strip():
            return  # {}
        starts = [lo + 1, *(c + 1 for c in structure.commas(lo, hi, depth))]
        ends = [*(s - 1 for s in starts[1:]), hi - 1]
        for start, end in zip(starts, ends, strict=True):
            open_quote = text.index('"', start, end)
            close_quote = text.index('"', open_quote + 1, end)
            colon = text.index(":", close_quote + 1, end)
            self._spans[text[open_quote + 1 : close_quote]] = (colon + 1, end)  # last wins

    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        start, end = self._spans[key]
        raw = self._text[start:end].strip()
        if self._nest > 0 and raw.startswith("{"):
            lo = self._text.index("{", start, end)
            hi = self._text.rindex("}", start, end) + 1
            value: Any = LazyObject(self._text, self._structure, lo, hi, self._depth + 1, 0)
        else:
            value = json.loads(raw)
        self._values[key] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._spans)

    def __len__(self) -> int:
        return len(self._spans)

    def __reduce__(self) -> tuple[Any, ...]:
        # a copy sent to a worker process carries plain data, not the file's text
        return (dict, ({key: _plain(self[key]) for key in self},))


def _plain(value: Any) -> Any:
    return {k: _plain(v) for k, v in value.items()} if isinstance(value, LazyObject) else value


def lazy_object(text: str) -> LazyObject | None:
    """``json.loads(text)`` as a lazy view, its object members lazy one level down; None when
    the view would not be exact (module docstring)."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")) or "\\" in text or not text.isascii():
        return None
    structure = _Structure(text)
    if not structure.balanced:
        return None
    return LazyObject(text, structure, text.index("{"), text.rindex("}") + 1, 1, 1)
