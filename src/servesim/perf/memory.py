"""Memory plan of one GPU (weights, activation reserve, overheads, KV cache) and plan checks.

Follows vLLM 0.6's accounting: KV cache = total x gpu_memory_utilization - weights - peak
activations of a profiling forward pass of ``max_num_batched_tokens`` tokens - non-torch memory
(CUDA context, NCCL buffers). CUDA-graph memory is captured after the KV cache is allocated, so
it lives in the (1 - utilization) headroom and is reported there rather than subtracted.
"""

from __future__ import annotations

from servesim.core.errors import ConfigError, InfeasibleError
from servesim.perf.kv_groups import has_window_groups, page_bytes_per_token
from servesim.perf.shapes import (
    ffn_group_params,
    is_moe_layer,
    kv_bytes_per_token_layer,
    kv_elements_per_token_layer,
    layer_shapes,
    stage_layer_ranges,
    stage_params,
)
from servesim.perf.types import MemoryPlan, ReplicaPlan
from servesim.specs.quant import module_formats

GIB = 1024**3
# Non-torch memory seen by vLLM's profiler: CUDA context + cuBLAS workspace (~0.5 GiB on
# Hopper/Ampere in vLLM startup logs), plus NCCL / custom all-reduce buffers when tp*pp > 1.
CUDA_CONTEXT_BYTES = int(0.5 * GIB)
NCCL_BUFFER_BYTES = int(0.25 * GIB)
# vLLM logs ~0.3-1 GiB for CUDA graph capture of 35 batch sizes; taken from the headroom.
CUDA_GRAPH_BYTES = int(0.5 * GIB)
# vLLM's default max_num_seqs: the profiling pass samples this many sequences.
PROFILE_NUM_SEQS = 256


def check_plan(plan: ReplicaPlan) -> None:
    """Raise ``ConfigError`` for a parallel plan vLLM would refuse (one line naming the value)."""
    m = plan.model
    for name, value in (("tp", plan.tp), ("pp", plan.pp), ("ep", plan.ep)):
        if value < 1:
            raise ConfigError(name, value, "must be >= 1")
    if m.num_attention_heads % plan.tp:
        raise ConfigError(
            "tp", plan.tp, f"must divide the {m.num_attention_heads} attention heads of {m.name}"
        )
    if m.mla is None:
        kv = m.num_kv_heads
        if (plan.tp <= kv and kv % plan.tp) or (plan.tp > kv and plan.tp % kv):
            raise ConfigError(
                "tp", plan.tp, f"must divide or be a multiple of the {kv} KV heads of {m.name}"
            )
    lin = m.linear_attention
    if lin is not None and (lin.num_key_heads % plan.tp or lin.num_value_heads % plan.tp):
        raise ConfigError(
            "tp", plan.tp, f"must divide the {lin.num_key_heads} linear-attention key heads"
        )
    if m.ffn_size % plan.tp:
        raise ConfigError("tp", plan.tp, f"must divide the FFN size {m.ffn_size} of {m.name}")
    if plan.pp > m.num_layers:
        raise ConfigError("pp", plan.pp, f"exceeds the {m.num_layers} layers of {m.name}")
    _check_ep(plan)
    peaks = plan.gpu.peak_flops_per_s
    if plan.activation_dtype not in peaks:
        known = ", ".join(sorted(d.value for d in peaks))
        raise ConfigError(
            "activation_dtype",
            plan.activation_dtype.value,
            f"{plan.gpu.name} has no tensor peak for it (has {known})",
        )


def _check_ep(plan: ReplicaPlan) -> None:
    moe = plan.model.moe
    if plan.ep == 1:
        return
    if moe is None:
        raise ConfigError("ep", plan.ep, f"{plan.model.name} has no experts (use ep=1)")
    if plan.ep > moe.num_experts:
        raise ConfigError(
            "ep", plan.ep, f"exceeds the {moe.num_experts} experts of {plan.model.name}"
        )
    if moe.num_experts % plan.ep:
        raise ConfigError(
            "ep", plan.ep, f"must divide the {moe.num_experts} experts of {plan.model.name}"
        )
    if plan.tp % plan.ep:
        raise ConfigError(
            "ep", plan.ep, f"must divide tp={plan.tp} (experts are spread over the TP group)"
        )


def check_dp_attention(plan: ReplicaPlan, dp: int) -> None:
    """Raise ``ConfigError`` unless ``dp`` ranks of ``plan`` (its TP group each) can share
    their experts as vLLM's ``--data-parallel-size dp --enable-expert-parallel`` does: an
    MoE model, one pipeline stage, and EP = tp x dp dividing the experts."""
    if dp < 1:
        raise ConfigError("dp_attention", dp, "must be >= 1")
    if dp == 1:
        return
    moe, name = plan.model.moe, plan.model.name
    if moe is None:
        raise ConfigError(
            "dp_attention", dp, f"{name} has no experts (data-parallel copies: use replicas)"
        )
    if plan.pp != 1:
        raise ConfigError("dp_attention", dp, f"needs pp=1 ranks (got pp={plan.pp})")
    if plan.ep != 1:
        raise ConfigError("ep", plan.ep, f"must be 1 in a rank of dp_attention={dp}")
    ep = plan.tp * dp
    if moe.num_experts % ep:
        raise ConfigError(
            "dp_attention",
            dp,
            f"EP = tp x dp_attention = {ep} must divide the {moe.num_experts} experts of {name}",
        )


