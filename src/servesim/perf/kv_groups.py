"""A model's KV cache groups as vLLM's hybrid KV-cache manager forms them, and their page.

vllm/v1/core/kv_cache_utils.py ``_get_kv_cache_groups_uniform_page_size``: the attention
layers are bucketed by type (full, a sliding window of W, a chunk of C); the group size is
the smallest bucket (the largest when it is under 1.5 times the smallest: gpt-oss + EAGLE's
13 full / 12 sliding); each bucket of n layers makes ``ceil(n / group size)`` groups, group i
holding ``layers[i::num_groups]``. Every group's pages come from one pool; a page is
``block_size`` tokens of as many layers as the largest group has on a GPU
(``get_kv_cache_config_from_groups``: one tensor per position in a group, shared by the
groups), so the pool holds ``kv_cache_bytes // page_bytes`` pages. A model of one growing
type is one group of all its layers: a page is then the classic block of every layer.

Linear-attention layers are a bucket too (vLLM V1's ``MambaSpec``, v0.10+): their groups hold
one state per sequence in the same pool (``1 + k`` under speculation with ``k`` drafts). vLLM
raises the block size of every attention group until one page holds a state
(``vllm_block_size``) and pads the state to it; at that block a state takes one page
(``state_pages_per_group``; at a smaller block, as many as it fills). Sparse layers
(DeepSeek-V3.2) grow like full ones.
"""

from __future__ import annotations

from servesim.perf.kv_layout import KVLayout, WindowGroups
from servesim.perf.shapes import (
    kv_bytes_per_token_layer,
    linear_state_bytes_per_layer,
    stage_layer_ranges,
)
from servesim.perf.types import ReplicaPlan
from servesim.specs.layers import GROWING_KINDS

#: ``(kind, tokens)`` of a bucket; growing layers are ``("full", 0)``.
TypeKey = tuple[str, int]


def _buckets(plan: ReplicaPlan, block_size: int) -> dict[TypeKey, list[int]]:
    """Layers by type, in layer order (linear-attention layers are ``("linear", 0)``)."""
    m = plan.model
    out: dict[TypeKey, list[int]] = {}
    for index in range(m.num_layers):
        kind = m.layer_kind(index)
        if kind == "linear":
            key: TypeKey = ("linear", 0)
        elif kind in GROWING_KINDS:
            key = ("full", 0)
        else:
            tokens = m.attention_window(kind) or 0
            # vLLM frees a chunk's pages whole; a chunk that is no multiple of the block is
            # bounded here as a sliding window of its length (it never holds more).
            if kind == "chunked" and tokens % block_size:
                kind = "sliding"
            key = (kind, tokens)
        out.setdefault(key, []).append(index)
    return out


def has_window_groups(plan: ReplicaPlan) -> bool:
    """True when some attention layer is windowed or chunked (the pool has window groups)."""
    return any(kind in ("sliding", "chunked") for kind in plan.model.layer_kind_counts())


def has_state_groups(plan: ReplicaPlan) -> bool:
    """True when some layer is linear attention (the pool has state groups)."""
    return bool(plan.model.layer_types) and "linear" in plan.model.layer_kind_counts()


def _attention_bytes_per_token(plan: ReplicaPlan) -> float:
    """One token of the largest attention layer's KV on one GPU (vLLM's
    ``attn_page_size_1_token``)."""
    m = plan.model
    return max(
        (
            kv_bytes_per_token_layer(m, plan.tp, m.layer_kind(j), plan.kv_dtype.num_bytes)
            for j in range(m.num_layers)
            if m.layer_kind(j) != "linear"
        ),
        default=0.0,
    )


