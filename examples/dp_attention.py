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
- A wider group, ``DP16 x TP1 EP16`` (8 experts per GPU) at 80 and 160 req/s, placed three
  ways: one 16-GPU NVLink domain (``gpus_per_node: 16``, a hypothetical H100 server: the
  NVLink reference), and two 8-GPU servers on InfiniBand NDR (400 Gb/s per GPU) or on RoCE
  200 GbE, the token exchange then crossing the network (``perf/dp_cost.py``,
  ``GroupSpan``), with the default backend and with DeepEP low-latency.

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


WIDE_RATES = (80.0, 160.0)
DP16 = {"tp": 1, "ep": 16, "dp_attention": 16}
SERVERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("1 x 16-GPU NVLink", {"gpu": "h100-sxm", "gpus_per_node": 16}),
    ("2 x 8 on IB NDR", {"gpu": "h100-sxm", "count": 2, "network": "ib-ndr-400"}),
    ("2 x 8 on RoCE 200", {"gpu": "h100-sxm", "count": 2, "network": "roce-200"}),
)
BACKENDS = ("allgather_reducescatter", "deepep_low_latency")


def run(
    pool: dict[str, Any], router: str, rate: float, nodes: dict[str, Any] | None = None
) -> dict[str, float] | str:
    """One simulation's figures, or why the deployment cannot run."""
    deployment: dict[str, Any] = {"router": {"kind": router}, "pools": [{**POOL, **pool}]}
    if nodes is not None:
        deployment["nodes"] = [nodes]
    config = {
        "model": "qwen3-30b-a3b",
        "deployment": deployment,
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


def print_row(name: str, rate: float, row: dict[str, float] | str, width: int = 15) -> None:
    """One table row (or why the deployment cannot run)."""
    if isinstance(row, str):
        print(f"{name:<{width}}{rate:>6.0f}  cannot run: {row}")
        return
    print(
        f"{name:<{width}}{rate:>6.0f}{row['ttft_p50_ms']:>10.0f}{row['ttft_p99_ms']:>10.0f}"
        f"{row['tpot_p99_ms']:>10.1f}{row['out_tok_s']:>11.0f}{row['j_per_tok']:>7.2f}"
    )


def header(width: int = 15) -> str:
    """The tables' column titles."""
    return (
        f"{'deployment':<{width}}{'rate':>6}{'TTFT p50':>10}{'TTFT p99':>10}{'TPOT p99':>10}"
        f"{'out tok/s':>11}{'J/tok':>7}"
    )


def main() -> None:
    """Print one row per deployment and rate, then the DP16 group on three placements."""
    print(header())
    for name, pool, router in DEPLOYMENTS:
        for rate in RATES:
            print_row(name, rate, run(pool, router, rate))
    print()
    print(header(40))
    for servers, nodes in SERVERS:
        for backend in BACKENDS:
            pool = {**DP16, "all2all_backend": backend}
            for rate in WIDE_RATES:
                row = run(pool, "dp_least_loaded", rate, nodes)
                print_row(f"DP16 {servers}, {backend}", rate, row, 40)


if __name__ == "__main__":
    main()
