"""Autoscaling policies: the protocol, the built-ins' rules by hand, a user policy by path,
the decision contract, and an autoscaler driven through nothing but a live-state object."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
from servesim.cluster.autoscale import Autoscaler
from servesim.cluster.config import AutoscaleConfig
from servesim.cluster.scaling import PoolState, TargetPolicy, ThresholdPolicy, make_scaling_policy
from servesim.cluster.stats import ClusterStats
from servesim.core.errors import ConfigError, UnknownNameError
from servesim.core.events import EventLoop
from servesim.engine.contracts import ContractError
from servesim.engine.simulation import ReplicaView
from servesim.perf import RooflinePerfModel
from servesim.workload.request import Request


def _views(*queued: int) -> tuple[ReplicaView, ...]:
    return tuple(ReplicaView(i, q, 0, 0.0, 0) for i, q in enumerate(queued))


def _pool(views: tuple[ReplicaView, ...], starting: int = 0, stopped: int = 2) -> PoolState:
    return PoolState(0.0, views, starting, stopped, 0, 1, len(views) + starting + stopped)


def test_threshold_rule() -> None:
    policy = ThresholdPolicy()
    policy.bind(AutoscaleConfig(scale_up_threshold=4, scale_down_threshold=1))
    assert policy.decide(_pool(_views(5, 4))) == 1  # mean 4.5 > 4
    assert policy.decide(_pool(_views(5, 4), starting=1)) == 0  # one start at a time
    assert policy.decide(_pool(_views(5, 4), stopped=0)) == 0  # nothing to start
    assert policy.decide(_pool(_views(1, 0))) == -1  # mean 0.5 < 1, above the floor
    assert policy.decide(_pool(_views(0))) == 0  # at min_replicas
    assert policy.decide(_pool(())) == 1  # nobody up: infinite signal


def test_target_rule_moves_one_replica_toward_ceil_n_signal_over_target() -> None:
    policy = TargetPolicy(target=4.0)
    policy.bind(AutoscaleConfig())
    assert policy.decide(_pool(_views(8, 8))) == 1  # ceil(2 * 8 / 4) = 4 > 2
    assert policy.decide(_pool(_views(4, 4, 5))) == 0  # 4.33 / 4 within the 10% band
    assert policy.decide(_pool(_views(1, 1, 1))) == -1  # ceil(3 * 1 / 4) = 1 < 3
    assert policy.decide(_pool(_views(0))) == 0  # floor: min_replicas = 1
    assert policy.decide(_pool(_views(1, 1), starting=1)) == 0  # no drain while starting
    default = TargetPolicy()
    default.bind(AutoscaleConfig(scale_up_threshold=8, scale_down_threshold=2))
    assert default.target == 5.0  # midway between the thresholds
    with pytest.raises(ConfigError, match="target"):
        TargetPolicy(target=0)


def _step_load() -> list[Request]:
    low = [Request(i, 0.5 * i, 256, 64) for i in range(40)]  # 2 req/s for 20 s
    return low + [Request(40 + i, 20.0 + 0.02 * i, 1024, 256) for i in range(1200)]


def _autoscaled(autoscale: dict) -> object:  # type: ignore[type-arg]
    perf = RooflinePerfModel()
    pool = {"replicas": 3, "autoscale": {"min_replicas": 1, "interval_s": 2.0, **autoscale}}
    cfg = DeploymentConfig.model_validate({"pools": [pool]})
    return run_cluster(_step_load(), build_deployment(cfg, "llama-3.1-8b", perf), perf)


def test_target_policy_scales_a_pool_under_a_load_step() -> None:
    run = _autoscaled({"policy": "target", "options": {"target": 4.0}, "startup_s": 2.0})
    stats = run.stats  # type: ignore[attr-defined]
    assert stats.num_scale_ups >= 1
    starts = [t for t, _, e in stats.scale_events if e == "start"]
    assert min(starts) >= 20.0  # nothing to scale for before the step


_POLICIES = """
class Hold:
    def decide(self, pool):
        return 0

class Two:
    def decide(self, pool):
        return 2

class Up:
    def __init__(self, after_s=0.0):
        self.after_s = after_s
    def decide(self, pool):
        return 1 if pool.now_s >= self.after_s else 0
"""


def test_user_policies_by_path_and_the_decision_contract(tmp_path: Path) -> None:
    path = tmp_path / "scale.py"
    path.write_text(_POLICIES)
    held = _autoscaled({"policy": f"{path}:Hold", "scale_up_threshold": 1})
    assert held.stats.num_scale_ups == 0  # type: ignore[attr-defined]
    up = _autoscaled({"policy": f"{path}:Up", "options": {"after_s": 30.0}, "startup_s": 1.0})
    starts = [t for t, _, e in up.stats.scale_events if e == "start"]  # type: ignore[attr-defined]
    assert len(starts) == 2 and min(starts) >= 30.0  # capped at the pool's 3 replicas
    with pytest.raises(ContractError, match="decide returned 2") as err:
        _autoscaled({"policy": f"{path}:Two"})
    assert err.value.rule == "scale-decision"
    with pytest.raises(ConfigError, match="unexpected keyword"):
        make_scaling_policy(AutoscaleConfig(policy=f"{path}:Up", options={"bad": 1}))
    with pytest.raises(UnknownNameError, match="target"):
        make_scaling_policy(AutoscaleConfig(policy="nope"))


class _FakeLive:
    """Just the methods the autoscaler uses: it needs no Cluster, no engine."""

    def __init__(self, queued: list[int]) -> None:
        self.loop = EventLoop()
        self.num_replicas = len(queued)
        self.queued = queued
        self.flags = [True] * len(queued)

    @property
    def now(self) -> float:
        return self.loop.now

    def schedule(self, t: float, fn, *args, priority: int = 0) -> None:  # type: ignore[no-untyped-def]
        if t <= 20.0:
            self.loop.schedule(t, fn, *args, priority=priority)

    def is_active(self) -> bool:
        return True

    def is_routable(self, i: int) -> bool:
        return self.flags[i]

    def set_routable(self, i: int, flag: bool) -> None:
        self.flags[i] = flag

    def routable(self, members: list[int]) -> list[int]:
        return [i for i in members if self.flags[i]]

    def views(self, members: list[int]) -> list[ReplicaView]:
        return [ReplicaView(i, self.queued[i], 0, 0.0, 0) for i in members]

    def outstanding_tokens(self, i: int) -> int:
        return self.queued[i]

    def is_empty(self, i: int) -> bool:
        return self.queued[i] == 0


def test_the_autoscaler_runs_on_a_live_state_object_alone() -> None:
    live = _FakeLive([10, 0, 0])
    config = AutoscaleConfig(min_replicas=1, interval_s=1.0, startup_s=3.0, scale_up_threshold=4)
    stats = ClusterStats()
    scaler = Autoscaler([(config, [0, 1, 2])], [2e9, 2e9, 2e9], live, stats)  # type: ignore[arg-type]
    assert live.flags == [True, False, False]
    scaler.start()
    live.loop.run()
    events = [(t, r, e) for t, r, e in stats.scale_events]
    # t=1: mean 10 > 4 -> start 1, ready 2e9 / 2e9 + 3 = 4 s later; at t=5 the ready lands
    # before the round (arrival priority): mean (10 + 0) / 2 = 5 > 4 -> start 2
    assert events[:3] == [(1.0, 1, "start"), (5.0, 1, "ready"), (5.0, 2, "start")]
