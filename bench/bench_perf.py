"""Throughput of ``RooflinePerfModel.iteration_time``: cached and uncached queries per second.

Run: ``python bench/bench_perf.py``. Targets: >= 200,000 cached and >= 20,000 uncached
queries/s on one core (Llama-3.1-70B, TP4, H100).
"""

from __future__ import annotations

import time

import numpy as np

from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model


def _batches(count: int, seed: int) -> list[BatchShape]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        decode = rng.integers(1, 4096, size=int(rng.integers(0, 128))).tolist()
        prefill = (
            [(int(rng.integers(16, 2048)), int(rng.integers(0, 4096)))]
            if rng.random() < 0.3
            else []
        )
        out.append(BatchShape.from_lists(prefill, decode))
    return out


def main() -> None:
    """Print cached and uncached query rates."""
    plan = ReplicaPlan(resolve_model("llama-3.1-70b"), get_gpu("h100-sxm"), tp=4)
    batches = _batches(20_000, seed=1)
    model = RooflinePerfModel()
    start = time.perf_counter()
    for batch in batches:
        model.iteration_time(plan, batch)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(10):
        for batch in batches:
            model.iteration_time(plan, batch)
    warm = time.perf_counter() - start
    # uncached batch shapes whose token counts were seen before (the engine's steady state)
    fresh = [
        BatchShape(
            b.num_prefill_seqs,
            b.num_prefill_tokens,
            b.prefill_chunk_x_context + 1,
            b.prefill_chunk_sq,
            b.max_prefill_chunk_tokens,
            b.num_decode_seqs,
            b.decode_context_tokens + 1,
            b.max_decode_context_tokens + 1,
        )
        for b in batches
    ]
    start = time.perf_counter()
    for batch in fresh:
        model.iteration_time(plan, batch)
    new_shape = time.perf_counter() - start
    print(f"uncached (cold, new token counts too): {len(batches) / cold:,.0f} queries/s")
    print(f"uncached (new batch shape, token count seen): {len(fresh) / new_shape:,.0f} queries/s")
    print(f"cached: {10 * len(batches) / warm:,.0f} queries/s")


if __name__ == "__main__":
    main()
