"""APEX reproduction: Llama-3.1-70B on 8x H100, heuristic plans vs APEX's chosen plan.

APEX (Microsoft's plan-search simulator for LLM serving) reports plans up to 3.37x faster than
heuristic ones and plans that use up to 45% less energy than the latency-optimal one; for
Llama-3.1-70B on one 8x H100 node serving summarization it picks 4 replicas of TP1-PP2.

Setup (stated, not tuned per plan):
- Model Llama-3.1-70B, bf16 weights and KV, 8 H100-SXM GPUs in one node, vLLM 0.6 engine
  profile (``engine: vllm-0.6``: its scheduler defaults, host time and kernel stack), GPU
  memory utilisation 0.97 as in APEX's launch scripts. Chunked prefill: vLLM 0.6's default
  for a 131,072-token context, i.e. on with a 512-token budget (APEX's logs do not say).
- Workload: APEX's summarization trace as served by vLLM (``served_traces/
  llama_summarization_05_validation_8TP.jsonl``: 1,302 requests, Poisson at 0.5 req/s,
  the served prompt and output lengths), replayed at its own rate and rescaled to 2x, 4x, 8x
  and 16x that rate; seed 0.
- Plans: APEX's heuristic baselines TP8 and PP8 (one replica each), APEX's plan 4 x TP1-PP2,
  and for context the two measured data-parallel plans 2 x TP4 and 4 x TP2 (round robin).
- Figures per plan and rate: mean E2E latency, p99 TTFT, mean TPOT, GPU energy per output
  token; then the factor of the best plan's mean E2E over each heuristic, the energy-optimal
  and the latency-optimal plan and their energy difference; and at the trace's rate the
  measured means of the plans APEX ran on real vLLM (``plans.csv``).

Run: ``python examples/apex_reproduction.py [--rates 1,2,4,8,16]`` (under a CPU-minute;
needs ``../shared/data``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from servesim.api import simulate
from servesim.core.paths import shared_data_dir

FOLDER = "validation/apex_vllm_llama70b"
TRACE = "served_traces/llama_summarization_05_validation_8TP.jsonl"
TRACE_RATE = 0.5
# name: (replicas, tp, pp, measured plan name in plans.csv or None)
PLANS = {
    "TP8": (1, 8, 1, "8TP"),
    "PP8": (1, 1, 8, None),
    "4 x TP1-PP2 (APEX)": (4, 1, 2, None),
    "2 x TP4": (2, 4, 1, "2DP4TP"),
    "4 x TP2": (4, 2, 1, "4DP2TP"),
}
HEURISTICS = ("TP8", "PP8")


def config(trace: Path, replicas: int, tp: int, pp: int, rate: float) -> dict[str, Any]:
    """The SimConfig mapping of one plan at ``rate`` req/s."""
    return {
        "model": "llama-3.1-70b",
        "hardware": {"gpu": "h100-sxm", "tp": tp, "pp": pp, "engine": "vllm-0.6"},
        "cache": {"gpu_memory_utilization": 0.97},
        "replicas": replicas,
        "workload": {"trace": {"path": str(trace), "format": "served"}, "rate_per_s": rate},
        "seed": 0,
    }


def run_plan(trace: Path, name: str, rate: float) -> dict[str, float]:
    """Simulate one plan at one rate; the four figures APEX compares."""
    replicas, tp, pp, _ = PLANS[name]
    summary = simulate(config(trace, replicas, tp, pp, rate)).summary
    return {
        "e2e_mean_s": summary.e2e.mean_s or float("nan"),
        "ttft_p99_s": summary.ttft.p99_s or float("nan"),
        "tpot_mean_s": summary.tpot.mean_s or float("nan"),
        "energy_j": summary.efficiency.energy_per_output_token_j or float("nan"),
    }


def measured(folder: Path) -> dict[str, dict[str, float]]:
    """APEX's real vLLM means at the trace's rate (summarization, 0.5 req/s), by plan."""
    out: dict[str, dict[str, float]] = {}
    with (folder / "plans.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["workload"] == "summarization" and float(row["rate_req_per_s"]) == TRACE_RATE:
                out[row["plan"]] = {
                    "e2e_mean_s": float(row["mean_e2e_latency_s"]),
                    "ttft_mean_s": float(row["mean_ttft_s"]),
                    "itl_s": float(row["itl_mean_token_weighted_s"]),
                }
    return out


def report_rate(rate: float, rows: dict[str, dict[str, float]]) -> None:
    """The table of one rate, the best plan's factor over each heuristic, energy vs latency."""
    print(f"\n== {rate:g} req/s ({rate / TRACE_RATE:g}x the trace's rate) ==")
    print(f"{'plan':22s} {'mean E2E s':>10s} {'p99 TTFT s':>10s} {'TPOT ms':>8s} {'J/token':>8s}")
    for name, r in rows.items():
        print(
            f"{name:22s} {r['e2e_mean_s']:10.2f} {r['ttft_p99_s']:10.2f} "
            f"{r['tpot_mean_s'] * 1e3:8.1f} {r['energy_j']:8.2f}"
        )
    fastest = min(rows, key=lambda n: rows[n]["e2e_mean_s"])
    frugal = min(rows, key=lambda n: rows[n]["energy_j"])
    factors = ", ".join(
        f"{rows[h]['e2e_mean_s'] / rows[fastest]['e2e_mean_s']:.2f}x faster than {h}"
        for h in HEURISTICS
        if h != fastest
    )
    print(f"best by mean E2E: {fastest}" + (f", {factors}" if factors else ""))
    apex = rows["4 x TP1-PP2 (APEX)"]["e2e_mean_s"] / rows[fastest]["e2e_mean_s"]
    print(f"APEX's plan: {apex:.2f}x the best mean E2E")
    if frugal == fastest:
        print(f"energy-optimal = latency-optimal = {fastest}")
    else:
        saving = 1 - rows[frugal]["energy_j"] / rows[fastest]["energy_j"]
        print(
            f"energy-optimal {frugal} vs latency-optimal {fastest}: "
            f"{saving:.0%} less energy per output token"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="1,2,4,8,16", help="multiples of the trace's 0.5 req/s")
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None or not (data / FOLDER / TRACE).is_file():
        print("skipped: needs the shared data folder (../shared/data or $SERVESIM_SHARED_DATA)")
        sys.exit(0)
    folder = data / FOLDER
    trace = folder / TRACE
    for scale in (float(x) for x in args.rates.split(",")):
        rate = TRACE_RATE * scale
        report_rate(rate, {name: run_plan(trace, name, rate) for name in PLANS})
    real = measured(folder)
    print("\nmeasured on vLLM 0.6 at 0.5 req/s (APEX's runs; means only):")
    for name, (_, _, _, key) in PLANS.items():
        if key in real:
            m = real[key]
            print(
                f"{name:22s} mean E2E {m['e2e_mean_s']:.2f} s, mean TTFT {m['ttft_mean_s']:.3f} s, "
                f"ITL {m['itl_s'] * 1e3:.1f} ms"
            )


if __name__ == "__main__":
    main()
