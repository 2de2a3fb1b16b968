"""Hand-computed FLOPs and bytes of one Llama-2-7B layer and one Mixtral layer."""

from __future__ import annotations

import pytest
from factories import h100, llama2_7b, mixtral_8x7b

from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, OpCost, ReplicaPlan


def _op(ops: list[OpCost], name: str) -> OpCost:
    return next(o for o in ops if o.name == name)


def _per_layer(op: OpCost) -> tuple[float, float]:
    return op.flops / op.count, op.num_bytes / op.count


def test_llama2_7b_prefill_layer(perf: RooflinePerfModel) -> None:
    plan = ReplicaPlan(llama2_7b(), h100())
    ops = perf.explain(plan, BatchShape.from_lists(prefill=[(512, 0)]))
    flops, nbytes = _per_layer(_op(ops, "qkv_proj"))
    assert flops == 2 * 512 * 4096 * 12288
    assert nbytes == 4096 * 12288 * 2 + 512 * 4096 * 2 + 512 * 12288 * 2
    assert _per_layer(_op(ops, "o_proj"))[0] == 2 * 512 * 4096 * 4096
    assert _per_layer(_op(ops, "mlp_up_gate"))[0] == 2 * 512 * 4096 * 22016
    assert _per_layer(_op(ops, "mlp_down"))[0] == 2 * 512 * 11008 * 4096
    # causal attention: 512*513/2 query-key pairs, 4*d FLOPs each per head
    attn = _op(ops, "attn_prefill")
    assert attn.count == 32
    assert attn.flops / attn.count == 4 * (512 * 513 / 2) * 128 * 32
    # LM head once per sampling sequence, not per prefill token
    assert _op(ops, "lm_head").flops == 2 * 1 * 4096 * 32000


def test_llama2_7b_decode_layer(perf: RooflinePerfModel) -> None:
    plan = ReplicaPlan(llama2_7b(), h100())
    ops = perf.explain(plan, BatchShape.from_lists(decode_contexts=[1000] * 16))
    attn = _op(ops, "attn_decode")
    flops, nbytes = _per_layer(attn)
    assert flops == 4 * 16000 * 128 * 32
    kv = 16000 * 2 * 32 * 128 * 2  # every token's K and V, bf16
    q_and_out = 16 * 32 * 128 * 2 * 2
    assert nbytes == kv + q_and_out
    assert attn.bound == "memory"
    assert _per_layer(_op(ops, "qkv_proj"))[0] == 2 * 16 * 4096 * 12288
    assert _op(ops, "lm_head").flops == 2 * 16 * 4096 * 32000


def test_mixtral_layer_decode() -> None:
    perf = RooflinePerfModel()
    plan = ReplicaPlan(mixtral_8x7b(), h100())
    ops = perf.explain(plan, BatchShape.from_lists(decode_contexts=[100] * 4))
    router = _op(ops, "moe_router")
    assert router.flops / router.count == 2 * 4 * 4096 * 8
    experts = _op(ops, "moe_experts")
    # 4 tokens x top-2 = 8 token-expert pairs; distinct experts hit = 8 (1 - (7/8)^8)
    touched = 8 * (1 - (7 / 8) ** 8)
    assert experts.flops / experts.count == pytest.approx(2 * 8 * 3 * 4096 * 14336)
    weights = touched * 3 * 4096 * 14336 * 2
    acts = 8 * (2 * 4096 + 2 * 14336 + 14336) * 2
    assert experts.num_bytes / experts.count == pytest.approx(weights + acts)
    assert experts.bound == "memory"  # few tokens, most experts' weights read


def test_mixtral_prefill_touches_all_experts() -> None:
    perf = RooflinePerfModel()
    plan = ReplicaPlan(mixtral_8x7b(), h100())
    ops = perf.explain(plan, BatchShape.from_lists(prefill=[(4096, 0)]))
    experts = _op(ops, "moe_experts")
    weights = 8 * 3 * 4096 * 14336 * 2
    acts = 8192 * (2 * 4096 + 3 * 14336) * 2
    assert experts.num_bytes / experts.count == pytest.approx(weights + acts, rel=1e-6)
    assert experts.bound == "compute"


def test_sliding_window_caps_decode_context() -> None:
    from dataclasses import replace

    perf = RooflinePerfModel()
    windowed = replace(llama2_7b(), name="w", sliding_window=512)
    plan = ReplicaPlan(windowed, h100())
    ops = perf.explain(plan, BatchShape.from_lists(decode_contexts=[4000, 4000]))
    assert _op(ops, "attn_decode").flops / 32 == 4 * (2 * 512) * 128 * 32


def test_gqa_tp_beyond_kv_heads_replicates() -> None:
    from factories import llama31_70b

    perf = RooflinePerfModel()
    ops = perf.explain(
        ReplicaPlan(llama31_70b(), h100(), tp=16), BatchShape.from_lists(decode_contexts=[10])
    )
    # 64/16 = 4 query heads and 1 (replicated) KV head per GPU: (4 + 2) * 128 columns
    assert _per_layer(_op(ops, "qkv_proj"))[0] == 2 * 1 * 8192 * 6 * 128


def test_mla_decode_reads_latent_kv() -> None:
    from factories import deepseek_v3

    perf = RooflinePerfModel()
    plan = ReplicaPlan(deepseek_v3(), h100(), tp=8, ep=8)
    ops = perf.explain(plan, BatchShape.from_lists(decode_contexts=[1000] * 4))
    attn = _op(ops, "attn_decode")
    heads = 128 // 8
    assert attn.count == 61
    # latent (512) + rope key (64) per token, bf16, shared by all heads; q in, latent out
    assert attn.num_bytes / attn.count == 4000 * 576 * 2 + 4 * heads * (576 + 512) * 2
    assert attn.flops / attn.count == 2 * 4000 * heads * (576 + 512)
    names = {o.name for o in ops}
    assert {"mla_absorb_q", "mla_absorb_o", "q_a_proj", "kv_a_proj", "ep_dispatch"} <= names
    assert _op(ops, "mlp_up_gate").count == 3  # first three layers are dense
    assert _op(ops, "moe_experts").count == 58
    from servesim.perf.memory import kv_bytes_per_token

    assert kv_bytes_per_token(plan, 0) == 61 * 576 * 2  # MLA latent is not split by TP
