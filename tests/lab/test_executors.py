"""Results do not depend on the executor: in-process, process pool and Ray give the same."""

from __future__ import annotations

import pytest

from servesim.lab import compare, evaluate
from servesim.planner.executors import LocalPoolExecutor


def test_inline_and_process_pool_give_identical_scores(tiny: str, pol: str) -> None:
    inline = evaluate(pol + "Fcfs", tiny, diagnostics=True)
    pool = LocalPoolExecutor(2)
    try:
        pooled = evaluate(pol + "Fcfs", tiny, executor=pool, diagnostics=True)
        again = evaluate(pol + "Fcfs", tiny, executor=pool, diagnostics=True)  # reused workers
    finally:
        pool.close()
    unisolated = evaluate(pol + "Fcfs", tiny, isolate=False, diagnostics=True)
    assert inline.to_json() == pooled.to_json() == again.to_json() == unisolated.to_json()


def test_comparisons_are_identical_across_executors(tiny: str) -> None:
    inline = compare("vllm", "sarathi", tiny)
    pooled = compare("vllm", "sarathi", tiny, executor="process", num_workers=2)
    assert inline.to_json() == pooled.to_json()


@pytest.mark.slow
def test_ray_gives_the_same_score(tiny: str, pol: str) -> None:
    pytest.importorskip("ray")
    from servesim.planner.executors import RayExecutor

    inline = evaluate(pol + "Fcfs", tiny, seeds=[0])
    ray = RayExecutor(num_cpus=2)
    try:
        remote = evaluate(pol + "Fcfs", tiny, seeds=[0], executor=ray)
    finally:
        ray.close()
    assert remote.to_json() == inline.to_json()
