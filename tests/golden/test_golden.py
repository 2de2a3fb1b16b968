"""Golden summary of one fixed run, compared byte for byte.

The run goes through the public API (config -> cluster -> engine -> metrics) with a linear fake
cost model, so it pins the engine core and the metrics, not the fitted calibration: a refactor
of the engine must leave it identical. Chosen to exercise the mechanisms at once: two replicas
behind a load-aware router, vLLM V1 chunked prefill under a 512-token budget, prefix caching,
a KV pool small enough to preempt, and queueing.

After a deliberate change of results, regenerate it and review the diff:

    SERVESIM_REGEN_GOLDEN=1 python -m pytest tests/golden
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from servesim.api import simulate
from servesim.config import SimConfig
from tests.engine.fakes import LinearPerf

GOLDEN = Path(__file__).with_name("engine_summary.json")

CONFIG = {
    "model": "llama-3.1-8b",
    "hardware": {"gpu": "h100-sxm", "tp": 1},
    "replicas": 2,
    "router": "least_outstanding_tokens",
    "scheduler": {"kind": "vllm", "version": "v1", "max_num_batched_tokens": 512},
    "cache": {"enable_prefix_caching": True},
    "workload": {
        "preset": "sharegpt-vidur",
        "rate_per_s": 14.0,
        "num_requests": 400,
        "prefix_block_size": 16,
        "shared_prefix_tokens": 256,
    },
    "seed": 7,
}


def _summary_json() -> str:
    result = simulate(SimConfig.from_dict(CONFIG), perf=LinearPerf(num_kv_blocks=700))
    doc = {
        "summary": result.summary.to_dict(),
        "cluster": result.cluster.to_dict(result.records) if result.cluster else None,
    }
    return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n"


def test_fixed_run_matches_its_golden_summary() -> None:
    text = _summary_json()
    if os.environ.get("SERVESIM_REGEN_GOLDEN"):
        GOLDEN.write_text(text)
    doc = json.loads(text)
    # the run must exercise what it is meant to pin
    summary = doc["summary"]
    assert summary["num_completed"] == 400, summary["num_completed"]
    assert summary["num_preemptions"] > 0
    assert 0 < summary["prefix_cache_hit_rate"] < 1
    assert text == GOLDEN.read_text(), "golden summary changed (see the module docstring)"
