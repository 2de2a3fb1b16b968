"""Peak memory of ``servesim simulate`` by run length (issue 16: bounded memory).

Each size runs in its own subprocess (peak RSS is per process, and never shrinks), on the
default scenario (Llama-3.1-8B, one H100, ShareGPT-like traffic at its default rate), and
prints the child's peak RSS, wall time, and the summary's request count and p99 TTFT, so
runs of different lengths can be compared. Usage::

    python bench/bench_memory.py                 # 10k, 100k and 1M requests
    python bench/bench_memory.py 10000 100000    # chosen sizes
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)

# Runs in the child: simulate, then report ru_maxrss (KiB on Linux) and a few summary figures.
_CHILD = """
import json, resource, sys
from servesim.api import simulate
result = simulate({"num_requests": int(sys.argv[1]), "seed": 0})
summary = result.summary
print(json.dumps({
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "num_requests": summary.num_requests,
    "ttft_p50_s": summary.ttft.p50_s,
    "ttft_p99_s": summary.ttft.p99_s,
    "e2e_mean_s": summary.e2e.mean_s,
}))
"""


def measure(num_requests: int) -> dict[str, float]:
    """Peak RSS and summary figures of one run of ``num_requests`` requests (a subprocess)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(num_requests)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall_s"] = time.perf_counter() - start
    return figures


def main(argv: list[str]) -> None:
    """Print one line per size."""
    sizes = [int(a) for a in argv] or list(DEFAULT_SIZES)
    for size in sizes:
        f = measure(size)
        print(
            f"{size:>9,} requests: peak RSS {f['peak_rss_mb']:7.1f} MB, "
            f"{f['wall_s']:7.1f} s wall, "
            f"p50/p99 TTFT {f['ttft_p50_s']:.6f}/{f['ttft_p99_s']:.6f} s, "
            f"mean E2E {f['e2e_mean_s']:.6f} s ({f['num_requests']:,} completed)",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
