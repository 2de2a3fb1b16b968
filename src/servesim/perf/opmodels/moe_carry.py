"""MoE fits carried to a GPU they were not measured on (split from ``moe_layer``, which prices
the layer with them): ``for_gpu`` and its stated rules (``_carried_over``)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from servesim.perf.opmodels.moe_tiles import same_die_stream_ratio
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec

if TYPE_CHECKING:
    from servesim.perf.opmodels.moe_layer import MoELayerFit


def for_gpu(fit: MoELayerFit, gpu: GPUSpec) -> MoELayerFit:
    """The fit that prices ``gpu``: ``fit`` itself on the GPU it was measured on, else carried
    over by stated rules (``_carried_over``)."""
    if not fit.fit_gpu or fit.fit_gpu == gpu.name:
        return fit
    key = (id(fit), gpu.name)
    hit = _CARRIED.get(key)
    if hit is None or hit[0] is not fit:  # ids are reused once a fit is collected
        hit = (fit, _carried_over(fit, gpu))
        if len(_CARRIED) >= 256:
            _CARRIED.clear()
        _CARRIED[key] = hit
    return hit[1]


#: (id(fit), target GPU) -> (fit, carried-over fit): ``moe_layer_s`` runs per priced batch
_CARRIED: dict[tuple[int, str], tuple[MoELayerFit, MoELayerFit]] = {}


def _kernel_on(fit: MoELayerFit, gpu: GPUSpec) -> MoELayerFit:
    """The fit of the kernel vLLM runs on ``gpu``'s architecture: ``fit`` itself, or its
    Blackwell or portable stand-in where its kernel is bound to other architectures."""
    if fit.archs and gpu.architecture not in fit.archs:
        stand_in = fit.blackwell if gpu.architecture == "blackwell" else fit.portable
        return stand_in if stand_in is not None else fit.portable or fit
    return fit


def _carried_over(fit: MoELayerFit, gpu: GPUSpec) -> MoELayerFit:
    """``fit`` moved to another GPU, each rule a mechanism (none fitted to the target):

    * kernel availability: a kernel bound to newer architectures (FlashInfer CUTLASS, the
      triton_kernels MXFP4 path) is not what vLLM runs on an older one; the format's portable
      kernel measured on the same GPU (Triton fused MoE, Marlin) stands in. Evidence: on L40S
      vLLM runs Triton for fp8 / fp8_block and Marlin for MXFP4, and H100's CUTLASS per-tensor
      fp8 fit, 2.5x slower than bf16 there, priced L40S fp8 at +240% (median). On Blackwell
      vLLM runs neither: its fp8 MoE oracle (``fused_moe/oracle/fp8.py``,
      ``_get_priority_backends``) tries FlashInfer TRTLLM-gen first, which supports per-tensor
      and block fp8 on the Blackwell family only (``experts/trtllm_fp8_moe.py``,
      ``_supports_current_device``: capability family 100); no table measures it, so the fit's
      ``blackwell`` stand-in prices it (the stack's bf16 structure at fp8 bytes and fp8 peak).
    * memory-bound terms (streaming, weight reads) and the grouped-GEMM math stay fractions of
      the target's data-sheet bandwidth and peak (the opmodel's units), at the compute dtype the
      target has (bf16 where it lacks fp8).
    * the fixed costs (the fused kernel's and the router's) are a number of SM clock cycles:
      they scale with donor clock / target clock (``transfer.clock_ratio``), as the GEMM and
      attention floors do. Evidence, one-token bf16 rows whose weights read in under 2 us at
      the data-sheet bandwidth (so the floor is the fixed cost): H200 vLLM 0.22 (router outside
      the timing) 25.2 us, H200 and H100 vLLM 0.24 (router inside) 33.4 us, L40S vLLM 0.24
      26.6 us (p5) = 33.4 x 1980 / 2520 = 26.2; A100 vLLM 0.14 (router outside) one-expert
      rows less their weight reads 28-33 us against 25.2 x 1980 / 1410 = 35. (The earlier
      seconds rule rested on a 23 / 20 / 24 us "floor" whose rows read 8 experts' weights.)
      The per-tile-row cost of one ``matmul_ogs`` CTA (``cta_row_s``) and the EP > 1 routing
      kernels of vLLM's gpt-oss experts (``ep_fixed_s``) are SM cycles too, and carry only
      within the donor's architecture: they are traits of triton_kernels' Hopper MX-scale path,
      and vLLM serves MXFP4 with Marlin on Ada / Ampere (L40S's table).
    """
    fit = _kernel_on(fit, gpu)
    compute = fit.compute_dtype
    if DType.parse(compute) not in gpu.peak_flops_per_s:
        compute = "bf16"
    stream = same_die_stream_ratio(fit.fit_gpu, gpu)
    clock = _clock_ratio(fit.fit_gpu, gpu)
    same_arch = _same_architecture(fit.fit_gpu, gpu)
    return replace(
        fit,
        compute_dtype=compute,
        fit_gpu=gpu.name,
        portable=None,
        blackwell=None,
        stream_hidden=fit.stream_hidden * stream,
        stream_inter=fit.stream_inter * stream,
        fixed_s=fit.fixed_s * clock,
        router_fixed_s=fit.router_fixed_s * clock,
        kloop_s=fit.kloop_s * clock,  # a latency-bound step: SM cycles, as the fixed costs
        ep_fixed_s=fit.ep_fixed_s * clock if same_arch else 0.0,
        cta_row_s=fit.cta_row_s * clock if same_arch else 0.0,
    )


def _same_architecture(source_name: str, target: GPUSpec) -> bool:
    """Whether the fit's GPU is of ``target``'s architecture (False outside the catalog)."""
    from servesim.core.errors import UnknownNameError
    from servesim.specs.catalog.gpus import get_gpu

    try:
        return get_gpu(source_name).architecture == target.architecture
    except UnknownNameError:
        return False


def _clock_ratio(source_name: str, target: GPUSpec) -> float:
    """``transfer.clock_ratio`` from the fit's GPU name (1 for a GPU outside the catalog)."""
    from servesim.core.errors import UnknownNameError
    from servesim.perf.opmodels.transfer import clock_ratio
    from servesim.specs.catalog.gpus import get_gpu

    try:
        return clock_ratio(get_gpu(source_name), target)
    except UnknownNameError:
        return 1.0
