"""The packaged ``calibration.json`` read without its two bulky members until they are used.

Of the file's ~680 KB a run reads ~40 KB (GPU curves, collectives, host profiles, power): the
kernel-stack fits (``kernel_stacks``, ~520 KB) are read only under a kernel stack that has them
(``servesim.perf.stack_resolve``), and the fit report (``kernel_report``, ~200 KB) only by
``servesim calibration``, which reads the file itself. Parsing all of it was 15-20 ms of every
run's start-up (bench/bench_startup.py); ``parse_packaged`` parses the rest (~1 ms) and keeps
each bulky member's text for its first use.

The writer (``servesim.perf.fitting``) stores the file as one line of key-sorted JSON, so the
bulky members sit between two other members. The cut points are found by text search and
proven, not assumed: the head ``text[:cut] + "}"`` and the tail ``"{" + text[cut + 1:]``
only parse when their cut is a comma of the top-level object (a cut inside a nested value
leaves brackets unbalanced), and a member's text parses as one value only when the cut between
the two bulky members is at the top level too. Any text that fails a check is parsed whole.
One case no cut check can see without parsing the bulky text: a further top-level member
sorting between ``kernel_stacks`` and ``power`` would ride inside ``kernel_stacks``' text. The
writer has none (``tests/perf/test_calibration_packaged.py`` compares the shipped file's keys
with ``json.loads``'), and should one appear, the first read of ``kernel_stacks`` finds it
and raises, naming it, instead of leaving it out unseen. Only the packaged file is read this
way; a user's file is parsed whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

# the members parsed on first use, in the file's (sorted) key order, and the member after them
BULKY = ("kernel_report", "kernel_stacks")
AFTER_BULKY = "power"


class LazyMember(Mapping[str, Any]):
    """One top-level object member of the packaged file, parsed on first access."""

    __slots__ = ("_key", "_owner", "_text", "_value", "_whole")

    def __init__(
        self, key: str, text: str, whole: str, owner: Mapping[str, Any] | None = None
    ) -> None:
        self._key, self._text, self._whole = key, text, whole
        self._owner = owner  # the parsed file this member belongs to (its other keys)
        self._value: dict[str, Any] | None = None

    def _parsed(self) -> dict[str, Any]:
        if self._value is None:
            try:
                value = json.loads(self._text)
            except json.JSONDecodeError:  # the cut was inside a value: the whole file decides
                whole = json.loads(self._whole)
                missing = sorted(set(whole) - set(self._owner or whole))
                if missing:
                    raise ValueError(
                        f"packaged calibration: top-level member(s) {missing} sit inside "
                        f"{self._key!r}'s text; perf/calibration/packaged.py cannot read them "
                        "lazily (parse the file whole)"
                    ) from None
                value = whole[self._key]
            self._value = value
            self._owner = None
            self._text = self._whole = ""  # the file's text is no longer held
        return self._value

    @property
    def is_parsed(self) -> bool:
        """Whether the member has been read (tests: a run that needs it not does not parse it)."""
        return self._value is not None

    def __getitem__(self, key: str) -> Any:
        return self._parsed()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def __repr__(self) -> str:
        return f"LazyMember({self._key!r}, parsed={self.is_parsed})"

    def __reduce__(self) -> tuple[Any, ...]:
        # a copy sent to a worker process (or deep-copied) carries the plain dict
        return (dict, (self._parsed(),))


def parse_packaged(text: str) -> dict[str, Any]:
    """``json.loads(text)`` of a calibration file, its bulky members as ``LazyMember``.

    Raises:
        json.JSONDecodeError: ``text`` is not JSON (from the whole parse it falls back to).
    """
    heads = [text.find(f',"{key}":') for key in BULKY]
    end = text.find(f',"{AFTER_BULKY}":', max(heads))
    if min(heads) < 0 or end < 0 or heads != sorted(heads):
        return json.loads(text)
    try:
        head = json.loads(text[: heads[0]] + "}")
        tail = json.loads("{" + text[end + 1 :])
    except json.JSONDecodeError:
        return json.loads(text)
    if not isinstance(head, dict) or not isinstance(tail, dict):
        return json.loads(text)
    bounds = [*heads, end]
    out: dict[str, Any] = dict(head)
    for i, key in enumerate(BULKY):
        start = bounds[i] + len(f',"{key}":')
        if not text.startswith("{", start):  # a mapping stands in for objects only
            return json.loads(text)
        out[key] = LazyMember(key, text[start : bounds[i + 1]], text, out)
    out.update(tail)
    return out
