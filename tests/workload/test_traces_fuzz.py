"""Fuzz: corrupted trace files give valid requests or a TraceError, never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.core.errors import TraceError
from servesim.workload import load_trace

VIDUR = b"arrived_at,num_prefill_tokens,num_decode_tokens\n" + b"".join(
    f"{i * 0.25},{10 + i},{1 + i % 7}\n".encode() for i in range(12)
)
AZURE = b"TIMESTAMP,ContextTokens,GeneratedTokens\n" + b"".join(
    f"2023-11-16 18:17:{i:02d}.9799600,{100 + i},{5 + i}\n".encode() for i in range(12)
)
MOONCAKE = b"".join(
    json.dumps(
        {
            "timestamp": 1000 * i,
            "input_length": 600 + i,
            "output_length": 3,
            "hash_ids": [i, 99 + i],
        }
    ).encode()
    + b"\n"
    for i in range(12)
)
BURST = b"Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + b"".join(
    f"{i},ChatGPT,{5 + i},{i % 3},{5 + i + i % 3},API log\n".encode() for i in range(12)
)

SERVESIM = b"".join(
    json.dumps(
        {
            "arrival_s": 0.5 * i,
            "num_prompt_tokens": 20 + i,
            "num_output_tokens": 3,
            "prefix_block_hashes": list(range(i, i + 2 + (i > 11))),
            "prefix_block_size": 16,
            "session_id": i % 3,
            "group_id": i // 2,
            "priority": -i,
            "slo_class": "chat",
            "adapter_id": "a1",
            "user_id": i,
        }
    ).encode()
    + b"\n"
    for i in range(12)
)

corruption = st.lists(
    st.tuples(
        st.sampled_from(["replace", "insert", "delete", "dup_line", "drop_line"]),
        st.integers(0, 10_000),
        st.binary(min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=6,
)


def _corrupt(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    for op, pos, blob in edits:
        if not data:
            data = blob
            continue
        i = pos % len(data)
        if op == "replace":
            data = data[:i] + blob + data[i + len(blob) :]
        elif op == "insert":
            data = data[:i] + blob + data[i:]
        elif op == "delete":
            data = data[:i] + data[i + len(blob) :]
        else:
            lines = data.split(b"\n")
            k = pos % len(lines)
            lines = lines[:k] + ([lines[k]] * 2 if op == "dup_line" else []) + lines[k + 1 :]
            data = b"\n".join(lines)
    return data


def _check(data: bytes, suffix: str, skip: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"trace{suffix}"
        path.write_bytes(data)
        try:
            trace = load_trace(path, skip_bad_rows=skip)
        except TraceError as exc:
            assert str(path) in str(exc)
            return
        assert len(trace) >= 1
        assert trace.prompt_tokens.min() >= 1 and trace.output_tokens.min() >= 1
        if trace.has_arrivals:
            requests = list(trace)
            times = [r.arrival_s for r in requests]
            assert times == sorted(times) and times[0] == 0.0
            for r in requests:
                assert r.num_prompt_tokens >= 1 and r.num_output_tokens >= 1
                if r.prefix_block_size:
                    size = r.prefix_block_size
                    assert len(r.prefix_block_hashes) == -(-r.num_prompt_tokens // size)


_SETTINGS = settings(
    max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@_SETTINGS
@given(edits=corruption, skip=st.booleans())
def test_fuzz_vidur_csv(edits: list[tuple[str, int, bytes]], skip: bool) -> None:
    _check(_corrupt(VIDUR, edits), ".csv", skip)


@_SETTINGS
@given(edits=corruption, skip=st.booleans())
def test_fuzz_azure_csv(edits: list[tuple[str, int, bytes]], skip: bool) -> None:
    _check(_corrupt(AZURE, edits), ".csv", skip)


@_SETTINGS
@given(edits=corruption, skip=st.booleans())
def test_fuzz_mooncake_jsonl(edits: list[tuple[str, int, bytes]], skip: bool) -> None:
    _check(_corrupt(MOONCAKE, edits), ".jsonl", skip)


@_SETTINGS
@given(edits=corruption, skip=st.booleans())
def test_fuzz_burstgpt_csv(edits: list[tuple[str, int, bytes]], skip: bool) -> None:
    _check(_corrupt(BURST, edits), ".csv", skip)


@_SETTINGS
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".jsonl", ""]))
def test_fuzz_random_bytes(data: bytes, suffix: str) -> None:
    _check(data, suffix, skip=True)


@_SETTINGS
@given(edits=corruption, skip=st.booleans())
def test_fuzz_servesim_jsonl(edits: list[tuple[str, int, bytes]], skip: bool) -> None:
    _check(_corrupt(SERVESIM, edits), ".jsonl", skip)
