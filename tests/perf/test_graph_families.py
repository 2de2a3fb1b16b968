"""The op graph and memory plan of the 2025-26 families: formats per module group (gpt-oss's
MXFP4 experts beside bf16 attention), attention priced per layer kind (sliding window, linear
state, sparse top-k), per-sequence state in the memory plan."""

from __future__ import annotations

from dataclasses import replace

import pytest
from factories import a100, h100

from servesim.core.errors import InfeasibleError
from servesim.perf.graph import PlanGraph
from servesim.perf.memory import CUDA_CONTEXT_BYTES
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.specs.dtypes import DType


def _graph(perf: RooflinePerfModel, plan: ReplicaPlan) -> PlanGraph:
    return PlanGraph(plan, perf.calibration)


def _decode(context: int, seqs: int = 32) -> BatchShape:
    return BatchShape.from_lists(decode_contexts=[context] * seqs)


def test_gpt_oss_20b_memory_by_hand(perf: RooflinePerfModel) -> None:
    mem = perf.memory_plan(ReplicaPlan(resolve_model("gpt-oss-20b"), h100()))
    h, vocab = 2880, 201088
    experts = 24 * 32 * 3 * h * h * (0.5 + 1 / 32)  # MXFP4: 13,219,200 bytes per expert
    attention = 24 * (h * (4096 + 2 * 512) + 4096 * h) * 2  # bf16, unconverted
    per_layer_16bit = 2 * h + h * 32 + (4096 + 1024) + 32 + 32 * (2 * h + h) + 64
    other = (24 * per_layer_16bit + 2 * vocab * h + h) * 2  # norms, router, biases, sinks...
    assert mem.weight_bytes == int(experts + attention + other)
    # vLLM's hybrid manager: 12 full + 12 sliding layers make two groups of 12; a block is
    # a page of 12 layers, drawn from one pool by both groups (the window's pages freed as
    # it slides: perf/kv_layout.py), so nothing is reserved per sequence
    assert mem.kv_bytes_per_token == 12 * 2 * 8 * 64 * 2
    assert mem.overhead_bytes == CUDA_CONTEXT_BYTES


def test_gpt_oss_120b_one_h100_in_mxfp4_not_two_in_bf16(perf: RooflinePerfModel) -> None:
    spec = resolve_model("gpt-oss-120b")
    mxfp4 = perf.memory_plan(ReplicaPlan(spec, h100()))
    assert mxfp4.weight_bytes < 64 * 2**30 and mxfp4.num_kv_blocks > 0
    bf16 = replace(spec, quantization=None)  # the same architecture without the checkpoint
    with pytest.raises(InfeasibleError, match="weights"):
        perf.memory_plan(ReplicaPlan(bf16, h100(), tp=2))
    assert perf.memory_plan(ReplicaPlan(bf16, h100(), tp=4)).num_kv_blocks > 0


def test_groups_run_their_own_formats(perf: RooflinePerfModel) -> None:
    graph = _graph(perf, ReplicaPlan(resolve_model("gpt-oss-20b"), h100()))
    experts, attention = graph.groups["experts"], graph.groups["attention"]
    assert experts.weight_bytes == 0.5 + 1 / 32
    assert experts.moe_label == "mxfp4"  # the measured w4a16_mxfp4 MoE tables
    assert attention.weight_bytes == 2.0 and attention.gemm_label == "bf16"
    ops = {op.name: op for op in graph.token_ops(1)}
    # one decode token: the experts' op reads top-4 MXFP4 experts, qkv_proj bf16 weights
    assert ops["qkv_proj+bias"].num_bytes == pytest.approx(24 * 2880 * 5120 * 2.0, rel=0.01)
    touched = 32 * (1 - (31 / 32) ** 4)  # expected distinct experts of 4 picks (perf.moe)
    assert ops["moe_experts"].num_bytes == pytest.approx(24 * touched * 13_219_200, rel=0.01)


def test_fp8_block_checkpoint_is_native_on_hopper_and_dequantised_on_ampere(
    perf: RooflinePerfModel,
) -> None:
    spec = resolve_model("deepseek-v3.2")
    hopper = _graph(perf, ReplicaPlan(spec, get_gpu("h200"), tp=8)).groups["experts"]
    assert hopper.gemm_label == "fp8_block" and hopper.in_bytes == 1.0
    assert hopper.peak_flops_per_s == get_gpu("h200").peak_flops(DType.FP8)
    ampere = _graph(perf, ReplicaPlan(spec, a100(), tp=8)).groups["experts"]
    assert ampere.in_bytes == 2.0 and ampere.peak_flops_per_s == a100().peak_flops(DType.BF16)
    assert ampere.weight_bytes == pytest.approx(1.0 + 4 / 128**2)


