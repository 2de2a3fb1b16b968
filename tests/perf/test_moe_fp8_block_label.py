"""Block-scaled fp8 experts are priced by the block fp8 MoE fit, not the per-tensor one: the
tables measure them apart (H200 vLLM 0.24 FlashInfer CUTLASS: per-tensor fitted at 26% of the
bandwidth, block fp8 at 90%), and ``perf --op moe`` / the op graph read the label the checkpoint
format names."""

from __future__ import annotations

import pytest

from servesim.perf.calibration import load_calibration
from servesim.perf.kernel_set import KernelSet
from servesim.perf.op_query import op_time_s
from servesim.perf.opmodels.moe_layer import moe_layer_s
from servesim.specs.catalog import get_gpu

# a DeepSeek-V3 MoE layer at EP 8, 64 decode tokens
SHAPE = dict(num_tokens=64, hidden=7168, inter=2048, topk=8, num_experts=256, ep=8)


def test_fp8_block_moe_reads_the_block_fit() -> None:
    gpu = get_gpu("h200-sxm")
    kernels = KernelSet(load_calibration(), "vllm-0.24", gpu)
    fit = kernels._moe["fp8_block"]
    # uniform routing: 64 x 8 / 8 = 64 pairs per rank; each of its 32 experts touched with
    # probability 1 - (1 - 1/256)^512
    touched = 32 * (1.0 - (1.0 - 1.0 / 256) ** 512)
    expected = moe_layer_s(
        fit,
        gpu,
        num_tokens=64,
        hidden=7168,
        inter=2048,
        topk=8,
        num_experts=256,
        ep=8,
        assignments=64.0,
        experts_touched=touched,
        l2_warm=False,  # a serving step's layer: its weights left the L2 (``moe_l2``)
    )
    block = op_time_s(gpu, "moe", dtype="fp8_block", **SHAPE).time_s
    assert block == pytest.approx(expected, rel=1e-9)
    # the per-tensor fit (a slower Hopper kernel in these tables) prices plain fp8 only
    assert op_time_s(gpu, "moe", dtype="fp8", **SHAPE).time_s > 2 * block
