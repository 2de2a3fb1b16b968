"""The packaged calibration loads as a lazy view (servesim/perf/calibration/lazy_json.py):
the same values as ``json.loads``, members parsed on first access."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from typing import Any

import pytest

from servesim.perf.calibration import (
    CALIBRATION_PATH,
    _load,
    calibration_from_dict,
    load_calibration,
)
from servesim.perf.calibration.lazy_json import LazyObject, lazy_object


def _plain(value: Any) -> Any:
    if isinstance(value, LazyObject):
        return {key: _plain(value[key]) for key in value}
    return value


# brackets, commas, colons and braces inside strings; nesting; empty containers; whitespace
TRICKY = """ {"a": "x,{y}[z]:", "b": {"c": [1, {"d": "}],"}, []], "e": {}},
  "f": [], "g": {}, "h": null, "i": -1.5e-3, "j": {"k": {"l": [[], {}]}, "m": "{"}} """


def test_the_view_has_json_loads_values() -> None:
    view = lazy_object(TRICKY)
    assert view is not None
    assert list(view) == ["a", "b", "f", "g", "h", "i", "j"]
    assert _plain(view) == json.loads(TRICKY)
    assert isinstance(view["b"], LazyObject)  # an object member is lazy one level down
    assert isinstance(view["b"]["e"], dict)  # and parsed whole below that


def test_a_repeated_key_keeps_the_last_value_as_json_does() -> None:
    text = '{"a": 1, "b": 2, "a": 3}'
    assert _plain(lazy_object(text)) == json.loads(text) == {"a": 3, "b": 2}


@pytest.mark.parametrize(
    "text",
    ['{"a": "back\\\\slash"}', '{"a": "caf\u00e9"}', "[1, 2]", '{"a": [1}', '{"a": "open}'],
    ids=["backslash", "non-ascii", "not-an-object", "unbalanced", "open-string"],
)
def test_text_the_view_could_misread_is_left_to_json(text: str) -> None:
    assert lazy_object(text) is None


def test_the_packaged_file_loads_to_the_same_calibration() -> None:
    text = CALIBRATION_PATH.read_text(encoding="utf-8")
    view = lazy_object(text)
    assert view is not None, "the packaged calibration must stay viewable (no backslash)"
    assert _plain(view) == json.loads(text)
    _load.cache_clear()
    try:
        loaded = load_calibration()
    finally:
        _load.cache_clear()
    assert isinstance(loaded.kernel_stacks, LazyObject)
    assert replace(loaded, path="") == calibration_from_dict(json.loads(text))
    # a copy for a worker process is plain data
    copied = pickle.loads(pickle.dumps(loaded))
    assert type(copied.kernel_stacks) is dict
    assert copied == loaded


def test_a_member_is_parsed_only_when_read() -> None:
    view = lazy_object('{"ok": {"a": 1}, "broken": [1, 2 3]}')
    assert view is not None
    assert dict(view["ok"]) == {"a": 1}
    with pytest.raises(json.JSONDecodeError):
        _ = view["broken"]
