"""Round trip: rows written in each public format read back exactly (hypothesis)."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.workload import load_trace

rows = st.lists(
    st.tuples(st.integers(0, 10**7), st.integers(1, 200_000), st.integers(1, 5000)),
    min_size=1,
    max_size=30,
)


def _render(fmt: str, data: list[tuple[int, int, int]]) -> tuple[str, str]:
    """(suffix, text) of ``data`` = [(arrival in 100-ns ticks, prompt, output), ...]."""
    if fmt == "vidur":
        body = "".join(f"{t / 1e7!r},{p},{o}\n" for t, p, o in data)
        return ".csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n" + body
    if fmt == "azure":
        base = datetime(2023, 11, 16, 18, 0, 0)
        lines = []
        for t, p, o in data:
            moment = base + timedelta(seconds=t // 10**7)
            lines.append(f"{moment:%Y-%m-%d %H:%M:%S}.{t % 10**7:07d},{p},{o}\n")
        return ".csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(lines)
    if fmt == "burstgpt":
        header = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        body = "".join(f"{t / 1e7!r},GPT-4,{p},{o},{p + o},API log\n" for t, p, o in data)
        return ".csv", header + body
    records: list[dict[str, object]]
    if fmt == "mooncake":  # ms resolution: ticks are multiples of 10^4
        records = [
            {
                "timestamp": t // 10**4,
                "input_length": p,
                "output_length": o,
                "hash_ids": list(range(-(-p // 512))),
            }
            for t, p, o in data
        ]
    elif fmt == "apex":
        records = [
            {"ContextTokens": p, "GeneratedTokens": o, "StartTimeOffset": t * 100}
            for t, p, o in data
        ]
    else:
        records = [
            {"arrival_time_s": t / 1e7, "prompt_tokens": p, "output_tokens": o} for t, p, o in data
        ]
    return ".jsonl", "".join(json.dumps(r) + "\n" for r in records)


@settings(max_examples=25, deadline=None)
@given(
    data=rows,
    fmt=st.sampled_from(["vidur", "azure", "burstgpt", "mooncake", "apex", "served"]),
)
def test_round_trip(data: list[tuple[int, int, int]], fmt: str) -> None:
    if fmt == "mooncake":
        data = [(t - t % 10**4, p, o) for t, p, o in data]
    data.sort()
    suffix, text = _render(fmt, data)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"trace{suffix}"
        path.write_text(text)
        trace = load_trace(path, normalize_start=False)
        assert trace.format.name == fmt
        assert trace.prompt_tokens.tolist() == [p for _t, p, _o in data]
        assert trace.output_tokens.tolist() == [o for _t, _p, o in data]
        expected = np.array([t / 1e7 for t, _p, _o in data])
        if fmt == "azure":  # datetimes are relative to the first row
            expected = expected - expected[0]
        np.testing.assert_allclose(trace.arrival_s, expected, rtol=0, atol=1e-6)
        if fmt == "mooncake":
            first = next(iter(trace))
            assert first.prefix_block_hashes == tuple(range(-(-data[0][1] // 512)))
