"""The planner on a real multi-process Ray cluster: a head and a worker node started on this
machine with ``ray start`` (stopped afterwards), the same results as the process pool."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


def _ray_start(*args: str) -> int:
    """Run ``ray start ARGS`` in a new session; the id of the process group its daemons
    keep (``ray start`` returns once they run)."""
    env = {**os.environ, **RAY_ENV}
    # each node's agent listens on a fixed port by default (52365): a free one, so that two
    # test runs' clusters (and the two nodes here) do not collide
    ports = ["--dashboard-agent-listen-port", str(_free_port())]
    proc = subprocess.Popen(
        ["ray", "start", *args, *ports],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out, _ = proc.communicate(timeout=180)
    if proc.returncode != 0:
        _kill_group(proc.pid)
        raise RuntimeError(f"ray start failed: {out.decode(errors='replace')[-2000:]}")
    return proc.pid


def _kill_group(pgid: int) -> None:
    """SIGKILL the daemons one ``ray start`` left (what ``ray stop --force`` sends, but to
    this cluster only: ``ray stop`` would also kill every other Ray on the machine)."""
    with contextlib.suppress(ProcessLookupError):  # none left
        os.killpg(pgid, signal.SIGKILL)


_TEMP_ROOTS: dict[str, str] = {}  # cluster address -> RAY_TMPDIR that discovers it


@pytest.fixture
def ray_cluster() -> Iterator[str]:
    """``ray start --head`` plus one worker node (one CPU each), on 127.0.0.1, in a temp dir
    of its own; its address is passed explicitly to every client."""
    pytest.importorskip("ray", reason="ray is not installed (pip install 'servesim[ray]')")
    if shutil.which("ray") is None:
        pytest.skip("the ray command is not on PATH")
    address = f"127.0.0.1:{_free_port()}"
    # short: Ray's unix sockets live under it (a socket path has at most 107 bytes); named
    # ROOT/ray, where Ray run with RAY_TMPDIR=ROOT finds the cluster (the isolation test)
    root = tempfile.mkdtemp(prefix="srt", dir="/tmp")
    temp_dir = _TEMP_ROOTS[address] = os.path.join(root, "ray")
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    head = ["--head", "--port", address.split(":")[1], "--temp-dir", temp_dir]
    head += ["--include-dashboard", "false"]
    groups: list[int] = []
    try:
        groups.append(_ray_start(*head, *common))
        groups.append(_ray_start("--address", address, *common))
        yield address
    finally:
        for pgid in groups:
            _kill_group(pgid)
        shutil.rmtree(root, ignore_errors=True)
        del _TEMP_ROOTS[address]


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


_LOCAL_CHILD = """
import ray
from servesim.planner.executors import make_executor
executor = make_executor("ray", num_workers=1)
try:
    print("GCS", ray.get_runtime_context().gcs_address)
    print("NODES", len([n for n in ray.nodes() if n["Alive"]]))
finally:
    executor.close()
"""


@pytest.mark.slow
def test_local_ray_never_joins_a_cluster_running_on_the_machine(ray_cluster: str) -> None:
    """Without an address, the executor starts a Ray of its own: Ray's default would join the
    cluster last started here (another test run's), so concurrent runs captured each other.
    The child looks where that cluster advertises itself (``RAY_TMPDIR/ray``)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    root = os.path.dirname(_TEMP_ROOTS[ray_cluster])
    assert os.path.isfile(os.path.join(root, "ray", "ray_current_cluster"))
    out = subprocess.run(
        [sys.executable, "-c", _LOCAL_CHILD],
        env={**env, **RAY_ENV, "RAY_TMPDIR": root},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["NODES"] == "1"  # its own single node, not the two-node cluster
    assert lines["GCS"] != ray_cluster
