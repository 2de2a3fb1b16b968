"""The planner on a real multi-process Ray cluster: a head and a worker node started on this
machine with ``ray start`` (stopped afterwards), the same results as the process pool."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import small_scenario
from servesim.planner.executors import LocalPoolExecutor
from servesim.planner.search import SearchOptions, run_search
from servesim.planner.space import SearchSpace

SPACE = SearchSpace(gpus=(("h100-sxm", 2), ("a100-80gb", 2)), tp_options=(1, 2), pp_options=(1,))
# Ray >= 2.5x turns on token authentication for clusters started with `ray start`; a throwaway
# cluster on loopback, started and stopped by this test, runs without it.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray(*args: str) -> None:
    env = {**os.environ, **RAY_ENV}
    subprocess.run(["ray", *args], env=env, check=True, capture_output=True, timeout=180)


@pytest.fixture
def ray_cluster() -> Iterator[str]:
    """``ray start --head`` plus one worker node (one CPU each), on 127.0.0.1."""
    pytest.importorskip("ray", reason="ray is not installed (pip install 'servesim[ray]')")
    if shutil.which("ray") is None:
        pytest.skip("the ray command is not on PATH")
    address = f"127.0.0.1:{_free_port()}"
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        _ray("start", "--head", "--port", address.split(":")[1], *common)
        _ray("start", "--address", address, *common)
        yield address
    finally:
        _ray("stop", "--force")


_CHILD = """
import sys, time
sys.path[:0] = {paths!r}
from conftest import small_scenario
from servesim.planner.executors import make_executor
from servesim.planner.search import SearchOptions, run_search
from test_plan_ray_cluster import SPACE, outcomes
import ray
executor = make_executor("ray", ray_address={address!r})
try:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    start = time.perf_counter()
    report = run_search(
        small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05), SPACE, options=SearchOptions(),
        executor=executor,
    )
    print("SECONDS", time.perf_counter() - start)
    print("NODES", len(nodes))
    print("OUTCOMES", repr(outcomes(report)))
finally:
    executor.close()
"""


def outcomes(report: object) -> list[tuple[object, ...]]:
    """What must not depend on the executor: each plan's status, reason, capacity, metrics."""
    return [
        (r.plan.key(), r.status, r.reason, r.capacity_per_s, r.metrics)
        for r in report.results  # type: ignore[attr-defined]
    ]


@pytest.mark.slow
def test_ray_cluster_gives_the_process_pools_results(ray_cluster: str) -> None:
    # The Ray client runs in a child process: Ray keeps its auth settings per process, and
    # this test's throwaway cluster must not leak them into other tests' local Ray.
    scenario = small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05)
    pool = LocalPoolExecutor(2)
    start = time.perf_counter()
    try:
        pooled = run_search(scenario, SPACE, options=SearchOptions(), executor=pool)
    finally:
        pool.close()
    pool_s = time.perf_counter() - start
    here = str(Path(__file__).parent)
    code = _CHILD.format(paths=[here, str(Path(here).parents[1])], address=ray_cluster)
    env = {**os.environ, **RAY_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.stdout.splitlines()
             if line.split(" ", 1)[0] in ("SECONDS", "NODES", "OUTCOMES")}  # fmt: skip
    assert lines["NODES"] == "2"  # head and worker: a multi-node cluster
    assert lines["OUTCOMES"] == repr(outcomes(pooled))
    assert pooled.num_simulated > 1
    print(
        f"\n{len(pooled.results)} plans: process pool {pool_s:.1f} s, "
        f"ray (2 nodes x 1 CPU) {float(lines['SECONDS']):.1f} s"
    )