def state_pages_per_group(plan: ReplicaPlan, block_size: int) -> int:
    """Pool pages one linear-attention state takes: ``cdiv(state, block_size x attention
    bytes per token)`` per layer (both sides split by TP alike); 1 at ``vllm_block_size``."""
    attn = _attention_bytes_per_token(plan)
    state = linear_state_bytes_per_layer(plan.model, plan.tp)
    return -int(-state // (block_size * attn)) if attn > 0 else 0


#: vLLM's ``kernel_block_alignment_size`` in ``HybridAttentionMambaModelConfig``
_ATTN_BLOCK_ALIGNMENT = 16


def vllm_block_size(plan: ReplicaPlan, block_size: int) -> int:
    """The block size vLLM runs ``plan`` at: ``block_size``, raised for a model with
    linear-attention state until one attention page holds a state
    (vllm/model_executor/models/config.py ``HybridAttentionMambaModelConfig.
    verify_and_update_config``: ``attn_block_size = 16 * cdiv(state_page, 16 *
    attn_page_size_1_token)``, taken when the configured block is smaller), for every
    attention group alike (one ``cache_config.block_size``)."""
    if not has_state_groups(plan):
        return block_size
    align = _ATTN_BLOCK_ALIGNMENT
    raised = align * state_pages_per_group(plan, align)
    return max(block_size, raised)


def _group_size(buckets: dict[TypeKey, list[int]]) -> int:
    sizes = [len(layers) for layers in buckets.values()]
    smallest, largest = min(sizes), max(sizes)
    return largest if largest < 1.5 * smallest else smallest


def kv_layout(plan: ReplicaPlan, block_size: int, num_speculative_blocks: int = 0) -> KVLayout:
    """The replica's KV cache groups (``plain`` for a model without windows);
    ``num_speculative_blocks``: the extra states per state group under speculation (vLLM's
    ``MambaSpec.num_speculative_blocks``, the drafts ``k``)."""
    if not has_window_groups(plan) and not has_state_groups(plan):
        return KVLayout(block_size)
    buckets = _buckets(plan, block_size)
    size = _group_size(buckets)
    full = -(-len(buckets.get(("full", 0), [])) // size)
    windows = tuple(
        WindowGroups(kind, tokens, -(-len(layers) // size))
        for (kind, tokens), layers in buckets.items()
        if kind not in ("full", "linear")
    )
    states = -(-len(buckets.get(("linear", 0), [])) // size)
    per_state = state_pages_per_group(plan, block_size) if states else 0
    return KVLayout(block_size, full, windows, states, per_state, 1 + num_speculative_blocks)


def page_bytes_per_token(plan: ReplicaPlan, stage: int, block_size: int) -> float:
    """Bytes one token takes in one page on one GPU of ``stage`` (the page is this times
    ``block_size``): the largest group's layers on the stage, each at the stage's largest
    per-layer KV (vLLM pads page sizes to one)."""
    m = plan.model
    buckets = _buckets(plan, block_size)
    size = _group_size(buckets)
    on_stage = set(stage_layer_ranges(m.num_layers, plan.pp)[stage])
    most = 0
    for layers in buckets.values():
        num_groups = -(-len(layers) // size)
        for i in range(num_groups):
            most = max(most, sum(1 for j in layers[i::num_groups] if j in on_stage))
    per_layer = max(
        (
            kv_bytes_per_token_layer(m, plan.tp, m.layer_kind(j), plan.kv_dtype.num_bytes)
            for j in on_stage
            if m.layer_kind(j) != "linear"
        ),
        default=0.0,
    )
    return most * per_layer


def describe(layout: KVLayout) -> str:
    """The groups in words (``1 full + 3 chunked(8192)``)."""
    parts = [f"{layout.num_full_groups} full"] if layout.num_full_groups else []
    parts += [f"{w.num_groups} {w.kind}({w.tokens})" for w in layout.windows]
    if layout.num_state_groups:
        pages = f"x{layout.state_pages_per_group} pages"
        if layout.states_per_seq > 1:  # speculation: the running state and one per draft
            pages = f"{layout.states_per_seq} states {pages}"
        parts.append(f"{layout.num_state_groups} state({pages})")
    return " + ".join(parts)


def batch_pages(layout: KVLayout, prefill: list[tuple[int, int]], decode: list[int]) -> int:
    """Pages a batch holds while it runs: each prefill ``(chunk, cached)`` and each decode of
    ``context`` tokens (it writes one more) at its step's count."""
    need = sum(layout.step_pages(cached, chunk) for chunk, cached in prefill)
    return need + sum(layout.step_pages(n, 1) for n in decode)


def window_memory_rows(layout: KVLayout, num_pages: int, context_tokens: int) -> dict[str, object]:
    """Report rows for a pool with window groups: the groups, the pages one sequence of
    ``context_tokens`` holds at most, and how many such sequences the pool holds."""
    peak = layout.peak_pages(context_tokens)
    return {
        "kv_cache_groups": describe(layout),
        f"kv_pages_per_seq_at_{context_tokens}": peak,
        f"max_seqs_at_{context_tokens}": num_pages // peak if peak else 0,
    }
