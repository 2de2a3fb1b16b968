"""Random search over a parametric scheduler's knobs with the policy lab (no LLM needed).

Run: ``python examples/policy_search.py [--candidates 12] [--suite chat] [--workers 2]``.

The loop an automated policy search runs, end to end through the public API:

1. draw candidate knob settings for ``KnobScheduler`` (below: a token budget, a sequence cap,
   and how strongly short prompts jump the queue);
2. screen every candidate in the suite's fast mode (one seed, a quarter of the requests);
3. re-evaluate the best three in the full mode (every seed and request);
4. compare the winner with the suite's reference policy (vLLM's scheduler), paired by
   scenario and seed, and print the verdict.

Each evaluation runs in a forked, time- and memory-limited worker, so a bad candidate costs
one failed score, not the search. The workers load this file by path; the search itself only
runs under ``__main__``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from servesim.engine.batch import Batch
from servesim.engine.schedulers import ReplicaScheduler
from servesim.engine.sequence import Seq
from servesim.engine.state import ReplicaState


class KnobScheduler(ReplicaScheduler):
    """Chunked prefill (decodes first) with a queue ordered by ``arrival + w * prompt``:
    ``w = 0`` is FCFS, a large ``w`` is shortest-prompt-first; any finite ``w`` ages, so no
    request starves. ``w`` is ``options["prompt_weight_s_per_ktok"]`` (seconds of queue
    priority per 1,000 prompt tokens)."""

    def __init__(self, config: Any, *, max_model_len: int) -> None:
        super().__init__(config, max_model_len=max_model_len)
        self.weight_s_per_token = float(config.options.get("prompt_weight_s_per_ktok", 0)) / 1e3

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        return self.decodes_first(now, state, allow_swap=True, admit_after_preempt=False)

    def _key(self, seq: Seq) -> tuple[float, int]:
        request = seq.request
        return request.arrival_s + self.weight_s_per_token * seq.num_prompt_tokens, seq.sid

    def peek_waiting(self, state: ReplicaState) -> Seq | None:
        return min(state.waiting, key=self._key) if state.waiting else None

    def pop_waiting(self, state: ReplicaState) -> Seq:
        seq = min(state.waiting, key=self._key)
        state.waiting.remove(seq)
        return seq


def candidate(rng: np.random.Generator, index: int) -> dict[str, Any]:
    """A random knob setting as a policy mapping (``servesim.lab.policy``)."""
    budget = int(rng.choice([256, 512, 1024, 2048, 4096]))
    seqs = int(rng.choice([32, 64, 128, 256]))
    weight = float(np.round(rng.uniform(0.0, 3.0), 2))
    return {
        "name": f"knob{index:02d}(budget={budget},seqs={seqs},w={weight:g})",
        "scheduler": {
            "kind": "custom",
            "path": f"{Path(__file__).resolve()}:KnobScheduler",
            "max_num_seqs": seqs,
            "max_num_batched_tokens": budget,
            "options": {"prompt_weight_s_per_ktok": weight},
        },
    }


def main() -> None:
    """Screen, confirm, compare; print the best policy and its score against the baseline."""
    from servesim.lab import compare, evaluate_many, load_suite
    from servesim.planner.executors import LocalPoolExecutor

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--suite", default="chat")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    candidates = [candidate(rng, i) for i in range(args.candidates)]
    reference = load_suite(args.suite).baselines[0]
    pool = LocalPoolExecutor(args.workers)  # one pool for the whole search: no restarts
    try:
        screened = evaluate_many(candidates, args.suite, "goodput", fast=True, executor=pool)
        for score in sorted(screened, key=lambda s: -s.utility):
            print(f"screen  {score.line()}")
        top = sorted(range(len(candidates)), key=lambda i: -screened[i].utility)[:3]
        confirmed = evaluate_many([candidates[i] for i in top], args.suite, executor=pool)
        for score in confirmed:
            print(f"full    {score.line()}")
        best = max(range(len(top)), key=lambda k: confirmed[k].utility)
        winner = candidates[top[best]]
        result = compare(reference, winner, args.suite, "goodput", executor=pool)
    finally:
        pool.close()
    print(f"best policy: {winner['name']}")
    print(f"its score:   {confirmed[best].line()}")
    print(f"vs {reference}:  {result.verdict}")


if __name__ == "__main__":
    main()