def test_sliding_layers_attend_to_the_window(perf: RooflinePerfModel) -> None:
    graph = _graph(perf, ReplicaPlan(resolve_model("gpt-oss-20b"), h100()))
    kv = graph.kv_bytes
    _, dec = graph.attention(_decode(4096))
    _, full = graph.kernels.attention_s(graph.shapes, _decode(4096), None, kv)
    _, window = graph.kernels.attention_s(graph.shapes, _decode(4096), 128, kv)
    _, short = graph.kernels.attention_s(graph.shapes, _decode(128), None, kv)
    assert window.num_bytes == short.num_bytes  # a sliding layer reads min(ctx, 128) tokens
    assert dec.num_bytes == pytest.approx((full.num_bytes + window.num_bytes) / 2)
    assert dec.time_s == pytest.approx((full.time_s + window.time_s) / 2)
    assert dec.time_s < full.time_s


def test_linear_layers_cost_the_same_at_any_context(perf: RooflinePerfModel) -> None:
    graph = _graph(perf, ReplicaPlan(resolve_model("qwen3-next-80b-a3b"), h100(), tp=4))
    kv = graph.kv_bytes
    state = (32 // 4) * 128 * 128  # value heads on this GPU x dk x dv
    io = (2 * 2048 + 2 * 4096) // 4 * 2.0
    linear_bytes = 32 * (2 * state * 2.0 + io)  # each sequence's state read and written
    for context in (1_000, 100_000):
        _, dec = graph.attention(_decode(context))
        _, full = graph.kernels.attention_s(graph.shapes, _decode(context), None, kv)
        assert dec.num_bytes == pytest.approx(0.25 * full.num_bytes + 0.75 * linear_bytes)
    names = {op.name: op.count for op in graph.token_ops(8)}
    assert names["in_proj_qkvz"] == 36 and names["qkv_proj"] == 12


def test_sparse_layers_read_the_top_k_and_index_everything(perf: RooflinePerfModel) -> None:
    graph = _graph(perf, ReplicaPlan(resolve_model("deepseek-v3.2"), get_gpu("h200"), tp=8))
    long_ctx, topk = _decode(100_000), _decode(2048)
    _, dec = graph.attention(long_ctx)
    _, main = graph.kernels.attention_s(graph.shapes, topk, None, graph.kv_bytes)
    assert dec.num_bytes > main.num_bytes  # plus the indexer over all 100k keys
    indexer = dec.num_bytes - main.num_bytes
    assert indexer == pytest.approx(32 * 100_000 * 128 * 1.0, rel=0.01)  # fp8 keys of 128
    assert "indexer_wq_b" in {op.name for op in graph.token_ops(4)}


@pytest.mark.parametrize("name", ["llama-3.1-8b", "mistral-7b", "deepseek-v3"])
def test_uniform_models_price_attention_as_before(perf: RooflinePerfModel, name: str) -> None:
    model = resolve_model(name)
    gpu, tp = (get_gpu("h200"), 8) if name == "deepseek-v3" else (h100(), 1)
    graph = _graph(perf, ReplicaPlan(model, gpu, tp=tp))
    batch = BatchShape.from_lists([(512, 1024)], [8000] * 16)
    expected = graph.kernels.attention_s(graph.shapes, batch, model.sliding_window, graph.kv_bytes)
    assert graph.attention(batch) == expected


@pytest.mark.parametrize(
    ("name", "gpu", "tp"),
    [
        ("gpt-oss-120b", "h100-sxm", 1),
        ("llama-4-scout", "h100-sxm", 4),
        ("llama-4-maverick", "h200", 8),
        ("qwen3-next-80b-a3b", "h100-sxm", 4),
        ("deepseek-v3.2", "h200", 8),
        ("glm-4.5", "h200", 8),
        ("kimi-k2", "h200", 8),
    ],
)
def test_new_families_run_through_the_perf_model(
    perf: RooflinePerfModel, name: str, gpu: str, tp: int
) -> None:
    plan = ReplicaPlan(resolve_model(name), get_gpu(gpu), tp=tp)
    assert perf.memory_plan(plan).num_kv_blocks > 0
    short = sum(perf.iteration_time(plan, _decode(1_000)).stage_s)
    long = sum(perf.iteration_time(plan, _decode(50_000)).stage_s)
    assert 0 < short <= long
