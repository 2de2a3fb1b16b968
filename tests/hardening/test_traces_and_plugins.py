"""Issue 16: traces (duplicate ids, misspelt optional fields, compression, byte-order marks)
and user plug-ins (every way loading or running one fails) give one clear line, exit 2."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pytest

from servesim.core.errors import TraceError
from servesim.workload import load_trace

SERVESIM_ROWS = [
    {"arrival_s": 0.0, "num_prompt_tokens": 5, "num_output_tokens": 3},
    {"arrival_s": 1.0, "num_prompt_tokens": 7, "num_output_tokens": 2, "priority": 1},
]
APEX_ROWS = [
    {"ContextTokens": 5, "GeneratedTokens": 3, "RequestID": "a", "StartTimeOffset": 0},
    {"ContextTokens": 6, "GeneratedTokens": 3, "RequestID": "b", "StartTimeOffset": 10},
    {"ContextTokens": 7, "GeneratedTokens": 3, "RequestID": "a", "StartTimeOffset": 20},
]


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


BAD_TRACES = [
    (
        "apex-duplicate-id",
        "a.jsonl",
        _jsonl(APEX_ROWS),
        ":3 column 'RequestID'",
        "duplicate id 'a' (first at line 1)",
    ),
    (
        "misspelt-optional-field",
        "t.jsonl",
        _jsonl([{**SERVESIM_ROWS[0], "priorty": 2}]),
        ":1 column 'priorty'",
        "did you mean 'priority'?",
    ),
    (
        "xz-compressed",
        "t.jsonl.xz",
        lzma.compress(_jsonl(SERVESIM_ROWS)),
        "t.jsonl.xz",
        "xz-compressed",
    ),
    (
        "truncated-gzip",
        "t.jsonl.gz",
        gzip.compress(_jsonl(SERVESIM_ROWS), mtime=0)[:25],
        "t.jsonl.gz",
        "corrupt gzip",
    ),
]


@pytest.mark.parametrize(
    ("case", "name", "data", "where", "problem"), BAD_TRACES, ids=[c[0] for c in BAD_TRACES]
)
def test_bad_traces_are_refused_with_their_location(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, case: str, name: str, data: bytes, where: str, problem: str
) -> None:
    path = _write(tmp_path, name, data)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert where in str(info.value) and problem in str(info.value), str(info.value)
    outcome = cli(["workload", "describe", "--trace", str(path)])
    outcome.assert_one_line_error(where, problem)


@pytest.mark.parametrize(
    ("case", "name", "data"),
    [
        ("gzip", "t.jsonl.gz", gzip.compress(_jsonl(SERVESIM_ROWS), mtime=0)),
        ("gzip-without-suffix", "t.trace", gzip.compress(_jsonl(SERVESIM_ROWS), mtime=0)),
        ("jsonl-bom", "t.jsonl", b"\xef\xbb\xbf" + _jsonl(SERVESIM_ROWS)),
        (
            "csv-bom",
            "t.csv",
            b"\xef\xbb\xbfarrived_at,num_prefill_tokens,num_decode_tokens\n0,5,3\n1,7,2\n",
        ),
    ],
)
def test_gzip_and_byte_order_marks_read_like_plain_files(
    tmp_path: Path, case: str, name: str, data: bytes
) -> None:
    trace = load_trace(_write(tmp_path, name, data))
    requests = list(trace)
    assert [r.num_prompt_tokens for r in requests] == [5, 7]
    assert [r.arrival_s for r in requests] == [0.0, 1.0]


def test_a_servesim_trace_keeps_its_declared_optional_fields(tmp_path: Path) -> None:
    requests = list(load_trace(_write(tmp_path, "t.jsonl", _jsonl(SERVESIM_ROWS))))
    assert [r.priority for r in requests] == [0, 1]


def test_skip_bad_rows_counts_a_duplicate_id(tmp_path: Path) -> None:
    trace = load_trace(_write(tmp_path, "a.jsonl", _jsonl(APEX_ROWS)), skip_bad_rows=True)
    assert len(list(trace)) == 2
    assert trace.skipped_by_problem == {"duplicate id": 1}


_SCHEDULER_BASE = "from servesim.engine.schedulers.base import ReplicaScheduler\n"
PLUGINS = {
    "syntax.py": "class S(:\n    pass\n",
    "import_error.py": "import no_such_module_for_servesim\n",
    "raises_at_import.py": "raise RuntimeError('boom at import')\n",
    "not_a_scheduler.py": "class S:\n    def __init__(self, *a, **k):\n        pass\n",
    "policies.py": _SCHEDULER_BASE
    + "class Raises(ReplicaScheduler):\n"
    + "    def schedule(self, now, state):\n"
    + "        raise RuntimeError('schedule boom')\n"
    + "class Returns42(ReplicaScheduler):\n"
    + "    def schedule(self, now, state):\n"
    + "        return 42\n"
    + "class Route99:\n    def route(self, request, views):\n        return 99\n"
    + "class RouteZero:\n    def route(self, request, views):\n        return 'zero'\n"
    + "class RouteRaises:\n    def route(self, request, views):\n"
    + "        raise ValueError('route boom')\n",
}
PLUGIN_CASES = [
    ("syntax-error", "--scheduler", "syntax.py:S", ["syntax.py:1: syntax error"]),
    ("import-error", "--scheduler", "import_error.py:S", ["cannot import", "no_such_module"]),
    (
        "error-at-import",
        "--scheduler",
        "raises_at_import.py:S",
        ["RuntimeError while loading", "line 1", "boom at import"],
    ),
    (
        "not-a-scheduler",
        "--scheduler",
        "not_a_scheduler.py:S",
        ["not derived from", "ReplicaScheduler"],
    ),
    ("no-such-class", "--scheduler", "policies.py:Nope", ["defines no 'Nope'"]),
    (
        "schedule-raises",
        "--scheduler",
        "policies.py:Raises",
        ["policies.py:Raises raised RuntimeError", "Raises.schedule", "schedule boom"],
    ),
    ("schedule-returns-42", "--scheduler", "policies.py:Returns42", ["Returns42", "returned 42"]),
    ("route-returns-99", "--router", "policies.py:Route99", ["Route99", "returned 99"]),
    ("route-returns-zero", "--router", "policies.py:RouteZero", ["RouteZero", "'zero'"]),
    (
        "route-raises",
        "--router",
        "policies.py:RouteRaises",
        ["RouteRaises raised ValueError", "RouteRaises.route", "route boom"],
    ),
]


@pytest.mark.parametrize(
    ("case", "flag", "spec", "parts"), PLUGIN_CASES, ids=[c[0] for c in PLUGIN_CASES]
)
def test_plugin_failures_are_one_line_naming_file_and_class(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, case: str, flag: str, spec: str, parts: list[str]
) -> None:
    for name, text in PLUGINS.items():
        (tmp_path / name).write_text(text)
    argv = ["simulate", "--num-requests", "4", flag, f"{tmp_path}/{spec}"]
    if flag == "--router":
        argv += ["--replicas", "2"]
    cli(argv).assert_one_line_error(*parts)
