"""Speculative decoding and multi-LoRA through the public API, the CLI and the contracts."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from servesim.api import simulate
from servesim.cli import main
from servesim.engine import CustomSchedulerConfig
from servesim.engine.config import SpeculativeConfig
from servesim.engine.contracts import ContractError
from tests.engine.fakes import LinearPerf, poisson_requests, run
from tests.engine.fakes import setup as make_setup

BASE: dict[str, Any] = {
    "model": "llama-3.1-8b",
    "hardware": {"gpu": "h100-sxm", "engine": "vllm-v1"},
    "workload": {"preset": "sharegpt-vllm-bench", "rate_per_s": 1.0},
    "num_requests": 30,
    "seed": 0,
}


def test_off_is_the_plain_run_and_on_is_deterministic() -> None:
    plain = simulate(BASE).summary
    assert simulate({**BASE, "speculative": None, "lora": None}).summary == plain
    eagle = {**BASE, "speculative": {"method": "eagle"}}
    first = simulate(eagle).summary
    assert simulate(eagle).summary == first
    # low load: ~2.7 tokens per step for a small extra step time
    assert 1.5 < (plain.tpot.mean_s or 0) / (first.tpot.mean_s or 1) < 2.7
    assert first.total_output_tokens == plain.total_output_tokens


def test_mtp_and_draft_model_run() -> None:
    mtp = simulate({**BASE, "speculative": {"method": "mtp", "num_speculative_tokens": 1}})
    draft = {"method": "draft", "draft_model": "llama-3.2-1b", "acceptance": "expected"}
    small = simulate({**BASE, "speculative": draft})
    for result in (mtp, small):
        assert result.summary.num_completed == 30


def test_lora_through_the_api() -> None:
    config = {
        **BASE,
        "workload": {**BASE["workload"], "tags": {"num_adapters": 10, "adapter_skew": 1.0}},
        "lora": {"max_loras": 2, "rank": 8},
    }
    result = simulate(config)
    assert result.summary.num_completed == 30
    assert result.records.counters["lora_loads"] >= 2


def test_bad_sections_are_refused() -> None:
    with pytest.raises(ValidationError):
        SpeculativeConfig(num_speculative_tokens=0)
    with pytest.raises(ValidationError):
        simulate({**BASE, "lora": {"target_modules": ["lm_head"]}})


def test_cli_runs_a_yaml_with_both_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(
        textwrap.dedent(
            """
            model: llama-3.1-8b
            num_requests: 10
            speculative: {method: eagle, num_speculative_tokens: 2}
            lora: {max_loras: 4}
            workload: {preset: sharegpt-vllm-bench, tags: {num_adapters: 5}}
            """
        )
    )
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--config", str(path)])
    assert not info.value.code
    assert "TPOT" in capsys.readouterr().out
    path.write_text("model: llama-3.1-8b\nspeculative: {method: draft}\n")
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--config", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "draft_model" in err and "Traceback" not in err


def test_a_scheduler_counting_one_token_per_speculative_decode_breaks_the_budget(
    tmp_path: Path,
) -> None:
    path = tmp_path / "one_token.py"
    path.write_text(
        textwrap.dedent(
            """
            from servesim.engine import ReplicaScheduler

            class OneToken(ReplicaScheduler):
                def schedule(self, now, state):
                    decodes = self.decode_step(state, self.token_budget)
                    prefills = []
                    # charges a decode one token, as without speculation
                    budget = self.token_budget - len(decodes)
                    budget = self.continue_prefills(state, budget, prefills)
                    self.admit_waiting(now, state, budget, prefills)
                    return self.make_batch(state, prefills, decodes)
            """
        )
    )
    sched = CustomSchedulerConfig(path=f"{path}:OneToken", max_num_batched_tokens=64)
    requests = poisson_requests(20, 200.0, 100, 40, seed=1)
    run(requests, LinearPerf(), make_setup(sched))  # fine without speculation
    spec = dataclasses.replace(make_setup(sched), speculative=SpeculativeConfig())
    with pytest.raises(ContractError) as info:
        run(requests, LinearPerf(), spec)
    assert info.value.rule == "token-budget"
