"""Multi-turn sessions share their growing prefix; parallel-sampling groups share a prompt."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest

from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload import Request, WorkloadConfig, describe
from servesim.workload.length_config import FixedDist
from servesim.workload.sessions import SessionOptions, session_turns
from servesim.workload.workload import BlockIds


def test_session_turns_hand_computed() -> None:
    # Block size 4. Turn 1: 6 input -> prompt 6 (1 full block + partial), output 3.
    # Turn 2: history 9 + 5 input = 14 -> 3 full blocks + partial; block 0 reused.
    options = SessionOptions(block_size=4, max_context_tokens=100)
    ids = BlockIds()
    turns = session_turns(np.array([6, 5, 2]), np.array([3, 2, 1]), options, ids)
    assert [t.prompt for t in turns] == [6, 14, 18]
    assert turns[0].hashes == (0, 1)  # full block 0, fresh partial id 1
    assert turns[1].hashes == (0, 2, 3, 4)  # block 0 shared; blocks 1, 2 new; partial 4
    # Turn 3: 14 + 2 + 2 = 18 -> 4 full blocks (0, 2, 3 reused; 5 new) + partial 6.
    assert turns[2].hashes == (0, 2, 3, 5, 6)


def test_session_turns_hashes_lengths_and_context_limit() -> None:
    options = SessionOptions(block_size=16, max_context_tokens=200)
    turns = session_turns(np.array([50, 60, 70]), np.array([20, 30, 40]), options, BlockIds())
    # Turn 2: 50 + 20 + 60 = 130; turn 3 would be 130 + 30 + 70 = 230 (+40) > 200: it ends.
    assert [t.prompt for t in turns] == [50, 130]
    for turn in turns:
        assert len(turn.hashes) == -(-turn.prompt // 16)
    assert turns[1].hashes[: 50 // 16] == turns[0].hashes[: 50 // 16]


def _session_config(**extra: object) -> WorkloadConfig:
    return WorkloadConfig(
        arrival={"kind": "poisson", "rate_per_s": 2.0},
        lengths={
            "kind": "independent",
            "prompt": {"kind": "uniform", "min_tokens": 20, "max_tokens": 200},
            "output": {"kind": "uniform", "min_tokens": 10, "max_tokens": 100},
        },
        sessions={"mean_turns": 3, "mean_think_time_s": 5.0, "block_size": 16},
        **extra,
    )


def test_sessions_share_prefixes_in_arrival_order() -> None:
    requests = list(_session_config(num_requests=3000).build(RandomStreams(0)))
    assert [r.request_id for r in requests] == list(range(3000))
    times = [r.arrival_s for r in requests]
    assert times == sorted(times)
    by_session: dict[int, list[Request]] = defaultdict(list)
    for r in requests:
        assert r.session_id is not None and r.prefix_block_size == 16
        by_session[r.session_id].append(r)
    num_turns = [len(v) for v in by_session.values()]
    assert np.mean(num_turns) == pytest.approx(3.0, rel=0.15)
    for turns in by_session.values():
        for prev, cur in itertools.pairwise(turns):
            # turn k's prompt = previous prompt + previous output + new input (20..200)
            new_input = cur.num_prompt_tokens - prev.num_prompt_tokens - prev.num_output_tokens
            assert 20 <= new_input <= 200
            shared = prev.num_prompt_tokens // 16
            assert cur.prefix_block_hashes[:shared] == prev.prefix_block_hashes[:shared]
            assert cur.arrival_s >= prev.arrival_s
    # Different sessions never share blocks.
    owners: dict[int, int] = {}
    for r in requests:
        for h in r.prefix_block_hashes:
            assert owners.setdefault(h, r.session_id) == r.session_id  # type: ignore[arg-type]
    assert (
        describe(_session_config(num_requests=3000).build(RandomStreams(0))).prefix_reuse_ratio
        > 0.3
    )


def test_sessions_fixed_turns_and_duration() -> None:
    config = _session_config(duration_s=100.0)
    config = config.model_copy(
        update={"sessions": config.sessions.model_copy(update={"fixed_turns": True})}
    )  # type: ignore[union-attr]
    requests = list(config.build(RandomStreams(1)))
    assert requests and max(r.arrival_s for r in requests) <= 100.0


def test_parallel_sampling_groups() -> None:
    config = WorkloadConfig(preset="creation", groups={"group_size": 4}, num_requests=400)
    requests = list(config.build(RandomStreams(2)))
    assert len(requests) == 400
    groups: dict[int, list[Request]] = defaultdict(list)
    for r in requests:
        assert r.group_id is not None
        groups[r.group_id].append(r)
    assert all(len(g) == 4 for g in groups.values())
    for g in groups.values():
        assert len({r.arrival_s for r in g}) == 1
        assert len({r.num_prompt_tokens for r in g}) == 1
        assert len({r.prefix_block_hashes for r in g}) == 1
    assert len({h for g in groups.values() for h in g[0].prefix_block_hashes}) == sum(
        len(g[0].prefix_block_hashes) for g in groups.values()
    )
    # Outputs are drawn per sample.
    assert any(len({r.num_output_tokens for r in g}) > 1 for g in groups.values())
    assert describe(config.build(RandomStreams(2))).prefix_reuse_ratio == pytest.approx(0.75)


def test_shared_system_prompt_blocks() -> None:
    config = WorkloadConfig(
        arrival={"kind": "constant", "rate_per_s": 1.0},
        lengths={
            "kind": "independent",
            "prompt": {"kind": "uniform", "min_tokens": 100, "max_tokens": 300},
            "output": {"kind": "fixed", "tokens": 10},
        },
        prefix_block_size=16,
        shared_prefix_tokens=64,
        num_requests=50,
    )
    requests = list(config.build(RandomStreams(0)))
    assert all(r.prefix_block_hashes[:4] == (0, 1, 2, 3) for r in requests)
    assert len({r.prefix_block_hashes[4] for r in requests}) == 50


def test_system_prompt_and_followup_lengths() -> None:
    config = _session_config(num_requests=2000)
    sessions = config.sessions.model_copy(  # type: ignore[union-attr]
        update={"system_prompt_tokens": 100, "followup": FixedDist(tokens=7)}
    )
    requests = list(config.model_copy(update={"sessions": sessions}).build(RandomStreams(0)))
    by_session: dict[int, list[Request]] = defaultdict(list)
    for r in requests:
        # 100 // 16 = 6 full system-prompt blocks, the same ids in every session.
        assert r.prefix_block_hashes[:6] == (0, 1, 2, 3, 4, 5)
        by_session[r.session_id].append(r)  # type: ignore[index]
    for turns in by_session.values():
        assert 120 <= turns[0].num_prompt_tokens <= 300  # system 100 + input 20..200
        for prev, cur in itertools.pairwise(turns):
            assert cur.num_prompt_tokens == prev.num_prompt_tokens + prev.num_output_tokens + 7


def test_sessions_that_never_fit_raise() -> None:
    config = _session_config(num_requests=10)
    tight = config.sessions.model_copy(update={"max_context_tokens": 20})  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="no first turn that fits"):
        list(config.model_copy(update={"sessions": tight}).build(RandomStreams(0)))
    bad = config.sessions.model_copy(  # type: ignore[union-attr]
        update={"system_prompt_tokens": 50_000}
    )
    with pytest.raises(ConfigError, match="system_prompt_tokens"):
        config.model_copy(update={"sessions": bad}).build(RandomStreams(0))
