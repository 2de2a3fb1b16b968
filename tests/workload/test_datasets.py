"""Benchmark datasets: vllm's random lengths, shared-prefix groups as a workload, EOS stops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from servesim.core.rng import RandomStreams
from servesim.workload import WorkloadConfig


def test_random_dataset_bounds_as_vllm() -> None:
    cfg = WorkloadConfig(
        arrival={"kind": "immediate"},
        lengths={"kind": "random", "input_len": 1000, "output_len": 100, "range_ratio": 0.25,
                 "prefix_len": 64},
        num_requests=4000,
    )  # fmt: skip
    requests = cfg.build(RandomStreams(0)).head(4000)
    prompts = np.array([r.num_prompt_tokens for r in requests])
    outputs = np.array([r.num_output_tokens for r in requests])
    assert prompts.min() >= 64 + math.floor(750) and prompts.max() <= 64 + math.ceil(1250)
    assert outputs.min() >= 75 and outputs.max() <= 125
    assert all(r.arrival_s == 0.0 for r in requests)
    # The fixed prefix is shared: every prompt opens with the same 4 block ids (64 / 16).
    assert {r.prefix_block_hashes[:4] for r in requests} == {requests[0].prefix_block_hashes[:4]}


def test_shared_prefix_workload_cycles_group_prompts() -> None:
    cfg = WorkloadConfig(shared_prefix={}, rate_per_s=5.0, num_requests=200)
    requests = cfg.build(RandomStreams(0)).head(200)
    assert len(requests) == 200 and requests[0].num_prompt_tokens == 566
    assert requests[1].arrival_s - requests[0].arrival_s == pytest.approx(0.2)
    assert requests[0].prefix_block_hashes == requests[100].prefix_block_hashes  # 100 prompts
    assert requests[0].prefix_block_hashes[:6] == requests[9].prefix_block_hashes[:6]  # group


def test_eos_stopping_caps_outputs_at_the_natural_length() -> None:
    base = {"arrival": {"kind": "immediate"}, "num_requests": 500,
            "lengths": {"kind": "random", "input_len": 100, "output_len": 200}}  # fmt: skip
    eos = WorkloadConfig(
        **base, client={"ignore_eos": False, "eos_output": {"kind": "uniform", "min_tokens": 1,
                                                           "max_tokens": 300}}
    )  # fmt: skip
    outputs = np.array([r.num_output_tokens for r in eos.build(RandomStreams(0)).head(500)])
    assert outputs.max() <= 200 and outputs.min() >= 1 and (outputs < 200).mean() > 0.5
    exact = WorkloadConfig(**base).build(RandomStreams(0)).head(500)
    assert {r.num_output_tokens for r in exact} == {200}
    with pytest.raises(ValidationError, match="eos_output"):
        WorkloadConfig(**base, client={"ignore_eos": False})


def test_random_dataset_with_a_rate_is_poisson() -> None:
    """`--dataset random --rate 4`: a rate without a preset is a Poisson process."""
    from servesim.core.rng import RandomStreams
    from servesim.workload.config import WorkloadConfig

    cfg = WorkloadConfig.model_validate(
        {"lengths": {"kind": "random", "input_len": 64, "output_len": 8}, "rate_per_s": 4.0,
         "num_requests": 4000}
    )  # fmt: skip
    arrivals = [r.arrival_s for r in cfg.build(RandomStreams(0))]
    mean_gap = arrivals[-1] / (len(arrivals) - 1)
    assert abs(mean_gap - 0.25) < 0.25 * 0.05
