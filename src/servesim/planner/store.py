"""The results store: every evaluated plan in an embedded DuckDB file, written as it completes.

Schema (plain SQL works on it)::

    searches(search_hash VARCHAR PRIMARY KEY, inputs_json VARCHAR)
    plans(search_hash VARCHAR, plan_key VARCHAR, plan_json VARCHAR, status VARCHAR,
          reason VARCHAR, capacity_per_s DOUBLE, limiting VARCHAR, num_probes INTEGER,
          price_per_hour_usd DOUBLE, num_gpus INTEGER, metrics_json VARCHAR, wall_s DOUBLE,
          PRIMARY KEY (search_hash, plan_key))

``search_hash`` is the SHA-256 of the search's inputs (scenario and planner settings), so a
re-run of the same search finds its finished plans and does not simulate them again, while a
different search in the same file keeps its own rows. Each row is committed on its own
(DuckDB auto-commit), so killing the process loses only the plans still being evaluated.
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
)


def inputs_hash(inputs: dict[str, Any]) -> str:
    """SHA-256 of the inputs' canonical JSON (sorted keys), as hex."""
    text = json.dumps(inputs, sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PlanStore:
    """A DuckDB file holding plan results of one or more searches."""

    def __init__(self, path: str | Path) -> None:
        try:
            import duckdb
        except ImportError:  # a core dependency; say so if an install lacks it
            raise ConfigError("store", str(path), "needs duckdb (pip install duckdb)") from None
        self.path = Path(path)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:  # DuckDB allows one writing process per file
            first = str(exc).splitlines()[0]
            raise ConfigError("store", str(path), f"cannot open it: {first}") from None
        for statement in _SCHEMA:
            self._con.execute(statement)

    def begin_search(self, inputs: dict[str, Any]) -> str:
        """Register a search's inputs; returns its hash."""
        digest = inputs_hash(inputs)
        self._con.execute(
            "INSERT INTO searches VALUES (?, ?) ON CONFLICT DO NOTHING",
            [digest, json.dumps(inputs, sort_keys=True, default=str)],
        )
        return digest

    def put(self, search_hash: str, result: PlanResult) -> None:
        """Write (or replace) one plan's result; committed immediately."""
        self._con.execute(
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
        rows = self._con.execute(
            "SELECT plan_json, status, reason, capacity_per_s, limiting, num_probes, "
            "metrics_json, wall_s FROM plans WHERE search_hash = ? ORDER BY plan_key",
            [search_hash],
        ).fetchall()
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

    def searches(self) -> list[tuple[str, dict[str, Any], int]]:
        """(hash, inputs, number of plans stored) for every search in the file."""
        rows = self._con.execute(
            "SELECT s.search_hash, s.inputs_json, count(p.plan_key) FROM searches s "
            "LEFT JOIN plans p USING (search_hash) GROUP BY ALL ORDER BY s.search_hash"
        ).fetchall()
        return [(r[0], json.loads(r[1]), int(r[2])) for r in rows]

    def default_search(self) -> str | None:
        """The hash of the search with the most stored plans (ties: smallest hash)."""
        found = sorted(self.searches(), key=lambda s: (-s[2], s[0]))
        return found[0][0] if found else None

    def close(self) -> None:
        """Close the file."""
        self._con.close()
