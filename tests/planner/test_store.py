"""The DuckDB store: rows written as plans finish; a killed search resumes without repeats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import small_scenario
from servesim.planner.evaluate import OK, PlanResult
from servesim.planner.search import SearchOptions, run_search
from servesim.planner.space import PlanSpec, SearchSpace
from servesim.planner.store import PlanStore, inputs_hash

SPACE = SearchSpace(gpus=(("h100-sxm", 2), ("a100-80gb", 2)), tp_options=(1, 2), pp_options=(1,))
OPTIONS = SearchOptions(exhaustive=True)

# The child runs the same search in-process and prints one line per finished simulation;
# it sleeps after each so the parent can kill it mid-search.
CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import small_scenario
    from servesim.planner.search import SearchOptions, run_search
    from servesim.planner.space import SearchSpace
    from servesim.planner.store import PlanStore

    space = SearchSpace(gpus=(("h100-sxm", 2), ("a100-80gb", 2)), tp_options=(1, 2),
                        pp_options=(1,))
    seen = [0]

    def on_progress(p):
        done = p.num_done - p.num_pruned - p.num_infeasible
        if done > seen[0]:
            seen[0] = done
            print("simulated", done, flush=True)
            time.sleep(0.2)

    store = PlanStore({store!r})
    run_search(small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05), space,
               options=SearchOptions(exhaustive=True), store=store, on_progress=on_progress)
    print("finished", flush=True)
    """
)


def _outcomes(results: list[PlanResult]) -> list[tuple[object, ...]]:
    return [(r.plan.key(), r.status, r.capacity_per_s, r.limiting, r.metrics) for r in results]


def test_round_trip_and_hash(tmp_path: Path) -> None:
    store = PlanStore(tmp_path / "s.duckdb")
    digest = store.begin_search({"a": 1})
    assert digest == inputs_hash({"a": 1}) != inputs_hash({"a": 2})
    result = PlanResult(
        PlanSpec("h100-sxm", 2), OK, capacity_per_s=3.5, limiting="ttft_p99", metrics={"x": 1.0}
    )
    store.put(digest, result)
    store.put(digest, result)  # replacing, not duplicating
    (back,) = store.results(digest)
    assert back.same_outcome(result)
    assert store.searches() == [(digest, {"a": 1}, 1)]
    store.close()


def test_killed_search_resumes_without_repeating_plans(tmp_path: Path) -> None:
    path = tmp_path / "plan.duckdb"
    script = CHILD.format(tests=str(Path(__file__).parent), store=str(path))
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("simulated 2"):
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    store = PlanStore(path)
    (digest, _, _), *_ = store.searches()
    done_before = {r.plan.key() for r in store.results(digest) if r.status == OK}
    assert len(done_before) >= 2
    scenario = small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05)
    resumed = run_search(scenario, SPACE, options=OPTIONS, store=store)
    store.close()
    fresh = run_search(scenario, SPACE, options=OPTIONS)

    assert resumed.num_resumed == len(done_before)
    assert not done_before & set(resumed.simulated_keys), "a finished plan was simulated again"
    assert resumed.num_simulated + resumed.num_resumed == fresh.num_simulated
    assert resumed.num_simulated < fresh.num_simulated
    assert _outcomes(resumed.results) == _outcomes(fresh.results)
    assert [r.plan for r in resumed.ranked] == [r.plan for r in fresh.ranked]
