"""Data-parallel attention with EP across the ranks vs tensor parallelism, Qwen3-30B-A3B on
8 x H100.

Setup (stated, not tuned per deployment):
- Model: ``qwen3-30b-a3b`` (48 MoE layers, 128 experts of which 8 per token, 32 query and 4
  KV heads), bf16 weights, on one 8 x H100-SXM server (NVLink).
- Deployments, all on the ``vllm-v1`` engine profile (vLLM's DP engine core is V1):
  ``TP8``: one replica, experts TP-sharded (``--tensor-parallel-size 8``);
  ``TP8 EP8``: the same with ``--enable-expert-parallel``;
  ``8 x TP1``: eight independent replicas (each GPU holds all experts), a
  least-outstanding-requests router in front;
  ``DP8 x TP1 EP8``: ``--data-parallel-size 8 --enable-expert-parallel``: eight lockstep
  ranks with their own schedulers and KV caches, 16 experts per GPU, vLLM's DP load
  balancer (``dp_least_loaded``), tokens moved by vLLM's default all2all backend
  (``allgather_reducescatter``); ``DP8 DeepEP``: the same with
  ``VLLM_ALL2ALL_BACKEND=deepep_high_throughput`` (all-to-all of the token-expert pairs);
  ``DP4 x TP2 EP8``: four ranks of two GPUs each.
- Workload: the ``sharegpt-vllm-bench`` preset, Poisson arrivals at 10, 20, 40 and 80 req/s,
  600 requests per point, seed 0.

Run: ``python examples/dp_attention.py`` (about a minute of CPU).
"""

from __future__ import annotations

from typing import Any

from servesim.api import simulate
from servesim.core.errors import ServesimError

RATES = (10.0, 20.0, 40.0, 80.0)
NUM_REQUESTS = 600
POOL = {"gpu": "h100-sxm", "engine": "vllm-v1"}
DP8 = {"tp": 1, "ep": 8, "dp_attention": 8}
DEPLOYMENTS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("TP8", {"tp": 8}, "round_robin"),
    ("TP8 EP8", {"tp": 8, "ep": 8}, "round_robin"),
    ("8 x TP1", {"tp": 1, "replicas": 8}, "least_outstanding_requests"),
    ("DP8 x TP1 EP8", DP8, "dp_least_loaded"),
    ("DP8 DeepEP", {**DP8, "all2all_backend": "deepep_high_throughput"}, "dp_least_loaded"),
    ("DP4 x TP2 EP8", {"tp": 2, "ep": 8, "dp_attention": 4}, "dp_least_loaded"),
)


def run(pool: dict[str, Any], router: str, rate: float) -> dict[str, float] | str:
    """One simulation's figures, or why the deployment cannot run."""
    config = {
        "model": "qwen3-30b-a3b",
        "deployment": {"router": {"kind": router}, "pools": [{**POOL, **pool}]},
        "workload": {"preset": "sharegpt-vllm-bench", "rate_per_s": rate},
        "num_requests": NUM_REQUESTS,
        "seed": 0,
    }
    try:
        result = simulate(config)
    except ServesimError as exc:
        return " ".join(line.strip() for line in str(exc).splitlines())
    s = result.summary
    return {
        "ttft_p50_ms": 1e3 * (s.ttft.p50_s or 0.0),
        "ttft_p99_ms": 1e3 * (s.ttft.p99_s or 0.0),
        "tpot_p99_ms": 1e3 * (s.tpot.p99_s or 0.0),
        "out_tok_s": s.output_throughput_tokens_per_s,
        "j_per_tok": s.efficiency.energy_per_output_token_j or 0.0,
    }


def main() -> None:
    """Print one row per deployment and rate."""
    print(
        f"{'deployment':<15}{'rate':>6}{'TTFT p50':>10}{'TTFT p99':>10}{'TPOT p99':>10}"
        f"{'out tok/s':>11}{'J/tok':>7}"
    )
    for name, pool, router in DEPLOYMENTS:
        for rate in RATES:
            row = run(pool, router, rate)
            if isinstance(row, str):
                print(f"{name:<15}{rate:>6.0f}  cannot run: {row}")
                continue
            print(
                f"{name:<15}{rate:>6.0f}{row['ttft_p50_ms']:>10.0f}{row['ttft_p99_ms']:>10.0f}"
                f"{row['tpot_p99_ms']:>10.1f}{row['out_tok_s']:>11.0f}{row['j_per_tok']:>7.2f}"
            )


if __name__ == "__main__":
    main()
