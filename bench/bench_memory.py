"""Peak memory of ``servesim simulate`` by run length (issue 16: bounded memory).

Each size runs in its own subprocess (peak RSS is per process, and never shrinks), on the
default scenario (Llama-3.1-8B, one H100, ShareGPT-like traffic at its default rate), and
prints the child's peak RSS, wall time and a few summary figures. Sizes up to
``--exact-up-to`` are run a second time with every table held in memory and exact
statistics (the records' budgets lifted: the behaviour before spilling), and the two
summaries are compared: byte-identical JSON, or else the largest relative difference of any
percentile (the sketch's bound is ``servesim.metrics.sketch.DEFAULT_RELATIVE_ACCURACY``) and
of any other figure. Usage::

    python bench/bench_memory.py                     # 10k, 100k and 1M requests
    python bench/bench_memory.py 10000 100000        # chosen sizes
    python bench/bench_memory.py --exact-up-to 0     # no exact reruns
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
DEFAULT_EXACT_UP_TO = 100_000

# Runs in the child: simulate (bounded, or with the budgets lifted), then report ru_maxrss
# (KiB on Linux), the summary and whether the tables spilled.
_CHILD = """
import json, resource, sys
import servesim.engine.columns as columns
import servesim.engine.records as records
import servesim.metrics.sketch as sketch
from servesim.api import simulate
if sys.argv[2] == "exact":
    columns.REQUEST_BUDGET_ROWS = columns.ITERATION_BUDGET_ROWS = 1 << 62
    records.TOKEN_GAP_BUDGET = sketch.DEFAULT_EXACT_BUDGET = 1 << 62
result = simulate({"num_requests": int(sys.argv[1]), "seed": 0})
rec = result.records
print(json.dumps({
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "spilled": [rec.requests.is_spilled, rec.iterations.is_spilled, rec.token_gaps.is_spilled],
    "summary": result.summary.to_dict(),
}))
"""


def measure(num_requests: int, mode: str = "bounded") -> dict:
    """Peak RSS, summary and spill flags of one run of ``num_requests`` (a subprocess)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(num_requests), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall_s"] = time.perf_counter() - start
    return figures


def _flatten(value: object, path: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key in value for k, v in _flatten(value[key], f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, x in enumerate(value) for k, v in _flatten(x, f"{path}[{i}]").items()}
    return {path: value}


def compare(bounded: dict, exact: dict) -> str:
    """How the bounded run's summary differs from the exact one, in one line."""
    a, b = _flatten(bounded), _flatten(exact)
    if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True):
        return "summary identical to the exact run (byte for byte)"
    worst = {"percentile": 0.0, "other": 0.0}
    where = {"percentile": "-", "other": "-"}
    for key, want in b.items():
        got = a.get(key)
        if got == want:
            continue
        if not isinstance(want, (int, float)) or not isinstance(got, (int, float)) or not want:
            return f"summary differs at {key}: {got!r} vs {want!r}"
        is_percentile = key.rsplit(".", 1)[-1] in ("p50_s", "p90_s", "p95_s", "p99_s")
        kind = "percentile" if is_percentile else "other"
        rel = abs(got - want) / abs(want)
        if rel > worst[kind]:
            worst[kind], where[kind] = rel, key
    return (
        f"vs exact run: percentiles within {worst['percentile']:.2e} relative "
        f"({where['percentile']}), other figures within {worst['other']:.2e} ({where['other']})"
    )


def main(argv: list[str]) -> None:
    """Print one line per size (and one comparison line per exact rerun)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=list(DEFAULT_SIZES))
    parser.add_argument("--exact-up-to", type=int, default=DEFAULT_EXACT_UP_TO)
    args = parser.parse_args(argv)
    for size in args.sizes:
        f = measure(size)
        s = f["summary"]
        print(
            f"{size:>9,} requests: peak RSS {f['peak_rss_mb']:7.1f} MB, "
            f"{f['wall_s']:7.1f} s wall, "
            f"p50/p99 TTFT {s['ttft']['p50_s']:.6f}/{s['ttft']['p99_s']:.6f} s, "
            f"mean E2E {s['e2e']['mean_s']:.6f} s ({s['num_completed']:,} completed), "
            f"spilled requests/iterations/gaps {f['spilled']}",
            flush=True,
        )
        if size <= args.exact_up_to:
            e = measure(size, "exact")
            print(
                f"{'':>9}  exact: peak RSS {e['peak_rss_mb']:7.1f} MB, "
                f"{e['wall_s']:7.1f} s wall; {compare(s, e['summary'])}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
