"""The NVFP4 W4A4 GEMM (Blackwell), priced from the fp8 W8A8 fit by a stated rule.

No measured fp4 kernel tables exist here (``../shared/data`` has none), so the fp4 GEMM's fit
is derived, never fitted: it is the fp8 fit of the same GPU and kernel stack (CUTLASS
``scaled_mm`` with dynamic activation quantisation, the kernel family one precision up) with
only what the format changes:

* bytes: weights and input activations are e2m1 nibbles plus one fp8 e4m3 scale per 16
  elements (0.5 + 1/16 = 0.5625 B per element); outputs stay bf16;
* compute: the same fraction of the data-sheet peak, taken of the fp4 peak (B200: 9 PF dense,
  2x its fp8 peak), with the fp8 fit's tiles, floors, K loop, per-row cost and correction;
* activation quantisation: the fp8 kernel's fit (``opmodels.quantize.QuantFit``) with its
  HBM bytes per element scaled from 2 read + 1 written to 2 read + 0.5625 written (vLLM's
  ``scaled_fp4_quant`` writes nibbles and the per-16 e4m3 scales; the per-tensor global scale
  is static, ``input_scale`` of the ModelOpt checkpoint). Its per-row and serial-k terms are
  kept as fp8's: the fp4 kernel's scales are per 16-element block, so the fp8 kernel's
  per-token reduction over the row likely overstates small-m rows (left as an upper bound).

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

#: Bytes per NVFP4 element with its share of the e4m3 block scale (NVFP4 blog: 16 per scale).
NVFP4_BYTES = FORMATS[DType.FP4].bytes_per_weight
#: The quantisation kernel's HBM bytes per element: bf16 read, then fp8 / NVFP4 written.
FP8_QUANT_BYTES = 2.0 + 1.0
FP4_QUANT_BYTES = 2.0 + NVFP4_BYTES
DERIVED_NOTE = (
    "fp4: derived from the fp8 fit (same constants; NVFP4 bytes 0.5625 per weight and input, "
    "fp4 peak, quantisation bytes x 2.5625/3); uncalibrated, no fp4 tables"
)


def fp4_quant_fit(fp8: QuantFit) -> QuantFit:
    """The fp4 activation quantisation kernel from the fp8 one: HBM bytes scaled by what it
    writes (the other terms are the fp8 kernel's)."""
    ratio = FP4_QUANT_BYTES / FP8_QUANT_BYTES
    return replace(
        fp8, bytes_per_elem=fp8.bytes_per_elem * ratio, spill_bytes=fp8.spill_bytes * ratio
    )


def fp4_gemm_fit(fp8: GemmFit) -> GemmFit:
    """The NVFP4 W4A4 GEMM fit derived from the fp8 W8A8 fit of the same GPU and stack.

    Raises:
        ValueError: ``fp8`` is not an fp8 W8A8 fit.
    """
    if fp8.dtype != "fp8":
        raise ValueError(f"an fp4 fit derives from an fp8 fit, got {fp8.dtype!r}")
    quant = fp4_quant_fit(fp8.quant) if fp8.quant is not None else None
    notes = f"{DERIVED_NOTE}; fp8: {fp8.notes}" if fp8.notes else DERIVED_NOTE
    return replace(
        fp8,
        dtype="fp4",
        weight_bytes=NVFP4_BYTES,
        act_bytes=NVFP4_BYTES,
        quant=quant,
        notes=notes,
    )


def is_derived(fit: GemmFit) -> bool:
    """True for a fit this module derived (no measurement behind it)."""
    return fit.dtype == "fp4" and fit.notes.startswith(DERIVED_NOTE)
