"""Trace readers on small hand-written files: formats, errors with locations, skip-and-count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from servesim.core.errors import ConfigError, TraceError, UnknownNameError
from servesim.core.rng import RandomStreams
from servesim.workload import load_trace
from servesim.workload.arrivals import PoissonArrivals

VIDUR = "arrived_at,num_prefill_tokens,num_decode_tokens\n"
BURST = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _jsonl(tmp_path: Path, name: str, records: list[object]) -> Path:
    return _write(tmp_path, name, "".join(json.dumps(r) + "\n" for r in records))


def test_vidur_csv_values(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.csv", VIDUR + "0.0,10,5\n0.5,20,6\n2.0,30,7\n")
    requests = list(load_trace(path))
    assert [r.arrival_s for r in requests] == [0.0, 0.5, 2.0]
    assert [r.num_prompt_tokens for r in requests] == [10, 20, 30]
    assert [r.request_id for r in requests] == [0, 1, 2]


@pytest.mark.parametrize(
    ("body", "line", "column", "problem"),
    [
        ("0.0,10,5\n0.5,abc,6\n", 3, "num_prefill_tokens", "not a number"),
        ("0.0,10,5\n0.5,10,-6\n", 3, "num_decode_tokens", "negative token count"),
        ("0.0,10,5\n0.5,10\n", 3, "num_decode_tokens", "missing column"),
        ("0.0,10,5\n0.5,10,5\n0.2,10,5\n", 4, "arrived_at", "not sorted"),
        ("0.0,10,5\n-1.0,10,5\n", 3, "arrived_at", "negative arrival"),
        ("0.0,10,5\n0.5,10.5,5\n", 3, "num_prefill_tokens", "not an integer"),
        ("0.0,10,5\n0.5,0,5\n", 3, "num_prefill_tokens", "0 prompt tokens"),
        ("0.0,10,5\nnan,10,5\n", 3, "arrived_at", "not a finite number"),
    ],
)
def test_csv_errors_name_file_line_column(
    tmp_path: Path, body: str, line: int, column: str, problem: str
) -> None:
    path = _write(tmp_path, "bad.csv", VIDUR + body)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    err = info.value
    assert (err.path, err.line, err.column) == (str(path), line, column)
    assert problem in str(err)
    assert str(err).startswith(f"{path}:{line} column {column!r}: ")


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="empty file"):
        load_trace(_write(tmp_path, "empty.csv", ""))
    with pytest.raises(TraceError, match="empty file"):
        load_trace(_write(tmp_path, "empty2.csv", ""), format="vidur")
    with pytest.raises(TraceError, match="no data rows"):
        load_trace(_write(tmp_path, "header.csv", VIDUR))
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "missing.csv")


def test_unknown_format_and_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "odd.csv", "a,b\n1,2\n")
    with pytest.raises(TraceError, match="unrecognised csv trace columns"):
        load_trace(path)
    with pytest.raises(UnknownNameError, match="did you mean vidur"):
        load_trace(path, format="vidr")
    with pytest.raises(TraceError, match="missing column"):
        load_trace(path, format="vidur")


def test_skip_bad_rows_counts_by_problem(tmp_path: Path) -> None:
    body = "0.0,10,5\n0.5,abc,6\n0.6,10,-1\n0.7,10,5\n0.1,10,5\n1.0,10,5\n"
    trace = load_trace(_write(tmp_path, "bad.csv", VIDUR + body), skip_bad_rows=True)
    assert len(trace) == 3
    assert trace.num_rows_read == 6
    assert trace.num_skipped_rows == 3
    assert trace.skipped_by_problem == {
        "not a number": 1,
        "negative token count": 1,
        "timestamps not sorted": 1,
    }
    assert trace.first_skipped[0].endswith("column 'num_prefill_tokens': not a number: 'abc'")
    assert ":3 column" in trace.first_skipped[0]


def test_burstgpt_failures_rejected_or_skipped(tmp_path: Path) -> None:
    body = (
        "5,ChatGPT,100,20,120,Conversation log\n"
        "7,GPT-4,50,0,50,API log\n"
        "9.5,ChatGPT,30,40,70,Conversation log\n"
    )
    path = _write(tmp_path, "BurstGPT_1.csv", BURST + body)
    with pytest.raises(TraceError, match=r":3 column 'Response tokens': failed request"):
        load_trace(path)
    trace = load_trace(path, skip_bad_rows=True)
    assert trace.format.name == "burstgpt"
    assert trace.skipped_by_problem == {"failed request (0 response tokens)": 1}
    assert trace.arrival_s.tolist() == [0.0, 4.5]
    assert trace.prompt_tokens.tolist() == [100, 30]
    raw = load_trace(path, skip_bad_rows=True, normalize_start=False)
    assert raw.arrival_s.tolist() == [5.0, 9.5]


def test_burstgpt_v3_session_column(tmp_path: Path) -> None:
    header = (
        "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,"
        "Total tokens,Log Type\n"
    )
    body = "1,7,2.0,GPT-4,10,5,15,API log\n2,7,1.0,GPT-4,20,5,25,API log\n"
    requests = list(load_trace(_write(tmp_path, "BurstGPT_3.csv", header + body)))
    assert [r.session_id for r in requests] == [7, 7]


def test_azure_datetimes(tmp_path: Path) -> None:
    body = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 23:59:59.9999999,10,5\n"
        "2023-11-17 00:00:01.0000001,10,5\n"
        "2023-11-17 00:00:01,10,5\n"
    )
    path = _write(tmp_path, "azure.csv", body)
    with pytest.raises(TraceError, match=r":4 column 'TIMESTAMP': timestamps not sorted"):
        load_trace(path)
    trace = load_trace(path, skip_bad_rows=True)
    assert trace.arrival_s[1] == pytest.approx(1.0000002, abs=1e-9)
    bad = _write(tmp_path, "azure2.csv", body.splitlines()[0] + "\n2023-13-45 00:00:00,1,1\n")
    with pytest.raises(TraceError, match="not a datetime"):
        load_trace(bad)


def test_mooncake_hash_ids_checked(tmp_path: Path) -> None:
    good = {"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}
    bad = {"timestamp": 3000, "input_length": 600, "output_length": 5, "hash_ids": [1]}
    path = _jsonl(tmp_path, "m.jsonl", [good, bad])
    with pytest.raises(TraceError, match=r"m.jsonl:2 column 'hash_ids': 1 block ids for 600"):
        load_trace(path)
    trace = load_trace(path, skip_bad_rows=True)
    assert next(iter(trace)).prefix_block_hashes == (1, 2)


def test_jsonl_errors(tmp_path: Path) -> None:
    rec = {"arrival_time_s": 0.5, "prompt_tokens": 10, "output_tokens": 2}
    path = _write(tmp_path, "s.jsonl", json.dumps(rec) + "\n{not json\n")
    with pytest.raises(TraceError, match=r"s.jsonl:2: invalid JSON"):
        load_trace(path)
    path = _jsonl(tmp_path, "s2.jsonl", [rec, [1, 2]])
    with pytest.raises(TraceError, match=r":2: each line must be a JSON object"):
        load_trace(path, format="served")
    path = _jsonl(tmp_path, "s3.jsonl", [rec, {**rec, "prompt_tokens": "x"}])
    with pytest.raises(TraceError, match=r":2 column 'prompt_tokens'"):
        load_trace(path)


def test_generic_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, "my.csv", "t_ms,in,out\n1000,5,6\n1500,7,8\n")
    columns = {"arrival": "t_ms", "prompt": "in", "output": "out"}
    trace = load_trace(path, columns=columns, arrival_unit="ms")
    assert trace.arrival_s.tolist() == [0.0, 0.5]
    with pytest.raises(ConfigError, match="columns"):
        load_trace(path, columns={"prompt": "in"})
    with pytest.raises(ConfigError, match="generic"):
        load_trace(path, format="csv")


def test_length_only_trace_needs_arrivals(tmp_path: Path) -> None:
    text = (
        "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n5,6,11,0.8\n7,8,15,0.9\n"
    )
    trace = load_trace(_write(tmp_path, "lengths.csv", text))
    assert not trace.has_arrivals
    with pytest.raises(ConfigError, match="lengths only"):
        list(trace)
    replay = list(trace.with_arrivals(PoissonArrivals(2.0), RandomStreams(0)))
    assert [r.num_prompt_tokens for r in replay] == [5, 7]
    assert 0 < replay[0].arrival_s < replay[1].arrival_s


def test_bad_options(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.csv", VIDUR + "0,1,1\n")
    with pytest.raises(ConfigError):
        load_trace(path, rate_scale=0)
    with pytest.raises(ConfigError):
        load_trace(path, over_limit="truncate")
    with pytest.raises(ConfigError):
        load_trace(path, bogus=True)
    with pytest.raises(TraceError, match="over the context limit"):
        load_trace(
            _write(tmp_path, "u.csv", VIDUR + "0,100,100\n"),
            max_context_tokens=50,
            over_limit="error",
        )


def test_cap_rule(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.csv", VIDUR + "0,100,100\n1,40,100\n2,10,10\n")
    trace = load_trace(path, max_context_tokens=50)
    assert trace.prompt_tokens.tolist() == [49, 40, 10]
    assert trace.output_tokens.tolist() == [1, 10, 10]
    assert trace.num_capped_requests == 2
    assert np.all(trace.prompt_tokens + trace.output_tokens <= 50)


def test_structural_row_errors_are_skippable(tmp_path: Path) -> None:
    rec = {"arrival_time_s": 0.5, "prompt_tokens": 10, "output_tokens": 2}
    lines = ["{broken", json.dumps(rec), "[1, 2]", json.dumps({**rec, "arrival_time_s": 1.0})]
    path = _write(tmp_path, "s.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(TraceError, match=r"s.jsonl:1: invalid JSON"):
        load_trace(path)  # detected as served from the first valid record
    trace = load_trace(path, skip_bad_rows=True)
    assert len(trace) == 2
    assert trace.skipped_by_problem == {"invalid JSON": 1, "not a JSON object": 1}
    csv_path = tmp_path / "t.csv"
    csv_path.write_bytes(VIDUR.encode() + b"0,1,1\n1,2,2,9\n2,\xff\xfe,3\n3,4,4\n")
    with pytest.raises(TraceError, match=r"t.csv:3: 4 fields, header has 3"):
        load_trace(csv_path)
    trace = load_trace(csv_path, skip_bad_rows=True)
    assert trace.prompt_tokens.tolist() == [1, 4]
    assert trace.skipped_by_problem == {"too many fields": 1, "not valid UTF-8 text": 1}
    bad_header = tmp_path / "h.csv"
    bad_header.write_bytes(b"arrived_at,\xff\n0,1,1\n")
    with pytest.raises(TraceError, match=r"h\.csv:1"):
        load_trace(bad_header, format="vidur", skip_bad_rows=True)
