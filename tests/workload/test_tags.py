"""SLO classes, tenants and adapters: shares as configured, shared within sessions/groups."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload import WorkloadConfig
from servesim.workload.tags import RequestClass, TaggedWorkload, TagOptions, _mix64

TAGS = {
    "classes": [
        {"name": "interactive", "weight": 3, "priority": 1},
        {"name": "batch", "weight": 1},
    ],
    "num_users": 10,
    "user_skew": 1.0,
    "num_adapters": 4,
    "adapter_fraction": 0.5,
}


def test_class_user_adapter_shares() -> None:
    config = WorkloadConfig(preset="lmsys", tags=TAGS, num_requests=20_000)
    requests = list(config.build(RandomStreams(0)))
    classes = Counter(r.slo_class for r in requests)
    assert classes["interactive"] / len(requests) == pytest.approx(0.75, abs=0.02)
    assert all(r.priority == (1 if r.slo_class == "interactive" else 0) for r in requests)
    users = Counter(r.user_id for r in requests)
    assert set(users) == set(range(10))
    # Zipf(1) over 10 users: P(user 0) = 1 / H_10 = 0.341, P(user 1) = 0.171.
    assert users[0] / len(requests) == pytest.approx(0.341, abs=0.02)
    assert users[1] / len(requests) == pytest.approx(0.171, abs=0.02)
    with_adapter = [r for r in requests if r.adapter_id is not None]
    assert len(with_adapter) / len(requests) == pytest.approx(0.5, abs=0.02)
    assert {r.adapter_id for r in with_adapter} == {f"adapter-{i}" for i in range(4)}
    # Lengths and arrivals are untouched by tagging.
    plain = list(WorkloadConfig(preset="lmsys", num_requests=20_000).build(RandomStreams(0)))
    assert [(r.arrival_s, r.num_prompt_tokens) for r in requests] == [
        (r.arrival_s, r.num_prompt_tokens) for r in plain
    ]


def test_sessions_and_groups_share_tags() -> None:
    for extra in ({"sessions": {"mean_turns": 4}}, {"groups": {"group_size": 3}}):
        config = WorkloadConfig(preset="lmsys", tags=TAGS, num_requests=3000, **extra)
        owners: dict[tuple[str, int], set] = defaultdict(set)
        for r in config.build(RandomStreams(1)):
            key = ("s", r.session_id) if r.session_id is not None else ("g", r.group_id)
            owners[key].add((r.slo_class, r.user_id, r.adapter_id))
        assert all(len(v) == 1 for v in owners.values())
        assert len({next(iter(v)) for v in owners.values()}) > 5


def test_tags_deterministic_and_seed_dependent() -> None:
    config = WorkloadConfig(preset="lmsys", tags=TAGS, num_requests=200)
    a = list(config.build(RandomStreams(3)))
    assert a == list(config.build(RandomStreams(3)))
    assert [r.user_id for r in a] != [r.user_id for r in config.build(RandomStreams(4))]


def test_bad_tags() -> None:
    inner = WorkloadConfig(num_requests=5).build(RandomStreams(0))
    with pytest.raises(ConfigError):
        TaggedWorkload(inner, TagOptions(classes=(RequestClass("a", 0.0),)), RandomStreams(0))
    with pytest.raises(ConfigError):
        TaggedWorkload(
            inner,
            TagOptions(classes=(RequestClass("a", 1), RequestClass("a", 2))),
            RandomStreams(0),
        )


def test_mix64_known_value() -> None:
    # SplitMix64 of state 0 (first output of the reference generator seeded with 0).
    assert _mix64(0) == 0xE220A8397B1DCDAF
