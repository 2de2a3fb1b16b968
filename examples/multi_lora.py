"""100 LoRA adapters with skewed popularity on one H100 (Llama-3.1-8B), then two replicas
with adapter-aware routing.

Setup (stated, not tuned per point):
- Model ``llama-3.1-8b``, bf16, one H100-SXM (PCIe 5.0 host link, 63 GB/s), the
  ``vllm-v1`` engine profile.
- Adapters: 100, rank 16 on q/k/v/o (27.3 MB each) unless stated; popularity Zipf with
  exponent 1.1 over the adapters (the top adapter takes 23% of requests, half of them go
  to the top 5), every request uses one (``workload.tags``). GPU slots (``max_loras``) 4, 16
  and 32; a row with rank 64 on all seven projections (336 MB each) at 16 slots; the base
  model without adapters for reference.
- Workload: the ``sharegpt-vllm-bench`` preset, Poisson at 8 req/s, 500 requests, seed 0.
- Two replicas (16 slots each) at 16 req/s: round robin vs ``adapter_affinity`` (a holder of
  the adapter unless it has 8 more requests than the least loaded replica).
- Figures: adapter loads and the bytes copied over PCIe, p99 TTFT, mean TPOT, output
  throughput.

Run: ``python examples/multi_lora.py`` (about 6 CPU-seconds).
"""

from __future__ import annotations

from typing import Any

from servesim.api import simulate

NUM_REQUESTS = 500
TAGS = {"num_adapters": 100, "adapter_skew": 1.1}
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL7 = [*QKVO, "gate_proj", "up_proj", "down_proj"]


def run(
    lora: dict[str, Any] | None, *, rate: float = 8.0, replicas: int = 1, router: str | None = None
) -> dict[str, float]:
    """One simulation's figures."""
    workload: dict[str, Any] = {"preset": "sharegpt-vllm-bench", "rate_per_s": rate}
    if lora is not None:
        workload["tags"] = TAGS
    config: dict[str, Any] = {
        "model": "llama-3.1-8b",
        "hardware": {"gpu": "h100-sxm", "engine": "vllm-v1"},
        "workload": workload,
        "num_requests": NUM_REQUESTS,
        "replicas": replicas,
        "seed": 0,
    }
    if lora is not None:
        config["lora"] = lora
    if router is not None:
        config["router"] = router
    result = simulate(config)
    s, counters = result.summary, result.records.counters
    return {
        "loads": counters.get("lora_loads", 0),
        "load_gb": counters.get("lora_load_bytes", 0) / 1e9,
        "ttft_p99_ms": 1e3 * (s.ttft.p99_s or 0.0),
        "tpot_ms": 1e3 * (s.tpot.mean_s or 0.0),
        "out_tok_s": s.output_throughput_tokens_per_s,
    }


def row(label: str, r: dict[str, float]) -> str:
    """One printed line."""
    return (
        f"{label:34s} {r['loads']:6.0f} {r['load_gb']:7.2f} {r['ttft_p99_ms']:8.1f} "
        f"{r['tpot_ms']:7.2f} {r['out_tok_s']:7.0f}"
    )


def main() -> None:
    """Print one row per setting."""
    print("llama-3.1-8b, H100, vllm-v1, 100 adapters Zipf 1.1, 500 requests (ms)")
    print(
        f"{'setting':34s} {'loads':>6s} {'GB PCIe':>7s} {'TTFT p99':>8s} {'TPOT':>7s} {'tok/s':>7s}"
    )
    print(row("base model, no adapters", run(None)))
    for slots in (4, 16, 32):
        print(row(f"r16 qkvo, {slots} slots", run({"max_loras": slots, "target_modules": QKVO})))
    big = {"max_loras": 16, "rank": 64, "target_modules": ALL7}
    print(row("r64 all 7 projections, 16 slots", run(big)))
    print("two replicas, 16 slots each, 16 req/s")
    lora = {"max_loras": 16, "target_modules": QKVO}
    for router in ("round_robin", "adapter_affinity"):
        print(row(f"  {router}", run(lora, rate=16.0, replicas=2, router=router)))


if __name__ == "__main__":
    main()