def _activation_bytes(plan: ReplicaPlan, max_num_batched_tokens: int) -> int:
    """Peak activations of the profiling pass on one GPU (16-bit tensors alive at once)."""
    m = plan.model
    s = layer_shapes(m, plan.tp)
    per_token = 4 * m.hidden_size + s.qkv_out + s.up_out + s.ffn
    if m.moe is not None:
        ffn_e = m.moe.expert_ffn_size // (plan.tp // plan.ep)
        per_token += m.moe.num_experts_per_token * (2 * m.hidden_size + 3 * ffn_e)
    logits = min(PROFILE_NUM_SEQS, max_num_batched_tokens) * m.vocab_size * (2 + 4 + 4)
    return int(max_num_batched_tokens * per_token * 2 + logits)


def stage_weight_bytes(plan: ReplicaPlan, stage: int, expert_ep: int = 0, dense_tp: int = 0) -> int:
    """Weight bytes of one GPU of pipeline stage ``stage``.

    ``expert_ep`` > ``plan.tp``: a data-parallel-attention rank whose routed experts are
    spread, whole, over ``expert_ep`` GPUs (``wide_ep_params``); 0: the plan's own EP.
    ``dense_tp`` > 0: the dense MLP layers of a MoE model sharded ``dense_tp`` ways instead
    of ``plan.tp`` (SGLang's DP attention: the whole group, or 1 with --moe-dense-tp-size 1).
    """
    layers = stage_layer_ranges(plan.model.num_layers, plan.pp)[stage]
    params = stage_params(plan.model, plan.tp, plan.ep, layers, plan.pp, stage)
    by_group, other = dict(params.linear_by_group), params.other_params
    if expert_ep > plan.tp:
        other += wide_ep_params(plan, layers, expert_ep, by_group)
    if dense_tp and by_group.get("dense_mlp"):
        ffn = plan.model.ffn_size
        by_group["dense_mlp"] = by_group["dense_mlp"] // (ffn // plan.tp) * (ffn // dense_tp)
    formats = module_formats(plan.model.quantization, plan.weight_dtype)
    by_bytes: dict[float, int] = {}  # groups of one format summed first: exact for one format
    for group, count in by_group.items():
        w = formats[group].bytes_per_weight
        by_bytes[w] = by_bytes.get(w, 0) + count
    linear = sum(count * w for w, count in by_bytes.items())
    # embeddings, LM head, norms and routers stay 16-bit in vLLM's quantised checkpoints
    return int(linear + other * 2)


def wide_ep_params(
    plan: ReplicaPlan, layers: range, expert_ep: int, by_group: dict[str, int]
) -> int:
    """Move one GPU's routed experts from the plan's TP/EP split to ``expert_ep`` GPUs each
    holding ``E / expert_ep`` whole experts (vLLM's ``--enable-expert-parallel`` with data
    parallelism: EP size = TP x DP, expert weights not split by TP; FusedMoE's
    ``use_ep`` path). Updates ``by_group["experts"]``; returns the change of 16-bit params
    (gpt-oss's per-expert biases)."""
    m = plan.model
    moe = m.moe
    assert moe is not None  # checked by check_dp_attention
    num_moe = sum(is_moe_layer(m, i) for i in layers)
    here = ffn_group_params(m, plan.tp, plan.ep, True)["experts"]
    wide = ffn_group_params(m, expert_ep, expert_ep, True)["experts"]
    by_group["experts"] += num_moe * (wide - here)
    if not moe.has_expert_bias:
        return 0
    ffn = moe.expert_ffn_size
    bias_here = moe.num_experts // plan.ep * (2 * (ffn // (plan.tp // plan.ep)) + m.hidden_size)
    bias_wide = moe.num_experts // expert_ep * (2 * ffn + m.hidden_size)
    return num_moe * (bias_wide - bias_here)


def _is_per_sequence(plan: ReplicaPlan, kind: str) -> bool:
    """True when a layer of ``kind`` holds a bounded cache per sequence: linear-attention
    state. Windowed and chunked layers hold pages of the shared pool (perf/kv_groups.py)."""
    return bool(plan.model.layer_types) and kind == "linear"


