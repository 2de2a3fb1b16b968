"""Stream a million requests lazily: requests per second and peak memory.

Usage: ``python bench/bench_workload_stream.py [NUM_REQUESTS]`` (default 1,000,000).

Measures, for a synthetic workload (sharegpt preset: Poisson arrivals, copula lengths), the
same with multi-turn sessions, and a generated JSONL trace of the same size: wall time,
requests per second while iterating, and the peak Python heap (tracemalloc) while iterating.
A lazy stream keeps the peak in the low MB whatever the count; holding every ``Request``
would take about 200 bytes each (~200 MB for a million).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path

from servesim.core.rng import RandomStreams
from servesim.workload import Request, WorkloadConfig, load_trace


def _consume(requests: Iterable[Request]) -> int:
    count = 0
    last = -1.0
    for request in requests:
        assert request.arrival_s >= last
        last = request.arrival_s
        count += 1
    return count


def measure(label: str, make: Callable[[], Iterable[Request]]) -> None:
    """Build with ``make()`` and iterate: timed without tracing, then again under tracemalloc
    for the peak heap (tracing slows Python several-fold, so it is kept out of the timing)."""
    start = time.perf_counter()
    workload = make()
    built = time.perf_counter()
    count = _consume(workload)
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    _consume(make())
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{label:34s} {count:>9,} requests  {elapsed:6.2f} s  "
        f"{count / elapsed:>10,.0f} req/s  (build {built - start:5.2f} s)  "
        f"peak heap {peak / 2**20:7.1f} MiB"
    )


def _write_trace(path: Path, num: int) -> None:
    with path.open("w") as handle:
        for i in range(num):
            record = {
                "arrival_time_s": i * 0.01,
                "prompt_tokens": 100 + i % 900,
                "output_tokens": 1 + i % 300,
            }
            handle.write(json.dumps(record) + "\n")


def main(argv: list[str]) -> None:
    """Run the three measurements."""
    num = int(argv[1]) if len(argv) > 1 else 1_000_000
    streams = RandomStreams(0)
    measure(
        "synthetic sharegpt (Poisson)",
        lambda: WorkloadConfig(preset="sharegpt-vidur", num_requests=num).build(streams),
    )
    measure(
        "sessions (4 turns, 16-token blocks)",
        lambda: WorkloadConfig(preset="lmsys", sessions={"mean_turns": 4}, num_requests=num).build(
            streams
        ),
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "served.jsonl"
        _write_trace(path, num)
        measure(
            f"trace JSONL ({path.stat().st_size / 2**20:.0f} MiB), load+iterate",
            lambda: load_trace(path),
        )


if __name__ == "__main__":
    main(sys.argv)
