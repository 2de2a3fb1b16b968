"""The catalog's YAML files as JSON for start-up: ``catalog.json`` (generated from them).

Reading the catalog's YAML at start-up cost every run the yaml package's import (~10 ms) and
PyYAML's Python constructor over libyaml's parse (~4 ms for ``gpus.yaml``;
bench/bench_startup.py); the same data as JSON parses in a tenth of that, without importing
yaml. The YAML files stay the source of truth: ``catalog.json`` holds each file's data as JSON
text with the SHA-256 of the YAML bytes it came from, and ``load`` parses the YAML itself when
a file has no entry or its digest differs (an edited file), so a caller always gets what
``yaml.safe_load`` returns, as fresh objects. Refresh it after editing a catalog file::

    python -m servesim.specs.catalog.refresh

(``tests/specs/test_catalog_derived.py`` fails while it is stale.)
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG_DIR = Path(__file__).resolve().parent
DERIVED_FILE = CATALOG_DIR / "catalog.json"


def load(path: Path) -> Any:
    """``yaml.safe_load`` of the catalog file ``path``: from ``catalog.json`` when its entry is
    current, else from the YAML (any path outside the catalog is always read as YAML)."""
    raw = path.read_bytes()
    entry = _entries().get(_key(path))
    if entry is not None and entry.get("sha256") == hashlib.sha256(raw).hexdigest():
        return json.loads(entry["json"])
    return yaml_load(raw.decode("utf-8"))


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with libyaml's parser where installed (the same safe constructor)."""
    import yaml  # only for a file catalog.json does not hold as it is

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@lru_cache(maxsize=1)
def _entries() -> dict[str, dict[str, str]]:
    """Catalog-relative path -> {"sha256", "json"}; empty when the file is absent or broken."""
    try:
        files = json.loads(DERIVED_FILE.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}


def _key(path: Path) -> str:
    """``path`` relative to the catalog folder (``models/llama-3.1-8b.yaml``), or ""."""
    try:
        return path.resolve().relative_to(CATALOG_DIR).as_posix()
    except ValueError:
        return ""


def same_data(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are equal with equal types throughout (``1`` is not ``1.0`` or
    ``True``, a key ``1`` is not ``"1"``): what a JSON round trip must keep of YAML data."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_data(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_data(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def build_entries(folder: Path = CATALOG_DIR) -> dict[str, dict[str, str]]:
    """The entries of ``catalog.json`` for every YAML file under ``folder`` whose data survives
    a JSON round trip unchanged (any other file is left to the YAML path)."""
    entries: dict[str, dict[str, str]] = {}
    for path in sorted(folder.rglob("*.yaml")):
        raw = path.read_bytes()
        data = yaml_load(raw.decode("utf-8"))
        try:
            text = json.dumps(data, sort_keys=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):  # a date, a NaN: not JSON
            continue
        if not same_data(json.loads(text), data):
            continue
        key = path.relative_to(folder).as_posix()
        entries[key] = {"sha256": hashlib.sha256(raw).hexdigest(), "json": text}
    return entries