def kv_bytes_per_token(plan: ReplicaPlan, stage: int, block_size_tokens: int = 16) -> float:
    """KV bytes one token occupies in one block on one GPU of ``stage`` (its KV heads).

    A model without windows: every attention layer of the stage (linear state takes whole
    pages per sequence: ``KVLayout.state_pages``). With windowed or chunked layers a block is
    a page of one KV cache group (``kv_groups.page_bytes_per_token``); a sequence holds one page
    per group and block of context, the windows' capped (perf/kv_layout.py).
    """
    m = plan.model
    layers = stage_layer_ranges(m.num_layers, plan.pp)[stage]
    if not m.layer_types and m.sparse_attention is None and m.sliding_window is None:
        return len(layers) * kv_elements_per_token_layer(m, plan.tp) * plan.kv_dtype.num_bytes
    if has_window_groups(plan):
        return page_bytes_per_token(plan, stage, block_size_tokens)
    total = 0.0
    for index in layers:
        kind = m.layer_kind(index)
        if not _is_per_sequence(plan, kind):
            total += kv_bytes_per_token_layer(m, plan.tp, kind, plan.kv_dtype.num_bytes)
    return total


def plan_memory(
    plan: ReplicaPlan,
    *,
    block_size_tokens: int = 16,
    gpu_memory_utilization: float = 0.9,
    max_num_batched_tokens: int = 8192,
    expert_ep: int = 0,
    dense_tp: int = 0,
) -> MemoryPlan:
    """The binding stage's memory plan; raises ``InfeasibleError`` when it cannot work
    (``expert_ep``, ``dense_tp``: see ``stage_weight_bytes``)."""
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise ConfigError("gpu_memory_utilization", gpu_memory_utilization, "must be in (0, 1]")
    if block_size_tokens < 1:
        raise ConfigError("block_size_tokens", block_size_tokens, "must be >= 1")
    if max_num_batched_tokens < 1:
        raise ConfigError("max_num_batched_tokens", max_num_batched_tokens, "must be >= 1")
    total = plan.gpu.memory_bytes
    usable = int(total * gpu_memory_utilization)
    activation = _activation_bytes(plan, max_num_batched_tokens)
    overhead = CUDA_CONTEXT_BYTES + (NCCL_BUFFER_BYTES if plan.num_gpus > 1 else 0)
    best: MemoryPlan | None = None
    for stage in range(plan.pp):
        candidate = _stage_memory(
            plan, stage, usable, activation, overhead, block_size_tokens, expert_ep, dense_tp
        )
        if best is None or candidate.num_kv_blocks < best.num_kv_blocks:
            best = candidate
    assert best is not None
    return best


def _stage_memory(
    plan: ReplicaPlan,
    stage: int,
    usable: int,
    activation: int,
    overhead: int,
    block_size_tokens: int,
    expert_ep: int,
    dense_tp: int,
) -> MemoryPlan:
    """One pipeline stage's memory plan: what ``usable`` bytes leave for the KV cache after
    the stage's weights, the activation reserve and ``overhead`` (linear-attention state is
    held in the pool's pages: perf/kv_layout.py);
    raises ``InfeasibleError`` when that holds no KV block (``ConfigError`` when no layer's
    KV grows per token)."""
    total = plan.gpu.memory_bytes
    weights = stage_weight_bytes(plan, stage, expert_ep, dense_tp)
    # Linear-attention state lives in the pool (vLLM V1's MambaSpec groups, perf/kv_groups.py):
    # each sequence takes its state pages at admission, nothing is set aside for it here.
    kv_cache = usable - weights - activation - overhead
    per_token = kv_bytes_per_token(plan, stage, block_size_tokens)
    if kv_cache <= 0:
        raise InfeasibleError(_breakdown(plan, stage, total, usable, weights, activation, overhead))
    if per_token <= 0:
        raise ConfigError("model", plan.model.name, "has no layer whose KV grows per token")
    blocks = int(kv_cache // (per_token * block_size_tokens))
    if blocks < 1:
        raise InfeasibleError(
            _breakdown(plan, stage, total, usable, weights, activation, overhead)
            + f"; {kv_cache / GIB:.2f} GiB left holds no {block_size_tokens}-token KV block"
        )
    return MemoryPlan(
        total,
        usable,
        weights,
        activation,
        overhead,
        kv_cache,
        per_token,
        block_size_tokens,
        blocks,
    )


def _breakdown(
    plan: ReplicaPlan,
    stage: int,
    total: int,
    usable: int,
    weights: int,
    activation: int,
    overhead: int,
) -> str:
    return (
        f"{plan.model.name} on {plan.gpu.name} tp={plan.tp} pp={plan.pp} "
        f"({plan.weight_dtype.value}): stage {stage} needs weights {weights / GIB:.2f} GiB "
        f"+ activations {activation / GIB:.2f} GiB "
        f"+ overhead {overhead / GIB:.2f} GiB > usable {usable / GIB:.2f} GiB "
        f"({total / GIB:.2f} GiB x utilization)"
    )


def moe_layer_count(plan: ReplicaPlan) -> int:
    """MoE layers of the model (for reports)."""
    return sum(is_moe_layer(plan.model, i) for i in range(plan.model.num_layers))
