"""The shared option declarations: flag-to-config mapping and flags kept per command."""

from __future__ import annotations

from typing import Any

import typer

from servesim.cli import app
from servesim.cli.simulate import FLAG_TO_CONFIG_PATH, config_flags


def _params(name: str) -> dict[str, Any]:
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params if p.name is not None}


def test_every_mapped_flag_is_a_simulate_parameter() -> None:
    # config_flags(locals()) skips names it does not find, so a renamed parameter would
    # silently stop overriding its config field: pin the names here.
    assert set(FLAG_TO_CONFIG_PATH) <= set(_params("simulate"))


def test_capacity_maps_its_deployment_flags() -> None:
    mapped = set(FLAG_TO_CONFIG_PATH) & set(_params("capacity"))
    assert mapped == {
        "model", "gpu", "tp", "pp", "dtype", "kv_dtype", "replicas", "disagg",
        "max_num_seqs", "max_num_batched_tokens", "chunked_prefill", "num_requests", "seed",
        "router", "chunk_size", "engine",
    }  # fmt: skip


def test_config_flags_maps_names_to_dotted_paths() -> None:
    flags = config_flags({"tp": 2, "chunked_prefill": False, "workload": "x", "seed": None})
    assert flags == {"hardware.tp": 2, "scheduler.enable_chunked_prefill": False, "seed": None}


def test_shared_flags_keep_their_names() -> None:
    for command in ("simulate", "capacity"):
        opts = {o for p in _params(command).values() for o in (*p.opts, *p.secondary_opts)}
        assert {"--model", "--gpu", "--tp", "--pp", "--kv-dtype", "--no-chunked-prefill"} <= opts
    perf = _params("perf")
    assert perf["tp"].default == 1 and perf["kv_dtype"].default == "bf16"
    # --model is optional: `perf --op ...` prices one operator without a model
    assert not perf["model"].required and "--no-cuda-graphs" in perf["cuda_graphs"].secondary_opts
