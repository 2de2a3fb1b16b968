"""The lab takes the new plug-in kinds: admission, prefix-cache eviction, autoscaling and MoE
expert placement resolve from names, files and mappings, land in the scenario config, score,
and are isolated like schedulers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servesim.api import simulate
from servesim.core.errors import ConfigError
from servesim.lab import evaluate, resolve_policy
from servesim.lab.objectives import run_metrics
from servesim.lab.suites import apply_policy

PLUGINS = """
class RejectOdd:
    def admit(self, request, views, now_s):
        return request.request_id % 2 == 0

class SlowGate:
    def admit(self, request, views, now_s):
        x = 0
        for i in range(3_000_000):
            x += i
        return True

class Mru:
    def __init__(self):
        self.stack = []
    def add(self, key, depth):
        self.stack.append(key)
    def reuse(self, key, was_evictable):
        if was_evictable:
            self.stack.remove(key)
    def evict(self):
        return self.stack.pop()

class Hold:
    def decide(self, pool):
        return 0

class Contiguous:
    def place(self, freq, ep, num_redundant):
        n, extra = len(freq) // ep, num_redundant // ep
        blocks = [list(range(d * n, (d + 1) * n)) for d in range(ep)]
        return [ids + ids[:extra] for ids in blocks]  # spare slots copy a device's own experts
"""


@pytest.fixture(scope="module")
def plug(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("plugins") / "plugins.py"
    path.write_text(PLUGINS)
    return f"{path}:"


def test_every_kind_resolves_from_a_file_a_name_and_a_mapping(plug: str, pol: str) -> None:
    assert resolve_policy(plug + "RejectOdd").overrides == {
        "admission": {"kind": plug + "RejectOdd"}
    }
    assert resolve_policy(plug + "Mru").overrides == {"eviction": plug + "Mru"}
    assert resolve_policy(plug + "Hold").overrides == {"autoscale": {"policy": plug + "Hold"}}
    assert resolve_policy(plug + "Contiguous").overrides == {"placement": plug + "Contiguous"}
    assert resolve_policy("lfu").overrides == {"eviction": "lfu"}
    assert resolve_policy("greedy").overrides == {"placement": "greedy"}
    assert resolve_policy("target").overrides == {"autoscale": {"policy": "target"}}
    bucket = resolve_policy(
        {"admission": {"kind": "token_bucket", "options": {"rate_per_s": 2}}, "eviction": "lfu"}
    )
    assert bucket.name == "token_bucket+lfu"
    assert bucket.overrides == {
        "admission": {"kind": "token_bucket", "options": {"rate_per_s": 2}},
        "eviction": "lfu",
    }
    with pytest.raises(ConfigError, match="is not an eviction policy"):
        resolve_policy({"eviction": pol + "Fcfs"})
    with pytest.raises(ConfigError, match="needs 'policy'"):
        resolve_policy({"autoscale": {"kind": "target"}})


def test_overrides_land_where_each_kind_lives() -> None:
    config = {
        "model": "llama-3.1-8b",
        "hardware": {"gpu": "h100-sxm"},
        "replicas": 2,
        "cache": {"enable_prefix_caching": True},
        "workload": {"preset": "sharegpt-vidur", "rate_per_s": 5.0},
        "num_requests": 40,
    }
    out = apply_policy(config, {"eviction": "lfu", "admission": {"kind": "accept_all"}})
    assert "replicas" not in out and "cache" not in out  # rewritten as its deployment
    pools = out["deployment"]["pools"]
    assert len(pools) == 1 and pools[0]["replicas"] == 2
    assert pools[0]["cache"]["eviction"] == "lfu"
    assert pools[0]["cache"]["enable_prefix_caching"] is True
    assert out["deployment"]["admission"] == {"kind": "accept_all"}
    with pytest.raises(ConfigError, match="no pool of this scenario autoscales"):
        apply_policy(config, {"autoscale": {"policy": "target"}})


def test_the_deployment_rewrite_simulates_the_same() -> None:
    config = {
        "model": "llama-3.1-8b",
        "hardware": {"gpu": "h100-sxm"},
        "replicas": 2,
        "workload": {"preset": "sharegpt-vidur", "rate_per_s": 5.0},
        "slo": {"ttft_s": 0.5, "tpot_s": 0.04},
        "num_requests": 40,
        "seed": 1,
    }
    plain = simulate(config)
    gate = {"kind": "token_bucket", "options": {"rate_per_s": 1e9, "burst": 1e9}}
    rewritten = simulate(apply_policy(config, {"admission": gate}))
    cols, want = rewritten.requests_columns(), plain.requests_columns()
    for name in want:  # every request exactly as before
        np.testing.assert_array_equal(cols[name], want[name], err_msg=name)
    # the gate sends arrivals itself with skip-ahead off: iteration rows are not merged into
    # decode runs, so sums over them (energy) may differ in the last bit
    got, ref = run_metrics(rewritten), run_metrics(plain)
    assert got == pytest.approx(ref, rel=1e-12)


def test_an_admission_policy_that_rejects_half_scores_worse(tiny: str, plug: str) -> None:
    base = evaluate("vllm", tiny, objective="goodput", seeds=[0])
    half = evaluate(plug + "RejectOdd", tiny, objective="goodput", seeds=[0])
    assert half.is_valid and base.value is not None and half.value is not None
    assert half.value < 0.7 * base.value
    for scenario in half.per_scenario().values():
        assert scenario["completed_fraction"] == pytest.approx(0.5, abs=0.05)


def test_plugins_are_timed_like_schedulers(tiny: str, plug: str) -> None:
    score = evaluate(plug + "SlowGate", tiny, seeds=[0])
    assert not score.is_valid
    failure = score.failures[0]
    assert failure.category == "timeout"
    assert "hook admit exceeded its 20 ms CPU limit" in failure.message


def test_eviction_and_placement_plugins_run_in_the_lab(plug: str, tmp_path: Path) -> None:
    suite = tmp_path / "prefix.yaml"
    suite.write_text(
        """
name: prefix
version: 1
description: prefix caching under a small KV cache, where eviction matters.
seeds: [0]
fast: {fraction: 1.0, num_seeds: 1, min_requests: 10}
baselines: [vllm]
scenarios:
  - name: sessions
    config:
      model: llama-3.1-8b
      hardware: {gpu: h100-sxm}
      cache: {enable_prefix_caching: true, num_kv_blocks: 1200}
      workload:
        preset: sharegpt-vllm-bench
        rate_per_s: 4.0
        sessions: {mean_turns: 3, mean_think_time_s: 2.0, system_prompt_tokens: 512}
      slo: {ttft_s: 0.5, tpot_s: 0.04}
    num_requests: 60
    max_time_s: 60
"""
    )
    scores = {p: evaluate(p, str(suite), seeds=[0]) for p in ("lru", "lfu", plug + "Mru")}
    assert all(s.is_valid for s in scores.values()), [s.line() for s in scores.values()]
    placed = evaluate(plug + "Contiguous", "moe-ep", fast=True)
    assert placed.is_valid, placed.line()
