"""gpt-oss-120b as shipped (MXFP4 experts, bf16 attention) on one H100 vs bf16 weights.

Setup (stated, not tuned per deployment):
- Model: ``gpt-oss-120b`` from the catalog, whose config carries the checkpoint's
  ``quantization_config`` (quant_method mxfp4; attention, router, embeddings and LM head
  unconverted): 65.2 GB of weights. The bf16 variant is the same config.json without
  ``quantization_config`` (what a dequantised repo such as unsloth/gpt-oss-120b-BF16 ships):
  233.7 GB.
- Deployments: MXFP4 on 1 x H100-SXM; bf16 on 2 x H100-SXM (TP2: does it fit?), on 4 x
  H100-SXM (TP4) and on 2 x H200 (TP2). The ``vllm-v1`` engine profile (gpt-oss needs vLLM
  >= 0.10): its scheduler defaults, host time and the ``vllm-0.24`` kernel stack, whose
  measured w4a16_mxfp4 MoE tables price the MXFP4 experts (bf16 activations: Hopper has no
  fp4 tensor cores, the kernel dequantises).
- Workload: the ``sharegpt-vllm-bench`` preset, Poisson arrivals at 2 and 8 req/s, 400
  requests per point, seed 0.

Run: ``python examples/gpt_oss_mxfp4.py`` (about a minute of CPU).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from servesim.api import simulate
from servesim.core.errors import ServesimError
from servesim.specs.catalog.models import MODELS_DIR

RATES = (2.0, 8.0)
NUM_REQUESTS = 400
GIB = 2**30


def bf16_config(folder: Path) -> Path:
    """Write gpt-oss-120b's catalog config without its quantization_config; return the path."""
    entry = yaml.safe_load((MODELS_DIR / "gpt-oss-120b.yaml").read_text(encoding="utf-8"))
    cfg = {k: v for k, v in entry["config"].items() if k != "quantization_config"}
    cfg["_name_or_path"] = "gpt-oss-120b-bf16"
    path = folder / "config.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def run(model: str, gpu: str, tp: int, rate: float) -> dict[str, Any] | str:
    """One simulation's figures, or why the deployment cannot run."""
    config = {
        "model": model,
        "hardware": {"gpu": gpu, "tp": tp, "engine": "vllm-v1"},
        "workload": {"preset": "sharegpt-vllm-bench", "rate_per_s": rate},
        "num_requests": NUM_REQUESTS,
        "seed": 0,
    }
    try:
        result = simulate(config)
    except ServesimError as exc:
        return " ".join(line.strip() for line in str(exc).splitlines())
    s = result.summary
    eff = s.efficiency
    return {
        "ttft_p50_ms": 1e3 * (s.ttft.p50_s or 0.0),
        "ttft_p99_ms": 1e3 * (s.ttft.p99_s or 0.0),
        "tpot_p50_ms": 1e3 * (s.tpot.p50_s or 0.0),
        "tpot_p99_ms": 1e3 * (s.tpot.p99_s or 0.0),
        "out_tok_s": s.output_throughput_tokens_per_s,
        "out_tok_s_gpu": s.output_throughput_tokens_per_s / eff.num_gpus,
        "usd_per_m_out": eff.cost_per_million_output_tokens_usd,
    }


def main() -> None:
    """Print one row per deployment and rate."""
    with tempfile.TemporaryDirectory() as tmp:
        bf16 = str(bf16_config(Path(tmp)))
        deployments = [
            ("MXFP4 1xH100", "gpt-oss-120b", "h100-sxm", 1),
            ("bf16 2xH100", bf16, "h100-sxm", 2),
            ("bf16 4xH100", bf16, "h100-sxm", 4),
            ("bf16 2xH200", bf16, "h200", 2),
        ]
        header = (
            f"{'deployment':14s} {'rate':>5s} {'TTFT p50':>9s} {'p99':>7s} {'TPOT p50':>9s} "
            f"{'p99':>6s} {'out tok/s':>10s} {'/GPU':>7s} {'$/M out':>8s}"
        )
        print("gpt-oss-120b, sharegpt-vllm-bench, Poisson, 400 requests (latencies in ms)")
        print(header)
        for label, model, gpu, tp in deployments:
            for rate in RATES:
                row = run(model, gpu, tp, rate)
                if isinstance(row, str):
                    print(f"{label:14s} {rate:5.1f} cannot run: {row[row.find('stage') :]}")
                    break
                print(
                    f"{label:14s} {rate:5.1f} {row['ttft_p50_ms']:9.1f} {row['ttft_p99_ms']:7.1f} "
                    f"{row['tpot_p50_ms']:9.2f} {row['tpot_p99_ms']:6.2f} "
                    f"{row['out_tok_s']:10.1f} {row['out_tok_s_gpu']:7.1f} "
                    f"{row['usd_per_m_out'] or float('nan'):8.3f}"
                )


if __name__ == "__main__":
    main()
