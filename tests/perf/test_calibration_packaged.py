"""The packaged calibration read without its bulky members until used
(``servesim.perf.calibration.packaged``): always equal to ``json.loads``, only cheaper."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from servesim.core.errors import ConfigError
from servesim.perf.calibration import (
    CALIBRATION_PATH,
    calibration_from_dict,
    load_calibration,
)
from servesim.perf.calibration.packaged import LazyMember, parse_packaged


def _dumps(data: dict[str, object]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))  # the writer's layout


def test_the_shipped_file_takes_the_lazy_path_and_reads_the_same() -> None:
    text = CALIBRATION_PATH.read_text(encoding="utf-8")
    parsed = parse_packaged(text)
    # a writer change that defeated the cut points would silently cost 15-20 ms a run
    assert isinstance(parsed["kernel_stacks"], LazyMember)
    assert isinstance(parsed["kernel_report"], LazyMember)
    assert not parsed["kernel_stacks"].is_parsed
    assert parsed == json.loads(text)
    assert list(parsed) == list(json.loads(text))


_DOC = {
    "collectives": [{"gpu": "a100", "lines": [[1.0, 2.0]]}],
    "gpus": {"a100": {"calibrated": True}},
    "kernel_report": {"heldout": [1, 2, {"x": "}]"}]},
    "kernel_stacks": {"vllm-0.24": {"h100": {"gemm": {"e": 0.5}}}},
    "power": {"h100": {"idle_w": 70}},
    "source": "s",
    "version": 1,
}


@pytest.mark.parametrize(
    "doc",
    [
        _DOC,
        # the cut keys nested inside other members: the first text match is not the member
        {**_DOC, "gpus": {"a": {"x": 1, "kernel_report": {"y": 2}, "power": 3}}},
        {**_DOC, "kernel_report": {"a": 1, "kernel_stacks": {"b": 2}, "power": [3]}},
        {**_DOC, "kernel_stacks": {"a": {"b": 1, "power": {"c": 2}}}},
        {**_DOC, "power": {"a": {"b": 1, "power": 2}}},
        # the cut texts inside strings (escaped quotes, backslashes, non-ASCII)
        {**_DOC, "source": 'x,"kernel_report":{"power":1} \\ é'},
        {**_DOC, "kernel_report": {"a": ',"kernel_stacks":{', "b": "\\"}},
        # members missing or not objects: parsed whole
        {k: v for k, v in _DOC.items() if k != "power"},
        {k: v for k, v in _DOC.items() if k != "kernel_report"},
        {**_DOC, "kernel_stacks": [1, 2]},
    ],
)
def test_any_text_reads_as_json_loads(doc: dict[str, object]) -> None:
    text = _dumps(doc)
    parsed = parse_packaged(text)
    assert parsed == json.loads(text)
    for key in ("kernel_report", "kernel_stacks"):
        value = parsed.get(key)
        if isinstance(value, LazyMember):
            assert dict(value) == doc[key]  # each member on its own, too


def test_a_member_cut_inside_a_value_is_read_from_the_whole_text() -> None:
    # the first ',"kernel_stacks":' is inside kernel_report: that member's text fails to
    # parse alone, and both members come from the whole document instead
    doc = {**_DOC, "kernel_report": {"a": 1, "kernel_stacks": {"b": 2}, "z": 0}}
    parsed = parse_packaged(_dumps(doc))
    assert dict(parsed["kernel_report"]) == doc["kernel_report"]
    assert dict(parsed["kernel_stacks"]) == doc["kernel_stacks"]


def test_a_lazy_member_pickles_as_its_plain_dict() -> None:
    member = parse_packaged(_dumps(_DOC))["kernel_stacks"]
    copy = pickle.loads(pickle.dumps(member))
    assert type(copy) is dict
    assert copy == _DOC["kernel_stacks"]


def test_the_loaded_calibration_equals_the_whole_parse() -> None:
    loaded = load_calibration()
    whole = calibration_from_dict(json.loads(CALIBRATION_PATH.read_text(encoding="utf-8")))
    assert loaded == dataclasses.replace(whole, path=loaded.path)


def test_a_preset_run_never_parses_the_kernel_stacks() -> None:
    # vLLM 0.6's stack (the default engine) has no measured family fits (stack_resolve)
    from servesim.api import simulate
    from servesim.perf import calibration

    calibration._load.cache_clear()  # a fresh load: earlier tests may have read the stacks
    simulate({"workload": {"preset": "azure-conv", "rate_per_s": 4, "num_requests": 8}})
    stacks = load_calibration().kernel_stacks
    assert isinstance(stacks, LazyMember) and not stacks.is_parsed


def test_a_user_file_is_parsed_whole_and_fails_on_load(tmp_path: Path) -> None:
    text = _dumps(_DOC).replace('"kernel_stacks":{', '"kernel_stacks":{,')
    path = tmp_path / "calibration.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a calibration JSON file"):
        load_calibration(str(path))


def test_a_member_hidden_inside_the_bulky_text_is_named_not_dropped() -> None:
    # "meta" sorts between kernel_stacks and power: it rides inside kernel_stacks' cut text,
    # which then fails to parse alone; the first read names it instead of leaving it out
    doc = {**_DOC, "meta": {"x": 1}}
    parsed = parse_packaged(_dumps(doc))
    stacks = parsed["kernel_stacks"]
    assert isinstance(stacks, LazyMember)
    with pytest.raises(ValueError, match=r"\['meta'\] sit inside 'kernel_stacks'"):
        dict(stacks)
