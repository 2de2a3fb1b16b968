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

#: Kernels vLLM runs only on the architectures listed: FlashInfer's CUTLASS fp8 grouped GEMM is
#: its Hopper pick (on L40S vLLM 0.24 runs Triton for fp8 and fp8_block; on Blackwell its fp8 MoE
#: oracle, ``fused_moe/oracle/fp8.py`` ``_get_priority_backends``, tries FlashInfer TRTLLM-gen
#: first, which takes per-tensor and block fp8 on capability family 100 only:
#: ``experts/trtllm_fp8_moe.py``); every other kernel of the tables (Triton fused MoE, Marlin)
#: runs on any architecture. The triton_kernels MXFP4 path is
#: Hopper-only too, but its only stand-in in the Hopper tables (compressed-tensors W4A4 Marlin)
#: is a different quantisation method and transfers worse than the gpt-oss fit itself (leave
#: L40S out, MXFP4 from H100: 86-107% MAPE through it, 28-70% without), so it is not swapped.
ARCH_BOUND_KERNELS = (("flashinfer", ("hopper",)),)
#: Marks a Blackwell stand-in's ``kernel`` (derived, no measurement behind it).
BLACKWELL_PREFIX = "derived-blackwell-fp8:"
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
            out[label] = replace(out[label], portable=stand_in)
        bf16 = out.get("bf16")
        if bf16 is not None and out[label].compute_dtype == "fp8":
            out[label] = replace(out[label], blackwell=blackwell_stand_in(bf16, layer, label))
    return out


def blackwell_stand_in(bf16: MoELayerFit, layer: MoELayerFit, label: str) -> MoELayerFit:
    """The fp8 MoE vLLM runs on Blackwell (FlashInfer TRTLLM-gen), which no table measures: the
    stack's bf16 fit (its fused kernel's fixed cost, streaming, overlap, tiles and correction)
    at the format's weight bytes, its math at the fp8 peak.

    Not the Hopper fp8 fits: FlashInfer's CUTLASS per-tensor fp8 runs slower than bf16 in the
    Hopper tables (H200 fitted at 26% of the bandwidth and 15% of the fp8 peak, bf16 at
    ~80-95% / ~70%), a kernel vLLM does not pick on Blackwell; nor the block-scaled Triton fit
    (a Triton kernel, which vLLM ranks below TRTLLM-gen and CUTLASS there). Only what the
    format changes is changed, as the W4A4 experts derive from the w4a16 fit
    (``opmodels.moe_fp4``); no default-tile traffic (TRTLLM-gen runs its own tiles)."""
    return replace(
        bf16,
        weight_bytes=layer.weight_bytes,
        compute_dtype="fp8",
        traffic_eff=0.0,
        kernel=f"{BLACKWELL_PREFIX}{label} from {bf16.kernel}",
        archs=(),
        portable=None,
        blackwell=None,
    )
