"""The fp4 W4A4 GEMMs (NVFP4 on Blackwell, MXFP4 on CDNA 4 and Blackwell), priced from the
fp8 W8A8 fit by a stated rule.

No measured fp4 kernel tables exist here (``../shared/data`` has none), so the fp4 GEMM's fit
is derived, never fitted: it is the fp8 fit of the same GPU and kernel stack (CUTLASS
``scaled_mm`` with dynamic activation quantisation, the kernel family one precision up) with
only what the format changes:

* bytes: weights and input activations are e2m1 nibbles plus the format's block scale (NVFP4:
  one e4m3 per 16, 0.5625 B per element; MXFP4: one e8m0 per 32, 0.53125 B); outputs bf16;
* compute: the same fraction of the data-sheet peak, taken of the fp4 peak (B200: 9 PF dense,
  2x its fp8 peak), with the fp8 fit's tiles, floors, K loop, per-row cost and correction;
* activation quantisation: the fp8 kernel's fit (``opmodels.quantize.QuantFit``) with its
  HBM bytes per element scaled from 2 read + 1 written to 2 read + the fp4 bytes written
  (vLLM's ``scaled_fp4_quant`` writes nibbles and the per-16 e4m3 scales; NVFP4's per-tensor
  global scale is static, ``input_scale`` of the ModelOpt checkpoint). Its per-row and serial-k
  terms are kept as fp8's: fp4 scales are per block, so the fp8 kernel's per-token reduction
  over the row likely overstates small-m rows (left as an upper bound).

The result is uncalibrated: ``is_derived`` marks it, and plans that run it are reported so
(``PlanGraph.is_calibrated``). As a sanity check only, never a fit: NVIDIA's MLPerf Inference
v4.1 blog (2024-08) puts Blackwell with FP4 at up to 4x an H100 per GPU on Llama 2 70B
(TensorRT-LLM); docs/formats.md compares the simulated direction.
"""

from __future__ import annotations

from dataclasses import replace

from servesim.perf.opmodels.gemm import GemmFit
from servesim.perf.opmodels.quantize import QuantFit
from servesim.specs.dtypes import FORMATS, DType

#: Kernel label -> bytes per element with its share of the block scale (NVFP4 blog: e4m3 per
#: 16; OCP MX v1.0: e8m0 per 32).
FP4_BYTES: dict[str, float] = {
    "fp4": FORMATS[DType.FP4].bytes_per_weight,
    "mxfp4_w4a4": FORMATS[DType.MXFP4_W4A4].bytes_per_weight,
}
NVFP4_BYTES = FP4_BYTES["fp4"]
#: The quantisation kernel's bytes per element: bf16 read, then fp8 written (format data).
FP8_QUANT_BYTES = FORMATS[DType.BF16].bytes_per_weight + FORMATS[DType.FP8].bytes_per_weight
DERIVED_NOTE = (
    "derived from the fp8 fit (same constants; fp4 bytes per weight and input, fp4 peak, "
    "quantisation bytes (2 + fp4 bytes) / 3 of fp8's); uncalibrated, no fp4 tables"
)


def fp4_quant_fit(fp8: QuantFit, fp4_bytes: float = NVFP4_BYTES) -> QuantFit:
    """The fp4 activation quantisation kernel from the fp8 one: HBM bytes and the L2 working
    set scaled by what it writes, bf16 read + ``fp4_bytes`` (NVFP4 2 + 0.5625 = 2.5625 B per
    element, not fp8's 3); the other terms are the fp8 kernel's."""
    working = FORMATS[DType.BF16].bytes_per_weight + fp4_bytes
    ratio = working / FP8_QUANT_BYTES
    return replace(
        fp8,
        bytes_per_elem=fp8.bytes_per_elem * ratio,
        spill_bytes=fp8.spill_bytes * ratio,
        working_bytes=working,
    )


def fp4_gemm_fit(fp8: GemmFit, label: str = "fp4") -> GemmFit:
    """The W4A4 GEMM fit of kernel ``label`` (``fp4``: NVFP4; ``mxfp4_w4a4``) derived from the
    fp8 W8A8 fit of the same GPU and stack.

    Raises:
        ValueError: ``fp8`` is not an fp8 W8A8 fit, or ``label`` is not an fp4 kernel.
    """
    if fp8.dtype != "fp8":
        raise ValueError(f"an fp4 fit derives from an fp8 fit, got {fp8.dtype!r}")
    if label not in FP4_BYTES:
        raise ValueError(f"unknown fp4 kernel {label!r} (known: {sorted(FP4_BYTES)})")
    nbytes = FP4_BYTES[label]
    quant = fp4_quant_fit(fp8.quant, nbytes) if fp8.quant is not None else None
    note = f"{label}: {DERIVED_NOTE}"
    return replace(
        fp8,
        dtype=label,
        weight_bytes=nbytes,
        act_bytes=nbytes,
        quant=quant,
        notes=f"{note}; fp8: {fp8.notes}" if fp8.notes else note,
    )


def fp4_gemm_fits(fits: dict[str, GemmFit]) -> dict[str, GemmFit]:
    """``fits`` with the fp4 kernels derived from its fp8 fit where it has one and no
    measured fp4 fit (there are no fp4 tables today)."""
    fp8 = fits.get("fp8")
    if fp8 is None:
        return fits
    derived = {label: fp4_gemm_fit(fp8, label) for label in FP4_BYTES if label not in fits}
    return {**fits, **derived}


def is_derived(fit: GemmFit) -> bool:
    """True for a fit this module derived (no measurement behind it)."""
    return fit.dtype in FP4_BYTES and DERIVED_NOTE in fit.notes
