"""The shapes a ``KernelSet`` prices and the fitted kernel each format pair runs.

Kept apart from ``kernel_set`` so the op graph's builders (``graph_kinds``, ``graph_moe``) and
the op query name kernels and shapes without loading the fits.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.specs.dtypes import DType

ACT_BYTES = 2.0  # activations between kernels stay 16-bit


@dataclass(frozen=True, slots=True)
class GemmShape:
    """A GEMM of ``m`` tokens by a ``k`` x ``n`` weight and the formats it runs in.

    Attributes:
        label: the fitted kernel it runs (``bf16``, ``fp8``, ``fp8_block``) or None where no
            table covers the format (weight-only int4/int8: the legacy roofline prices them).
        weight_bytes: bytes per weight element.
        in_bytes: bytes per input activation element.
    """

    m: float
    n: int
    k: int
    label: str | None = "bf16"
    weight_bytes: float = 2.0
    in_bytes: float = 2.0


@dataclass(frozen=True, slots=True)
class MoeShape:
    """One MoE layer's routed-expert work on the busiest rank of its EP group.

    Attributes:
        num_tokens: tokens entering the layer (routing and permutation run over all of them).
        hidden: model width.
        inter: expert FFN columns on this rank (after TP).
        topk: experts per token.
        num_experts: routed experts of the layer (all ranks).
        ep: expert-parallel degree.
        assignments: expected token-expert pairs on the busiest rank.
        experts_touched: expected distinct experts whose weights that rank reads.
        num_matrices: 3 for gated experts (gate, up, down), 2 otherwise.
        label: the measured MoE kernel's format (``bf16``, ``fp8``, ...), None: legacy only.
        weight_bytes: bytes per expert weight element.
    """

    num_tokens: int
    hidden: int
    inter: int
    topk: int
    num_experts: int
    ep: int
    assignments: float
    experts_touched: float
    num_matrices: int = 3
    label: str | None = "bf16"
    weight_bytes: float = 2.0


#: The W4A4 GEMM kernels, derived from fp8 (``opmodels/fp4.py``): no fp4 tables exist.
FP4_LABELS = ("fp4", "mxfp4_w4a4")


def gemm_label(weight: DType, activation: DType, quantised: bool = True) -> str | None:
    """The measured GEMM kernel a weight/activation format pair runs (None: no table)."""
    if not quantised:
        return "bf16"
    if activation == DType.FP8:
        return "fp8"  # vLLM's per-tensor W8A8 (cutlass scaled_mm with dynamic quantisation)
    if activation == DType.FP4:  # W4A4, derived from fp8: opmodels/fp4.py
        return "mxfp4_w4a4" if weight == DType.MXFP4_W4A4 else "fp4"
    if weight in (DType.BF16, DType.FP16) and activation in (DType.BF16, DType.FP16):
        return "bf16"
    return None


def moe_label(weight: DType, activation: DType) -> str | None:
    """The measured MoE kernel a weight/activation format pair runs (None: no table)."""
    if activation == DType.FP8:
        return "fp8"
    if activation == DType.FP4:  # W4A4 experts, derived: opmodels/moe_fp4.py
        return "mxfp4_w4a4" if weight == DType.MXFP4_W4A4 else "fp4"
    if weight in (DType.BF16, DType.FP16):
        return "bf16"
    if weight == DType.INT4:
        return "int4"  # weight-only int4 (Marlin MoE)
    if weight in (DType.FP4, DType.MXFP4_W4A4):
        return "mxfp4"  # fp4 weights, 16-bit math: the measured w4a16 fp4 MoE tables
    return None
