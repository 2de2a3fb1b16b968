"""The results store: every evaluated plan in an embedded DuckDB file, written as it completes.

Schema (plain SQL works on it)::

    searches(search_hash VARCHAR PRIMARY KEY, inputs_json VARCHAR)
    plans(search_hash VARCHAR, plan_key VARCHAR, plan_json VARCHAR, status VARCHAR,
          reason VARCHAR, capacity_per_s DOUBLE, limiting VARCHAR, num_probes INTEGER,
          price_per_hour_usd DOUBLE, num_gpus INTEGER, metrics_json VARCHAR, wall_s DOUBLE,
          PRIMARY KEY (search_hash, plan_key))
    pages(search_hash VARCHAR PRIMARY KEY, page_json VARCHAR)

``search_hash`` is the SHA-256 of the search's inputs (scenario and planner settings), so a
re-run of the same search finds its finished plans and does not simulate them again, while a
different search in the same file keeps its own rows. Each row is committed on its own
(DuckDB auto-commit), so killing the process loses only the plans still being evaluated.
``pages`` holds what a search's HTML page needs beyond its results (what was searched, the
objective, the plans' order and count), so ``servesim report STORE`` can draw it from the
store alone (``servesim.report.plan_store``); a store without it (an older file) still reads.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from servesim.core.errors import ConfigError
from servesim.planner.evaluate import PlanResult
from servesim.planner.space import PlanSpec

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS searches (
        search_hash VARCHAR PRIMARY KEY, inputs_json VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS plans (
        search_hash VARCHAR, plan_key VARCHAR, plan_json VARCHAR, status VARCHAR,
        reason VARCHAR, capacity_per_s DOUBLE, limiting VARCHAR, num_probes INTEGER,
        price_per_hour_usd DOUBLE, num_gpus INTEGER, metrics_json VARCHAR, wall_s DOUBLE,
        PRIMARY KEY (search_hash, plan_key))""",
    """CREATE TABLE IF NOT EXISTS pages (
        search_hash VARCHAR PRIMARY KEY, page_json VARCHAR)""",
)


