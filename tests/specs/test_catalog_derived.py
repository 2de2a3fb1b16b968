"""``catalog.json``, the catalog's YAML as JSON for start-up (``servesim.specs.catalog.derived``):
current, equal to the YAML, and never trusted when stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from servesim.specs.catalog import derived

_YAML_FILES = sorted(derived.CATALOG_DIR.rglob("*.yaml"))


def test_catalog_json_is_current() -> None:
    shipped = derived._entries()
    fresh = derived.build_entries()
    stale = sorted(k for k in fresh.keys() | shipped.keys() if fresh.get(k) != shipped.get(k))
    assert not stale, (
        f"catalog.json is stale for {stale}: run python -m servesim.specs.catalog.refresh "
        "(the YAML stays the source; a stale entry is only slower, never used)"
    )


@pytest.mark.parametrize("path", _YAML_FILES, ids=lambda p: p.name)
def test_each_file_loads_as_yaml_safe_load_does(path: Path) -> None:
    expected = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert derived._key(path) in derived._entries()  # served from the JSON
    assert derived.same_data(derived.load(path), expected)


def test_each_load_returns_fresh_objects() -> None:
    path = derived.CATALOG_DIR / "gpus.yaml"
    first = derived.load(path)
    first["gpus"].clear()
    assert derived.load(path)["gpus"]  # a caller's edit does not reach the next one


def test_a_stale_or_missing_entry_falls_back_to_the_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    edited, added = folder / "edited.yaml", folder / "added.yaml"
    edited.write_text("a: 1\n", encoding="utf-8")
    entries = derived.build_entries(folder)
    (folder / "catalog.json").write_text(json.dumps({"files": entries}), encoding="utf-8")
    edited.write_text("a: 2\n", encoding="utf-8")  # edited after the refresh
    added.write_text("b: [1, 2.5, yes]\n", encoding="utf-8")  # never refreshed
    monkeypatch.setattr(derived, "CATALOG_DIR", folder)
    monkeypatch.setattr(derived, "DERIVED_FILE", folder / "catalog.json")
    derived._entries.cache_clear()
    try:
        assert derived.load(edited) == {"a": 2}
        assert derived.load(added) == {"b": [1, 2.5, True]}
    finally:
        derived._entries.cache_clear()


def test_only_data_that_survives_json_is_stored(tmp_path: Path) -> None:
    (tmp_path / "keys.yaml").write_text("1: one\n", encoding="utf-8")  # int key -> "1"
    (tmp_path / "date.yaml").write_text("d: 2024-01-02\n", encoding="utf-8")  # not JSON
    (tmp_path / "nan.yaml").write_text("x: .nan\n", encoding="utf-8")
    (tmp_path / "ok.yaml").write_text("x: [1, 1.0, true, null]\n", encoding="utf-8")
    assert sorted(derived.build_entries(tmp_path)) == ["ok.yaml"]


def test_same_data_tells_types_apart() -> None:
    assert derived.same_data({"a": [1, 2.0]}, {"a": [1, 2.0]})
    assert not derived.same_data(1, 1.0)
    assert not derived.same_data(True, 1)
    assert not derived.same_data({1: "x"}, {"1": "x"})
    assert not derived.same_data({"a": 1, "b": 2}, {"b": 2, "a": 1})  # order is data too
