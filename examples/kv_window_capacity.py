"""Sequences of 32k tokens one GPU's KV pool holds, before and after KV cache groups.

Before: layers with a window over 1,024 tokens (Mistral's 4,096, Llama 4's 8,192 chunks) were
charged per token like full layers, and windows up to 1,024 tokens (gpt-oss's 128, Gemma-3's
1,024) were reserved per sequence for vLLM's 256 default sequences. After: vLLM's hybrid
KV-cache manager (perf/kv_layout.py, perf/kv_groups.py): the layers form groups of one type
drawing pages from one pool; a sliding-window group holds ``ceil(window / 16) + 1``
pages at most, a chunked group ``chunk / 16``, a full group one page per 16 tokens.

Setup: bf16 weights and KV (gpt-oss-120b in its MXFP4 checkpoint), block 16, utilization 0.9,
vLLM's 8,192-token profiling pass. Gemma-3-27B is built from its published config (62
layers, every sixth global, 1,024-token window; 16 KV heads of 128) on a Llama body, so
only its KV figures are meant. Prints one row per model: pool pages, pages one 32k sequence
takes, and the sequences that fit, before and after ("refused": the former per-sequence
reservation of its 52 windows for 256 sequences, 113 GB, outgrew the GPU).

Figures (this commit):

    model                    groups                        pages  per seq  before  after
    mistral-7b               1 sliding(4096)              29,150      257      14    113
    gemma-3-27b (KV shape)   1 full + 6 sliding(1024)     13,520    2,438 refused      5
    gpt-oss-120b             1 full + 1 sliding(128)      16,362    2,057       6      7
    llama-4-scout (tp=4)     1 full + 3 chunked(8192)    108,137    3,584      13     30

Run: ``python examples/kv_window_capacity.py`` (about one CPU-second).
"""

from __future__ import annotations

import dataclasses

from servesim.perf.kv_groups import describe, kv_layout
from servesim.perf.memory import PROFILE_NUM_SEQS, plan_memory
from servesim.perf.shapes import kv_bytes_per_token_layer
from servesim.perf.types import ReplicaPlan
from servesim.specs import get_gpu, resolve_model

CONTEXT = 32_768
BLOCK = 16
SHORT = 1024  # the former threshold


def _gemma3_27b():  # type: ignore[no-untyped-def]
    body = resolve_model("llama-3.1-70b")
    kinds = tuple("full" if (i + 1) % 6 == 0 else "sliding" for i in range(62))
    return dataclasses.replace(
        body,
        name="gemma-3-27b (KV shape)",
        num_layers=62,
        hidden_size=5376,
        num_attention_heads=32,
        num_kv_heads=16,
        head_dim=128,
        ffn_size=21504,
        vocab_size=262_208,
        max_context_tokens=131_072,
        layer_types=kinds,
        sliding_window=1024,
    )


def _before(plan: ReplicaPlan, kv_cache_bytes: int) -> int:
    """Sequences of CONTEXT tokens the former accounting fitted."""
    m = plan.model
    per_token, reserve = 0.0, 0.0
    for index in range(m.num_layers):
        kind = m.layer_kind(index)
        if kind == "linear":
            continue
        nbytes = kv_bytes_per_token_layer(m, plan.tp, kind, plan.kv_dtype.num_bytes)
        window = m.attention_window(kind) if kind in ("sliding", "chunked") else None
        if m.layer_types and window is not None and window <= SHORT:
            reserve += (-(-window // BLOCK) * BLOCK + BLOCK) * nbytes
        else:
            per_token += nbytes
    left = kv_cache_bytes - PROFILE_NUM_SEQS * reserve
    if left <= 0:  # the reservation alone outgrew the memory: plan_memory refused the plan
        return -1
    return int(left // (per_token * BLOCK)) // -(-CONTEXT // BLOCK)


def main() -> None:
    """Print the table."""
    h100 = get_gpu("h100-sxm")
    plans = [
        ReplicaPlan(model=resolve_model("mistral-7b"), gpu=h100),
        ReplicaPlan(model=_gemma3_27b(), gpu=h100),
        ReplicaPlan(model=resolve_model("gpt-oss-120b"), gpu=h100),
        ReplicaPlan(model=resolve_model("llama-4-scout"), gpu=h100, tp=4),
    ]
    print(f"{'model':24} {'groups':26} {'pages':>8} {'per seq':>8} {'before':>7} {'after':>6}")
    for plan in plans:
        mem = plan_memory(plan)
        layout = kv_layout(plan, BLOCK)
        peak = layout.peak_pages(CONTEXT)
        before = _before(plan, mem.kv_cache_bytes)
        print(
            f"{plan.model.name:24} {describe(layout):26} {mem.num_kv_blocks:8,} {peak:8,} "
            f"{before if before >= 0 else 'refused':>7} {mem.num_kv_blocks // peak:6,}"
        )


if __name__ == "__main__":
    main()
