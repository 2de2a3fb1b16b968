"""The legacy (``vllm-0.6``) cost model scored on the same measured rows: the "before" figures.

Each family's rows carry the aggregate columns its runtime formula takes; here the same rows go
through ``KernelSet`` on the legacy stack (the Vidur-fitted GEMM curve, documented attention
efficiencies, NCCL alpha-beta fits and vLLM's custom all-reduce latency), so a report shows
what the cost model predicted for these kernels before the tables were fitted.
"""

from __future__ import annotations

import numpy as np

from servesim.perf.attention import AttnCost
from servesim.perf.calibration import Calibration
from servesim.perf.fitting.heldout import Rows
from servesim.perf.kernel_set import KernelSet
from servesim.perf.kernel_shapes import GemmShape, MoeShape
from servesim.perf.shapes import attention_shapes
from servesim.perf.stacks import LEGACY_STACK
from servesim.perf.types import BatchShape
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec

_GEMM_FORMATS = {"bf16": (2.0, 2.0, DType.BF16), "fp8": (1.0, 1.0, DType.FP8)}


def legacy_predict(family: str, calibration: Calibration, gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """Seconds the legacy model predicts for each row (NaN where it has no formula)."""
    kernels = KernelSet(calibration, LEGACY_STACK, gpu)
    n = len(rows["latency_s"])
    out = np.full(n, np.nan)
    for i in range(n):
        out[i] = _ROW[family](kernels, gpu, rows, i)
    return out


def _gemm(kernels: KernelSet, gpu: GPUSpec, rows: Rows, i: int) -> float:
    label = str(rows["dtype"][i])
    # the legacy model has no activation-quantisation kernel of its own (quantize rows)
    if rows["op"][i] != "gemm" or label not in _GEMM_FORMATS:
        return float("nan")
    w, a, dtype = _GEMM_FORMATS[label]
    peak = gpu.peak_flops_per_s.get(dtype) or gpu.peak_flops(DType.BF16)
    shape = GemmShape(float(rows["m"][i]), int(rows["n"][i]), int(rows["k"][i]), None, w, a)
    return kernels.gemm_s(shape, peak)


def _attention(kernels: KernelSet, gpu: GPUSpec, rows: Rows, i: int) -> float:
    heads, kv_heads = int(rows["num_q_heads"][i]), int(rows["num_kv_heads"][i])
    head_dim = int(rows["head_dim"][i])
    layer = attention_shapes(heads, kv_heads, head_dim)
    seqs = int(rows["num_seqs"][i])
    window = int(rows["window"][i]) or None
    kv_bytes = float(rows["kv_bytes"][i])
    if rows["op"][i] == "prefill_attention":
        tokens = int(rows["num_tokens"][i])
        batch = BatchShape(
            num_prefill_seqs=seqs,
            num_prefill_tokens=tokens,
            prefill_chunk_sq=tokens * tokens // max(seqs, 1),
            max_prefill_chunk_tokens=tokens // max(seqs, 1),
        )
        cost: AttnCost = kernels.attention_s(layer, batch, window, kv_bytes)[0]
        return cost.time_s
    context = int(rows["context_tokens"][i])
    batch = BatchShape(
        num_decode_seqs=seqs,
        decode_context_tokens=context,
        max_decode_context_tokens=context // max(seqs, 1),
    )
    return kernels.attention_s(layer, batch, window, kv_bytes)[1].time_s


def _moe(kernels: KernelSet, gpu: GPUSpec, rows: Rows, i: int) -> float:
    label = str(rows["dtype"][i])
    if label not in _GEMM_FORMATS:
        return float("nan")
    w, _, dtype = _GEMM_FORMATS[label]
    shape = MoeShape(
        num_tokens=int(rows["num_tokens"][i]),
        hidden=int(rows["hidden"][i]),
        inter=int(rows["inter"][i]),
        topk=int(rows["topk"][i]),
        num_experts=int(rows["num_experts"][i]),
        ep=int(rows["ep"][i]),
        assignments=float(rows["assignments"][i]),
        experts_touched=float(rows["experts_touched"][i]),
        num_matrices=int(rows["num_matrices"][i]),
        label=None,
        weight_bytes=w,
    )
    peak = gpu.peak_flops_per_s.get(dtype) or gpu.peak_flops(DType.BF16)
    return kernels.moe_experts_s(shape, peak)


def _collective(kernels: KernelSet, gpu: GPUSpec, rows: Rows, i: int) -> float:
    collective = str(rows["collective"][i])
    custom = str(rows["implementation"][i]).startswith("custom")
    n, num_bytes = int(rows["num_gpus"][i]), float(rows["num_bytes"][i])
    return kernels.collective_s(gpu.intra_node_link, collective, n, num_bytes, custom)[0]


def _mla(kernels: KernelSet, gpu: GPUSpec, rows: Rows, i: int) -> float:
    from servesim.perf.fitting.mla import mla_layer, row_batch

    layer = mla_layer(int(rows["num_heads"][i]))
    costs = kernels.attention_s(layer, row_batch(rows, i), None, float(rows["kv_bytes"][i]))
    return costs[1 if rows["op"][i] == "mla_decode" else 0].time_s


_ROW = {
    "gemm": _gemm,
    "attention": _attention,
    "moe": _moe,
    "collectives": _collective,
    "mla": _mla,
}