def inputs_hash(inputs: dict[str, Any]) -> str:
    """SHA-256 of the inputs' canonical JSON (sorted keys), as hex."""
    text = json.dumps(inputs, sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# A DuckDB database file carries this magic after its 8-byte checksum.
DUCKDB_MAGIC = b"DUCK"
_MAGIC_AT = 8
_TABLES = frozenset({"searches", "plans"})


def _what_file(path: Path) -> str | None:
    """None when ``path`` is absent, empty or a DuckDB file; else what it looks like."""
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return None
    if not path.is_file():
        return "not a regular file"
    with path.open("rb") as f:
        head = f.read(64)
    if head[_MAGIC_AT : _MAGIC_AT + len(DUCKDB_MAGIC)] == DUCKDB_MAGIC:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file that is not a DuckDB database"
    kind = "CSV/text" if "," in text else "text"
    return f"a {kind} file, not a DuckDB database (first bytes {text[:24]!r})"


class PlanStore:
    """A DuckDB file holding plan results of one or more searches.

    The file must be absent (it is created), empty, or a DuckDB database that is a servesim
    store (or has no tables yet): anything else is refused with what it is, so results are
    never written where they cannot be read back. ``read_only`` (``plan show``) never
    creates or changes the file.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        try:
            import duckdb
        except ImportError:  # a core dependency; say so if an install lacks it
            raise ConfigError("store", str(path), "needs duckdb (pip install duckdb)") from None
        self.path = Path(path)
        what = _what_file(self.path)
        if what is not None:
            raise ConfigError("store", str(path), f"not a servesim store: {what}")
        if read_only and not self.path.is_file():
            raise ConfigError("store", str(path), "file not found")
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
            tables = {r[0] for r in self._con.execute("SHOW TABLES").fetchall()}
        except duckdb.Error as exc:  # locked by another process, truncated, damaged
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError("store", str(path), f"cannot open it: {first}") from None
        if tables and not _TABLES.issubset(tables):
            self._con.close()
            shown = ", ".join(sorted(tables)[:5])
            raise ConfigError(
                "store", str(path), f"not a servesim store: a DuckDB database with tables {shown}"
            )
        self._has_tables = bool(tables)
        self._has_pages = "pages" in tables or not read_only
        if not read_only:
            for statement in _SCHEMA:
                self._query(statement)
            self._has_tables = True

    def _query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement; a DuckDB failure (a damaged file) is one line naming the file."""
        import duckdb

        try:
            cursor = self._con.execute(sql, params or [])
            return cursor.fetchall() if cursor.description is not None else []
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError("store", str(self.path), f"damaged or unreadable: {first}") from None

    def begin_search(self, inputs: dict[str, Any]) -> str:
        """Register a search's inputs; returns its hash."""
        digest = inputs_hash(inputs)
        self._query(
            "INSERT INTO searches VALUES (?, ?) ON CONFLICT DO NOTHING",
            [digest, json.dumps(inputs, sort_keys=True, default=str)],
        )
        return digest

    def put(self, search_hash: str, result: PlanResult) -> None:
        """Write (or replace) one plan's result; committed immediately."""
        self._query(
            "INSERT OR REPLACE INTO plans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                search_hash,
                result.plan.key(),
                json.dumps(result.plan.to_dict(), sort_keys=True),
                result.status,
                result.reason,
                result.capacity_per_s,
                result.limiting,
                result.num_probes,
                result.price_per_hour_usd,
                result.plan.num_gpus,
                json.dumps(result.metrics, sort_keys=True, allow_nan=True),
                result.wall_s,
            ],
        )

    def results(self, search_hash: str | None = None) -> list[PlanResult]:
        """Stored results (of one search, or of the latest-registered one when None)."""
        if search_hash is None:
            search_hash = self.default_search()
            if search_hash is None:
                return []
        rows = self._query(
            "SELECT plan_json, status, reason, capacity_per_s, limiting, num_probes, "
            "metrics_json, wall_s FROM plans WHERE search_hash = ? ORDER BY plan_key",
            [search_hash],
        )
        return [
            PlanResult(
                plan=PlanSpec.from_dict(json.loads(r[0])),
                status=r[1],
                reason=r[2],
                capacity_per_s=r[3],
                limiting=r[4],
                num_probes=r[5],
                metrics=json.loads(r[6]),
                wall_s=r[7],
            )
            for r in rows
        ]

    def put_page(self, search_hash: str, page: dict[str, Any]) -> None:
        """Write (or replace) what the page of search ``search_hash`` needs; committed."""
        self._query(
            "INSERT OR REPLACE INTO pages VALUES (?, ?)",
            [search_hash, json.dumps(page, sort_keys=True, allow_nan=True)],
        )

    def page(self, search_hash: str) -> dict[str, Any] | None:
        """What ``put_page`` wrote for ``search_hash`` (None: nothing, or an older store)."""
        if not self._has_pages:
            return None
        rows = self._query("SELECT page_json FROM pages WHERE search_hash = ?", [search_hash])
        return dict(json.loads(rows[0][0])) if rows else None

    def searches(self) -> list[tuple[str, dict[str, Any], int]]:
        """(hash, inputs, number of plans stored) for every search in the file."""
        if not self._has_tables:  # an empty DuckDB file opened read-only
            return []
        rows = self._query(
            "SELECT s.search_hash, s.inputs_json, count(p.plan_key) FROM searches s "
            "LEFT JOIN plans p USING (search_hash) GROUP BY ALL ORDER BY s.search_hash"
        )
        return [(r[0], json.loads(r[1]), int(r[2])) for r in rows]

    def default_search(self) -> str | None:
        """The hash of the search with the most stored plans (ties: smallest hash)."""
        found = sorted(self.searches(), key=lambda s: (-s[2], s[0]))
        return found[0][0] if found else None

    def close(self) -> None:
        """Close the file."""
        self._con.close()
