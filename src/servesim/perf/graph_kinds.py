"""Pieces of the op graph that vary by module group or layer kind.

``group_kernels`` decides how one module group's GEMMs run (its weight format, the format its
inputs are in, the measured tables that price it, the compute peak); ``linear_attention``
prices gated DeltaNet's state update (Qwen3-Next), which replaces attention over a KV cache;
``weighted`` combines the per-kind costs into the per-layer mean the perf model multiplies by
each stage's layer count.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.perf.attention import DECODE_COMPUTE_EFF, PREFILL_MEM_EFF, ZERO, AttnCost
from servesim.perf.kernel_shapes import gemm_label, moe_label
from servesim.perf.types import BatchShape, ReplicaPlan
from servesim.specs.dtypes import DType, gemm_activation
from servesim.specs.layers import DELTANET_CHUNK_TOKENS, STATE_BYTES, LinearAttentionSpec
from servesim.specs.quant import ModuleFormat

ACT_BYTES = 2.0  # activations stay 16-bit between kernels


@dataclass(frozen=True, slots=True)
class GroupKernels:
    """How one module group's GEMMs run: weight bytes, input bytes, tables, compute peak."""

    weight_bytes: float  # bytes per weight element read by the GEMM
    in_bytes: float  # bytes per input activation element
    gemm_label: str | None  # measured GEMM table (None: the legacy roofline)
    moe_label: str | None  # measured MoE table (None: the legacy grouped GEMM)
    peak_flops_per_s: float  # the compute peak of the format the GEMM runs in


def group_kernels(
    plan: ReplicaPlan, fmt: ModuleFormat, plain: GroupKernels, peak16: float
) -> GroupKernels:
    """The kernels of a group stored in ``fmt``.

    A group in the plan's ``--dtype`` keeps the plan's bytes and peak (``plain``, as before
    formats per group existed) and the tables of its format's nearest measured one. A group the
    checkpoint quantises runs its format's activations where the GPU has tensor cores for them,
    else dequantises to 16-bit (vLLM's Marlin path for fp8 on Ampere), reading its scales with
    the weights.
    """
    if not fmt.is_checkpoint:
        kernel, act = plan.weight_dtype.spec.kernel_dtype, plan.activation_dtype
        w, in_bytes, peak = plain.weight_bytes, plain.in_bytes, plain.peak_flops_per_s
    else:
        kernel = fmt.dtype.spec.kernel_dtype
        act = gemm_activation(fmt.dtype, plan.gpu.architecture, plan.gpu.peak_flops_per_s)
        w, in_bytes = fmt.bytes_per_weight, min(ACT_BYTES, act.num_bytes)
        peak = plan.gpu.peak_flops_per_s.get(act) or peak16
    label = gemm_label(kernel, act)
    if fmt.dtype == DType.FP8_BLOCK and act == DType.FP8:
        label = "fp8_block"  # DeepSeek-style 128x128 block scales have their own tables
    # the MoE tables hold block fp8 apart from per-tensor fp8 too (FlashInfer CUTLASS on Hopper)
    moe = "fp8_block" if label == "fp8_block" else moe_label(kernel, act)
    return GroupKernels(w, in_bytes, label, moe, peak)


def linear_attention(
    lin: LinearAttentionSpec,
    tp: int,
    batch: BatchShape,
    peak16: float,
    bw: float,
    launch_s: float,
) -> tuple[AttnCost, AttnCost]:
    """Gated delta rule on one GPU's value heads, (prefill, decode).

    Decode reads and writes each sequence's state once (memory-bound, independent of the
    context); prefill runs the chunked form, 8 * dk * dv FLOPs per token and head plus the
    intra-chunk products over chunks of 64 tokens.
    """
    heads = lin.num_value_heads // tp
    dk, dv = lin.key_head_dim, lin.value_head_dim
    state = heads * dk * dv
    io = (2 * lin.key_dim + 2 * lin.value_dim) // tp * ACT_BYTES  # q, k, v in, output out
    pre = dec = ZERO
    if batch.num_prefill_tokens:
        t = batch.num_prefill_tokens
        flops = t * (8.0 * state + 2.0 * DELTANET_CHUNK_TOKENS * heads * (dk + dv))
        nbytes = t * io + 2.0 * batch.num_prefill_seqs * state * STATE_BYTES
        pre = _roofline(flops, nbytes, peak16, bw, launch_s)
    if batch.num_decode_seqs:
        n = batch.num_decode_seqs
        nbytes = n * (2.0 * state * STATE_BYTES + io)
        dec = _roofline(n * 8.0 * state, nbytes, peak16, bw, launch_s)
    return pre, dec


def _roofline(flops: float, nbytes: float, peak: float, bw: float, launch_s: float) -> AttnCost:
    """A kernel at the attention kernels' efficiencies: the slower of compute and memory."""
    t_c = flops / (peak * DECODE_COMPUTE_EFF)
    t_m = nbytes / (bw * PREFILL_MEM_EFF)
    return AttnCost(flops, nbytes, launch_s + max(t_c, t_m), "compute" if t_c >= t_m else "memory")


def weighted(parts: list[tuple[float, AttnCost]]) -> AttnCost:
    """Sum of weighted costs (weights: each kind's share of the layers, or 1 to add kernels);
    the bound is the one of the part that takes longest."""
    live = [(w, c) for w, c in parts if c.time_s > 0]
    if not live:
        return ZERO
    bound = max(live, key=lambda wc: wc[0] * wc[1].time_s)[1].bound
    return AttnCost(
        sum(w * c.flops for w, c in live),
        sum(w * c.num_bytes for w, c in live),
        sum(w * c.time_s for w, c in live),
        bound,
    )
