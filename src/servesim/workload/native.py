"""servesim's own trace format: JSONL with ``Request`` fields, written and read back exactly.

``write_requests(workload, path)`` saves any workload (a synthetic one to share or to feed a
real benchmark client; a cleaned-up trace) one request per line, with the field names of
``Request``; fields at their defaults are left out. ``load_trace(path)`` detects the format
(``servesim``) by its ``arrival_s``/``num_prompt_tokens``/``num_output_tokens`` keys and gives
back the same requests: sessions, groups, prefix blocks, priority, SLO class, user, adapter.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servesim.workload.request import Request

_DEFAULTS = {
    "session_id": None,
    "group_id": None,
    "priority": 0,
    "slo_class": "default",
    "adapter_id": None,
    "user_id": 0,
}


def request_record(request: Request) -> dict[str, Any]:
    """The JSON record of one request (defaults omitted, ``request_id`` implied by order)."""
    record: dict[str, Any] = {
        "arrival_s": request.arrival_s,
        "num_prompt_tokens": request.num_prompt_tokens,
        "num_output_tokens": request.num_output_tokens,
    }
    if request.prefix_block_hashes:
        record["prefix_block_hashes"] = list(request.prefix_block_hashes)
        record["prefix_block_size"] = request.prefix_block_size
    for name, default in _DEFAULTS.items():
        value = getattr(request, name)
        if value != default:
            record[name] = value
    return record


def write_requests(requests: Iterable[Request], path: str | Path) -> int:
    """Write ``requests`` (e.g. a ``Workload``) as servesim JSONL; returns the count."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for request in requests:
            handle.write(json.dumps(request_record(request), separators=(",", ":")) + "\n")
            count += 1
    return count


@dataclass
class Extras:
    """Column buffers for the optional ``Request`` fields of the servesim format."""

    group: array = field(default_factory=lambda: array("q"))  # -1: none
    priority: array = field(default_factory=lambda: array("q"))
    user: array = field(default_factory=lambda: array("q"))
    slo_class: array = field(default_factory=lambda: array("q"))  # codes into names
    adapter: array = field(default_factory=lambda: array("q"))  # codes into names, -1: none
    names: list[str] = field(default_factory=list)
    _codes: dict[str, int] = field(default_factory=dict)

    def code(self, name: str) -> int:
        """A small integer for a repeated string (class and adapter names)."""
        if name not in self._codes:
            self._codes[name] = len(self.names)
            self.names.append(name)
        return self._codes[name]

    def append(self, values: tuple[int, int, int, str, str | None]) -> None:
        """Store one row's (group, priority, user, slo_class, adapter)."""
        group, priority, user, slo_class, adapter = values
        self.group.append(group)
        self.priority.append(priority)
        self.user.append(user)
        self.slo_class.append(self.code(slo_class))
        self.adapter.append(-1 if adapter is None else self.code(adapter))

    def truncate(self, num: int) -> None:
        """Keep the first ``num`` rows."""
        for column in (self.group, self.priority, self.user, self.slo_class, self.adapter):
            del column[num:]

    def fields(self, index: int) -> dict[str, Any]:
        """The ``Request`` keyword arguments of row ``index``."""
        adapter = self.adapter[index]
        group = self.group[index]
        return {
            "group_id": None if group < 0 else group,
            "priority": self.priority[index],
            "user_id": self.user[index],
            "slo_class": self.names[self.slo_class[index]],
            "adapter_id": None if adapter < 0 else self.names[adapter],
        }
