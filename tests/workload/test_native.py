"""servesim JSONL: any workload written with write_requests reads back as the same requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servesim.core.errors import TraceError
from servesim.core.rng import RandomStreams
from servesim.workload import WorkloadConfig, load_trace
from servesim.workload.native import write_requests

TAGS = {
    "classes": [{"name": "chat", "weight": 2, "priority": 2}, {"name": "batch", "weight": 1}],
    "num_users": 5,
    "num_adapters": 3,
    "adapter_fraction": 0.5,
}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"sessions": {"mean_turns": 3}, "tags": TAGS},
        {"groups": {"group_size": 3, "group_fraction": 0.5}, "tags": TAGS},
        {"prefix_block_size": 32, "shared_prefix_tokens": 100},
    ],
)
def test_round_trip_synthetic(tmp_path: Path, extra: dict) -> None:
    requests = list(
        WorkloadConfig(preset="lmsys", num_requests=500, **extra).build(RandomStreams(0))
    )
    path = tmp_path / "w.jsonl"
    assert write_requests(requests, path) == 500
    trace = load_trace(path, normalize_start=False)
    assert trace.format.name == "servesim"
    assert list(trace) == requests


def test_round_trip_mooncake(shared_data: Path, tmp_path: Path) -> None:
    original = load_trace(shared_data / "traces/mooncake/synthetic_trace.jsonl")
    path = tmp_path / "m.jsonl"
    write_requests(original, path)
    assert list(load_trace(path)) == list(original)


def test_servesim_format_errors(tmp_path: Path) -> None:
    rows = [
        {
            "arrival_s": 0.0,
            "num_prompt_tokens": 40,
            "num_output_tokens": 2,
            "prefix_block_hashes": [1, 2, 3],
            "prefix_block_size": 16,
        },
        {
            "arrival_s": 1.0,
            "num_prompt_tokens": 40,
            "num_output_tokens": 2,
            "prefix_block_hashes": [1, 2],
            "prefix_block_size": 32,
        },
        {"arrival_s": 2.0, "num_prompt_tokens": 4, "num_output_tokens": 2, "priority": "high"},
        {"arrival_s": 3.0, "num_prompt_tokens": 4, "num_output_tokens": 2, "slo_class": ""},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TraceError, match=r":2 column 'prefix_block_size': 32 differs"):
        load_trace(path)
    trace = load_trace(path, skip_bad_rows=True)
    assert len(trace) == 1
    assert set(trace.skipped_by_problem) == {
        "inconsistent prefix_block_size",
        "not an integer",
        "bad slo_class",
    }
