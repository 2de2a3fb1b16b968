"""Every real trace in shared/data parses with the row counts and units its PROVENANCE states."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from servesim.core.rng import RandomStreams
from servesim.workload import WorkloadConfig, describe, load_trace

# (relative path, format detected, rows) from each folder's PROVENANCE.md.
TRACES = [
    ("traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv", "azure", 8819),
    ("traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure", 19366),
    ("traces/vidur/splitwise_code.csv", "vidur", 8819),
    ("traces/vidur/splitwise_conv.csv", "vidur", 19366),
    (
        "traces/vidur/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
        "vidur-lengths",
        28257,
    ),
    (
        "traces/sharegpt_sarathi/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
        "vidur-lengths",
        30731,
    ),
    ("traces/mooncake/conversation_trace.jsonl", "mooncake", 12031),
    ("traces/mooncake/synthetic_trace.jsonl", "mooncake", 3993),
    ("traces/apex_plus/llama/lmsys_05.jsonl", "apex", 1024),
    ("traces/apex_plus/llama/lmsys_025.jsonl", "apex", 1024),
    ("traces/apex_plus/llama/creation_05.jsonl", "apex", 512),
    ("traces/apex_plus/llama/creation_025.jsonl", "apex", 512),
    ("traces/apex_plus/llama/summarization_05.merged_from_4DP2TP_shards.jsonl", "apex", 1302),
    ("traces/apex_plus/llama/summarization_025.merged_from_4DP2TP_shards.jsonl", "apex", 1302),
    ("traces/apex_plus/mistral/lmsys_05.jsonl", "apex", 1024),
    ("traces/apex_plus/mistral/lmsys_025.jsonl", "apex", 1024),
    ("traces/apex_plus/mistral/creation_05.jsonl", "apex", 725),
    ("traces/apex_plus/mistral/creation_025.jsonl", "apex", 725),
    ("traces/apex_plus/mistral/summarization_05.merged_from_4DP2TP_shards.jsonl", "apex", 1039),
    ("traces/apex_plus/mistral/summarization_025.merged_from_4DP2TP_shards.jsonl", "apex", 1039),
]


@pytest.mark.parametrize(("rel", "fmt", "rows"), TRACES, ids=[t[0].split("/")[-1] for t in TRACES])
def test_trace_row_counts(shared_data: Path, rel: str, fmt: str, rows: int) -> None:
    trace = load_trace(shared_data / rel)
    assert trace.format.name == fmt
    assert len(trace) == rows
    assert trace.num_skipped_rows == 0 and trace.num_capped_requests == 0
    assert trace.prompt_tokens.min() >= 1 and trace.output_tokens.min() >= 1
    if trace.has_arrivals:
        assert trace.arrival_s[0] == 0.0
        assert np.all(np.diff(trace.arrival_s) >= 0)


def test_every_trace_file_is_covered(shared_data: Path) -> None:
    on_disk = {
        str(p.relative_to(shared_data))
        for p in (shared_data / "traces").rglob("*")
        if p.suffix in (".csv", ".jsonl")
    }
    assert on_disk == {t[0] for t in TRACES}


def test_azure_datetime_units(shared_data: Path) -> None:
    code = load_trace(shared_data / "traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv")
    conv = load_trace(shared_data / "traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv")
    assert code.arrival_s[-1] == pytest.approx(3435.9, abs=0.1)
    assert conv.arrival_s[-1] == pytest.approx(3501.7, abs=0.1)
    # The same rows re-expressed by Vidur in relative seconds (PROVENANCE: max diff 4.5e-13 s).
    vidur = load_trace(shared_data / "traces/vidur/splitwise_code.csv")
    np.testing.assert_allclose(code.arrival_s, vidur.arrival_s, atol=1e-9)
    np.testing.assert_array_equal(code.prompt_tokens, vidur.prompt_tokens)
    assert code.arrival_s[1] == pytest.approx(0.052, abs=1e-9)  # 18:17:04.03196 - 03.97996
    assert np.median(code.prompt_tokens) == 1469 and np.median(code.output_tokens) == 13


def test_mooncake_ms_units_and_prefix_reuse(shared_data: Path) -> None:
    conv = load_trace(shared_data / "traces/mooncake/conversation_trace.jsonl")
    assert conv.arrival_s[-1] == pytest.approx(3536.999)
    assert conv.block_size == 512
    assert conv.hash_values.size == 288_500 and np.unique(conv.hash_values).size == 182_790
    first = next(iter(conv))
    assert first.prefix_block_size == 512
    assert len(first.prefix_block_hashes) == -(-first.num_prompt_tokens // 512)
    assert describe(conv).prefix_reuse_ratio == pytest.approx(0.366, abs=0.001)
    synthetic = load_trace(shared_data / "traces/mooncake/synthetic_trace.jsonl")
    assert synthetic.arrival_s[-1] == pytest.approx(1022.025)
    assert describe(synthetic).prefix_reuse_ratio == pytest.approx(0.640, abs=0.001)


def test_apex_ns_units_and_offset(shared_data: Path) -> None:
    path = shared_data / "traces/apex_plus/llama/lmsys_05.jsonl"
    raw = load_trace(path, normalize_start=False)
    assert raw.arrival_s[0] == pytest.approx(0.197890289)
    assert raw.arrival_s[-1] == pytest.approx(2024, abs=1)
    assert load_trace(path).arrival_s[0] == 0.0
    assert len(raw) / raw.arrival_s[-1] == pytest.approx(0.5, rel=0.05)


def test_served_traces_match_runs_csv(shared_data: Path) -> None:
    folder = shared_data / "validation/apex_vllm_llama70b"
    with (folder / "runs.csv").open() as handle:
        runs = {Path(r["source_file"]).stem: int(r["n_requests"]) for r in csv.DictReader(handle)}
    files = sorted((folder / "served_traces").glob("*.jsonl"))
    assert len(files) == 46
    for path in files:
        trace = load_trace(path)
        assert trace.format.name == "served"
        assert len(trace) == runs[path.stem], path.name
    raw = load_trace(
        folder / "served_traces/llama_lmsys_05_validation_8TP.jsonl", normalize_start=False
    )
    assert raw.arrival_s[0] == pytest.approx(0.197890289)
    assert raw.prompt_tokens[0] == 175 and raw.output_tokens[0] == 1


def test_rate_scale_window_and_first_n(shared_data: Path) -> None:
    path = shared_data / "traces/vidur/splitwise_conv.csv"
    full = load_trace(path)
    fast = load_trace(path, rate_scale=2.0)
    np.testing.assert_allclose(fast.arrival_s, full.arrival_s / 2.0)
    window = load_trace(path, start_s=600.0, end_s=1200.0)
    inside = (full.arrival_s >= 600.0) & (full.arrival_s < 1200.0)
    assert len(window) == int(inside.sum())
    assert window.arrival_s[0] == 0.0 and window.arrival_s[-1] < 600.0
    first = load_trace(path, max_requests=100)
    np.testing.assert_array_equal(first.prompt_tokens, full.prompt_tokens[:100])


def test_context_cap_counts(shared_data: Path) -> None:
    path = shared_data / "traces/mooncake/conversation_trace.jsonl"
    full = load_trace(path)
    capped = load_trace(path, max_context_tokens=32768)
    over = (full.prompt_tokens + full.output_tokens) > 32768
    assert capped.num_capped_requests == int(over.sum()) > 0
    assert np.all(capped.prompt_tokens + capped.output_tokens <= 32768)
    assert len(capped) == len(full)
    first = next(r for r in capped if r.num_prompt_tokens >= 32767)
    assert len(first.prefix_block_hashes) == -(-first.num_prompt_tokens // 512)
    skipped = load_trace(path, max_context_tokens=32768, over_limit="skip")
    assert len(skipped) == len(full) - int(over.sum())
    assert skipped.skipped_by_problem == {"over the context limit": int(over.sum())}


def test_azure_load_shape_replayed_at_double_rate(shared_data: Path) -> None:
    path = shared_data / "traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv"
    config = WorkloadConfig(
        arrival={"kind": "trace_rate", "path": str(path), "bin_s": 60.0},
        lengths={"kind": "preset", "name": "azure-conv"},
        num_requests=100_000,
    )
    base = describe(config.build(RandomStreams(0)))
    assert base.num_requests == pytest.approx(19366, rel=0.03)  # the trace's own count
    doubled = describe(config.with_rate(2 * base.rate_per_s).build(RandomStreams(0)))
    assert doubled.num_requests == pytest.approx(2 * 19366, rel=0.03)
    assert doubled.duration_s == pytest.approx(base.duration_s, rel=0.02)
