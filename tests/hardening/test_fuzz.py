"""Fuzzing (issue 16): no input to the CLI, the config loader, the trace readers or the HF
config parser may end in a traceback. Every command exits 0 or 2; every library reader either
returns or raises ``ServesimError`` (or, for configs, pydantic's ``ValidationError``).

Examples are bounded (``max_examples``) so the suite stays fast; runs are tiny (a few
requests) so a value that happens to be valid costs well under a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from servesim.config import SimConfig
from servesim.core.errors import ServesimError
from servesim.specs.hf_config import parse_hf_config
from servesim.workload import load_trace

# Values people mistype, and the edges of every numeric domain.
NASTY_TEXT = [
    "", " ", "abc", "nan", "inf", "-inf", "-1", "0", "1", "2", "3", "0.5", "1.5", "-0.0",
    "1e308", "1e-300", "1e12", "99999999999999999999", "true", "None", "0x10", "１", "💥",
    "16", "64", "4096", "0.9", "1,2", "--json",
]  # fmt: skip
values = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)
FUZZ = settings(
    max_examples=int(os.environ.get("SERVESIM_FUZZ_EXAMPLES", "25")),
    # the same examples on every run: CI is deterministic (SERVESIM_FUZZ_RANDOM=1 explores)
    derandomize=not os.environ.get("SERVESIM_FUZZ_RANDOM"),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Flags of each command and the arguments that keep a valid run tiny.
SIMULATE_FLAGS = [
    "--tp", "--pp", "--gpu-memory-utilization", "--replicas", "--max-num-seqs",
    "--max-num-batched-tokens", "--chunk-size", "--rate", "--cv", "--turns", "--group-size",
    "--num-requests", "--duration-s", "--seed", "--slo-ttft-p99", "--slo-tpot-p99",
    "--min-attainment", "--slo-ttft", "--burstiness", "--max-concurrency", "--num-warmups",
    "--input-len", "--output-len", "--range-ratio", "--prefix-len", "--request-rate",
    "--model", "--gpu", "--dtype", "--kv-dtype", "--engine", "--scheduler", "--router",
    "--workload", "--arrival", "--disagg", "--prompt-lengths", "--output-lengths",
    "--host-overhead", "--kernel-stack", "--dataset", "--format", "--json-format",
    "--offload-cached-experts", "--rate-scale",
]  # fmt: skip
# flags whose valid values multiply the work of a run
SIZE_FLAGS = (
    "--num-requests", "--num-warmups", "--turns", "--group-size", "--replicas", "--max-concurrency",
)  # fmt: skip
WORKLOAD_FLAGS = [
    "--workload", "--rate", "--cv", "--arrival", "--lengths", "--prompt-lengths",
    "--output-lengths", "--turns", "--group-size", "--num-requests", "--duration-s", "--seed",
    "--rate-scale", "--max-context-tokens",
]  # fmt: skip
PERF_FLAGS = [
    "--batch", "--tp", "--pp", "--ep", "--dtype", "--kv-dtype", "--gpu-memory-utilization",
    "--max-num-batched-tokens", "--block-size", "--host-overhead", "--kernel-stack", "--gpu",
    "--op", "--m", "--n", "--k", "--seqs", "--isl", "--context",
]  # fmt: skip


def _tiny(argv: list[str], flag: str) -> list[str]:
    """Keep a valid run small: few requests unless the fuzzed flag is the count itself."""
    if flag == "--num-requests":
        return argv
    return [*argv, "--num-requests", "3"]


def _assert_clean(outcome: Any) -> None:
    assert outcome.code in (0, 2), (outcome.code, outcome.err[-3000:])
    assert "Traceback" not in outcome.err, outcome.err
    if outcome.code == 2:
        lines = outcome.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), outcome.err


@FUZZ
@given(flag=st.sampled_from(SIMULATE_FLAGS), value=values)
def test_simulate_flags_exit_0_or_2(cli, flag: str, value: str) -> None:  # type: ignore[no-untyped-def]
    # a count flag alone could be valid and large (``--num-warmups 469997`` adds that many
    # requests): cap what a valid run may cost; the refusal of bad values is what is fuzzed
    if flag in SIZE_FLAGS and value.strip().isdigit() and int(value) > 50:
        value = "-" + value
    _assert_clean(cli(_tiny(["simulate", f"{flag}={value}"], flag)))


@FUZZ
@given(flag=st.sampled_from(WORKLOAD_FLAGS), value=values)
def test_workload_describe_flags_exit_0_or_2(cli, flag: str, value: str) -> None:  # type: ignore[no-untyped-def]
    if flag == "--num-requests" and value.strip().isdigit() and int(value) > 2000:
        value = "-" + value
    argv = ["workload", "describe", f"{flag}={value}"]
    _assert_clean(cli(argv if flag == "--num-requests" else [*argv, "--num-requests", "50"]))


@FUZZ
@given(flag=st.sampled_from(PERF_FLAGS), value=values)
def test_perf_flags_exit_0_or_2(cli, flag: str, value: str) -> None:  # type: ignore[no-untyped-def]
    _assert_clean(cli(["perf", "--model", "llama-3.1-8b", f"{flag}={value}"]))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(command=st.sampled_from(["capacity", "plan"]), value=values)
def test_planner_commands_exit_0_or_2_on_bad_targets(cli, command: str, value: str) -> None:  # type: ignore[no-untyped-def]
    # Only refusals are fuzzed here (the planner's own part of issue 16 is another task's):
    # a negative target is always out of range, so no search ever starts.
    _assert_clean(cli([command, "--slo-ttft-p99", f"-{value.lstrip('-') or '1'}"]))


# A config's leaves: numbers, strings, booleans, nulls, lists and small mappings.
config_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(), st.text(max_size=8)
)
config_values = st.recursive(
    config_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
CONFIG_PATHS = [
    "model", "hardware.tp", "hardware.pp", "hardware.gpu", "hardware.dtype", "hardware.engine",
    "hardware.gpu_memory_utilization", "scheduler", "scheduler.kind", "scheduler.max_num_seqs",
    "cache", "cache.block_size", "workload", "workload.rate_per_s", "workload.preset",
    "workload.arrival", "workload.lengths", "workload.trace", "slo", "slo.ttft_s", "seed",
    "num_requests", "duration_s", "replicas", "router", "disagg", "deployment", "max_time_s",
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(paths=st.lists(st.sampled_from(CONFIG_PATHS), min_size=1, max_size=3), data=st.data())
def test_config_loader_refuses_with_servesim_or_validation_errors(
    paths: list[str], data: Any
) -> None:
    overrides = {path: data.draw(config_values) for path in paths}
    with contextlib.suppress(ServesimError, ValidationError):
        SimConfig.from_dict({}, overrides)


@settings(max_examples=60, deadline=None)
@given(text=st.binary(max_size=300))
def test_yaml_files_of_any_bytes_load_or_are_refused(text: bytes) -> None:
    from servesim.config import load_yaml

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_bytes(text)
        with contextlib.suppress(ServesimError, ValidationError):
            SimConfig.from_dict(load_yaml(path))


TRACE_KEYS = [
    "arrival_s", "num_prompt_tokens", "num_output_tokens", "priority", "priorty", "slo_class",
    "session_id", "group_id", "prefix_block_hashes", "prefix_block_size", "request_id",
    "ContextTokens", "GeneratedTokens", "StartTimeOffset", "RequestID", "timestamp",
    "input_length", "output_length", "hash_ids",
]  # fmt: skip
trace_values = config_leaves | st.lists(st.integers(-2, 10), max_size=3)
trace_rows = st.dictionaries(st.sampled_from(TRACE_KEYS), trace_values, max_size=6)


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(trace_rows, min_size=1, max_size=5), skip=st.booleans())
def test_jsonl_traces_load_or_raise_trace_errors(rows: list[dict], skip: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with contextlib.suppress(ServesimError):
            list(load_trace(path, skip_bad_rows=skip))


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".csv", ".jsonl", ".gz", ".trace"]))
def test_trace_files_of_any_bytes_load_or_raise_trace_errors(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"t{suffix}"
        path.write_bytes(data)
        with contextlib.suppress(ServesimError):
            list(load_trace(path))


LLAMA = {
    "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
    "vocab_size": 128256, "max_position_embeddings": 131072, "tie_word_embeddings": False,
}  # fmt: skip
HF_KEYS = [*LLAMA, "head_dim", "num_local_experts", "num_experts_per_tok", "sliding_window",
           "quantization_config", "text_config", "kv_lora_rank", "torch_dtype"]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from(HF_KEYS), config_values, max_size=3),
    model_type=st.sampled_from(
        ["llama", "mixtral", "deepseek_v3", "qwen2_moe", "gemma2", "phi", "x"]
    ),
)
def test_hf_config_parser_refuses_with_servesim_errors(changes: dict, model_type: str) -> None:
    cfg = {**LLAMA, "model_type": model_type, **changes}
    with contextlib.suppress(ServesimError):
        parse_hf_config(cfg, "fuzzed")


@pytest.mark.parametrize("text", ["", "[]", "null", '{"model_type": 3}', "{", '"x"'])
def test_hf_config_files_that_are_not_objects_are_one_line(cli, tmp_path: Path, text: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "config.json"
    path.write_text(text)
    _assert_clean(cli(["simulate", "--num-requests", "2", "--model", str(path)]))
