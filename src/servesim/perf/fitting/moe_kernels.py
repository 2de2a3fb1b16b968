"""Which kernel each MoE fit measured, and the portable kernel that stands in where it cannot run.

The tables time each format with the kernel vLLM picks on that GPU: on Hopper FlashInfer's
CUTLASS grouped GEMM for fp8 and the triton_kernels path for MXFP4, on L40S Triton and Marlin.
A GPU of another architecture borrowing a Hopper fit must not get a Hopper-only kernel, so each
arch-bound fit nests the same format measured with a portable kernel on the same GPU (the
tables hold both for fp8_block), used by ``opmodels.moe_layer.for_gpu``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from servesim.perf.fitting.heldout import Rows
from servesim.perf.opmodels.moe_layer import MoELayerFit
from servesim.specs.gpu import GPUSpec

#: Kernels that run only on the architectures listed (FlashInfer's CUTLASS grouped GEMM is an
#: SM90+ kernel: on L40S vLLM 0.24 runs Triton for fp8 and fp8_block); every other kernel of the
#: tables (Triton fused MoE, Marlin) runs on any architecture. The triton_kernels MXFP4 path is
#: Hopper-only too, but its only stand-in in the Hopper tables (compressed-tensors W4A4 Marlin)
#: is a different quantisation method and transfers worse than the gpt-oss fit itself (leave
#: L40S out, MXFP4 from H100: 86-107% MAPE through it, 28-70% without), so it is not swapped.
ARCH_BOUND_KERNELS = (("flashinfer", ("hopper", "blackwell")),)
#: Label suffix of a format's rows measured with its portable kernel (fitted, and nested in the
#: arch-bound fit as ``portable``).
PORTABLE = "~portable"


def kernel_archs(kernel: str) -> tuple[str, ...]:
    """Architectures ``kernel`` runs on (empty: any)."""
    for marker, archs in ARCH_BOUND_KERNELS:
        if marker in kernel:
            return archs
    return ()


def portable_kernels(cols: dict[str, np.ndarray], primary: dict[str, str]) -> dict[str, str]:
    """Per table dtype whose default kernel is arch-bound, its most measured portable kernel."""
    out: dict[str, str] = {}
    for dtype, kernel in primary.items():
        if not kernel_archs(kernel):
            continue
        sources = cols["kernel_source"][cols["moe_dtype"] == dtype].astype(str)
        names, counts = np.unique(sources, return_counts=True)
        portable = [(c, n) for n, c in zip(names, counts, strict=True) if not kernel_archs(n)]
        if portable:
            out[dtype] = str(min(portable, key=lambda cn: (-cn[0], cn[1]))[1])
    return out


def primary_kernels(cols: dict[str, np.ndarray]) -> dict[str, str]:
    """Per table dtype, the kernel with most rows (ties by name): the stack's default path."""
    out: dict[str, str] = {}
    for dtype in sorted(set(cols["moe_dtype"])):
        sources = cols["kernel_source"][cols["moe_dtype"] == dtype]
        names, counts = np.unique(sources.astype(str), return_counts=True)
        out[str(dtype)] = str(names[np.lexsort((names, -counts))[0]])
    return out


def with_kernels(fits: dict[str, MoELayerFit], rows: Rows, gpu: GPUSpec) -> dict:
    """Each fit with its GPU, kernel and the architectures it runs on; an arch-bound one gets
    its format's portable fit, or for per-tensor fp8 (no portable rows: vLLM's Triton W8A8
    path is not in the Hopper tables) the block-scaled format's, at per-tensor weight bytes."""
    out: dict[str, MoELayerFit] = {}
    for label, layer in fits.items():
        kernel = str(rows["kernel"][rows["dtype"] == label][0]) if "kernel" in rows else ""
        out[label] = replace(layer, fit_gpu=gpu.name, kernel=kernel, archs=kernel_archs(kernel))
    for label, layer in out.items():
        if PORTABLE in label or not layer.archs:
            continue
        stand_in = out.get(label + PORTABLE) or out.get("fp8_block" + PORTABLE)
        if stand_in is not None and (label + PORTABLE in out or label == "fp8"):
            stand_in = replace(stand_in, weight_bytes=layer.weight_bytes)
            out[label] = replace(layer, portable=stand_in)
    return out
