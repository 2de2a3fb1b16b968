"""Prefix-cache eviction policies: CPU time of ``lru`` vs ``lfu`` on a lab suite.

Run: ``python bench/bench_eviction.py [--suite prefix-multiturn] [--repeats 3]
[--num-kv-blocks N]``. For every (scenario, seed) of the suite, simulates it in this process
with each eviction policy and prints the median CPU seconds (``time.process_time``, less
sensitive to a shared machine's load than wall time) of the whole ``simulate`` and of the
policy alone: the run's exact sequence of ``add``/``reuse``/``evict`` calls is recorded and
replayed on a fresh policy, so the policy's own cost is not lost in the simulation's. A
small ``--num-kv-blocks`` forces evictions (the suite's H100 cache rarely fills).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import servesim.engine.blocks as blocks_module
from servesim.api import simulate
from servesim.engine.eviction import EvictionPolicy, make_eviction
from servesim.lab import load_suite
from servesim.lab.suites import apply_policy, suite_runs

POLICIES = ("lru", "lfu")
Call = tuple[str, tuple[Any, ...]]


class _Recorder:
    """Delegates to a real policy and notes every call (for the replay)."""

    def __init__(self, policy: EvictionPolicy, calls: list[Call]) -> None:
        self._policy = policy
        self._calls = calls

    def add(self, key: int, depth: int) -> None:
        """Note and delegate."""
        self._calls.append(("add", (key, depth)))
        self._policy.add(key, depth)

    def reuse(self, key: int, was_evictable: bool) -> None:
        """Note and delegate."""
        self._calls.append(("reuse", (key, was_evictable)))
        self._policy.reuse(key, was_evictable)

    def evict(self) -> int:
        """Note and delegate."""
        self._calls.append(("evict", ()))
        return self._policy.evict()


def record_calls(config: dict[str, Any]) -> list[list[Call]]:
    """Each block manager's policy calls during ``simulate(config)``."""
    traces: list[list[Call]] = []
    real: Callable[[str], EvictionPolicy] = blocks_module.make_eviction

    def recording(name: str) -> EvictionPolicy:
        traces.append([])
        return _Recorder(real(name), traces[-1])  # type: ignore[return-value]

    blocks_module.make_eviction = recording  # type: ignore[assignment]
    try:
        simulate(config)
    finally:
        blocks_module.make_eviction = real  # type: ignore[assignment]
    return traces


def replay_s(name: str, traces: list[list[Call]], repeats: int) -> float:
    """Median CPU seconds of replaying ``traces`` on fresh ``name`` policies."""
    times = []
    for _ in range(repeats):
        policies = [make_eviction(name) for _ in traces]
        bound = [{h: getattr(p, h) for h in ("add", "reuse", "evict")} for p in policies]
        start = time.process_time()
        for hooks, trace in zip(bound, traces, strict=True):
            for hook, args in trace:
                hooks[hook](*args)
        times.append(time.process_time() - start)
    return statistics.median(times)


def time_run(
    config_json: str, eviction: str, repeats: int, num_kv_blocks: int | None
) -> tuple[float, float, int]:
    """Median CPU seconds of ``simulate`` and of the policy's calls alone, and evictions."""
    cache: dict[str, object] = {"eviction": eviction}
    if num_kv_blocks is not None:
        cache["num_kv_blocks"] = num_kv_blocks
    config = apply_policy(json.loads(config_json), {"cache": cache})
    times = []
    evictions = 0
    for _ in range(repeats):
        start = time.process_time()
        result = simulate(config)
        times.append(time.process_time() - start)
        evictions = int(result.records.counters.get("prefix_cache_evictions", 0))
    policy_s = replay_s(eviction, record_calls(config), repeats)
    return statistics.median(times), policy_s, evictions


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="prefix-multiturn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--num-kv-blocks",
        type=int,
        default=None,
        help="Override the KV block count (a small cache forces evictions).",
    )
    args = parser.parse_args()
    runs = suite_runs(load_suite(args.suite))
    print(
        f"{'scenario':<22}{'seed':>5}{'sim lru s':>11}{'sim lfu s':>11}{'policy lru ms':>15}"
        f"{'policy lfu ms':>15}{'lfu/lru':>9}{'evictions lru/lfu':>19}"
    )
    totals = {k: 0.0 for k in ("sim lru", "sim lfu", "pol lru", "pol lfu")}
    for run in runs:
        if run.skip_reason:
            print(f"{run.scenario:<24}{run.seed:>5}  skipped: {run.skip_reason}")
            continue
        timed = {
            p: time_run(run.config_json, p, args.repeats, args.num_kv_blocks) for p in POLICIES
        }
        for p in POLICIES:
            totals[f"sim {p}"] += timed[p][0]
            totals[f"pol {p}"] += timed[p][1]
        _print_row(run.scenario, str(run.seed), timed["lru"], timed["lfu"])
    _print_row(
        "total",
        "",
        (totals["sim lru"], totals["pol lru"], 0),
        (totals["sim lfu"], totals["pol lfu"], 0),
    )


def _print_row(
    scenario: str, seed: str, lru: tuple[float, float, int], lfu: tuple[float, float, int]
) -> None:
    ratio = lfu[1] / lru[1] if lru[1] > 0 else float("nan")
    counts = f"{lru[2]}/{lfu[2]}" if seed else ""
    print(
        f"{scenario:<22}{seed:>5}{lru[0]:>11.3f}{lfu[0]:>11.3f}{lru[1] * 1e3:>15.2f}"
        f"{lfu[1] * 1e3:>15.2f}{ratio:>9.2f}{counts:>19}"
    )


if __name__ == "__main__":
    main()
