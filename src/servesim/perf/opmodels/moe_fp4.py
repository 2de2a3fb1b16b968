"""The fp4 W4A4 MoE layers (NVFP4 experts on Blackwell, MXFP4-W4A4 on CDNA 4 and Blackwell),
derived from a measured 4-bit MoE fit by a stated rule, as ``opmodels/fp4.py`` derives the
dense W4A4 GEMM.

No W4A4 MoE table exists in ``../shared/data``: its fp4 MoE rows are w4a16 (gpt-oss MXFP4
weights, 16-bit activations, vLLM's triton_kernels path on Hopper). That fit is the donor, not
the fp8 one: the weight stream, which bounds a MoE layer up to hundreds of tokens, is the same
4-bit nibbles plus block scales, while the measured fp8 per-tensor MoE (FlashInfer CUTLASS on
Hopper) runs 2-3x slower than bf16 at 256 tokens in these tables (docs/cost-model.md), a
Hopper kernel trait with no reason to carry to Blackwell's fp4 kernels. Only what the format
changes is changed:

* weight bytes: e2m1 nibbles plus the block scale (NVFP4 0.5625 B per element, MXFP4 0.53125);
* the grouped GEMMs' math: the same fraction of the data-sheet peak, taken of the fp4 peak
  instead of bf16's (the W4A4 MMA replaces dequantise-then-bf16);
* fixed costs, routing, permutation streams, tiles and correction grid stay the donor's; the
  activations' fp4 quantisation is taken to ride in the permute, as the donor's dequant rides
  in its GEMM (no table prices it: left out).

The fit is only reached where the GPU computes W4A4 natively (``gemm_activation`` returns fp4:
Blackwell NVFP4, CDNA 4 and Blackwell MXFP4). Elsewhere vLLM serves such checkpoints weight-only
(its "no native FP4 ... Marlin" fallback), priced by the measured w4a16 ``mxfp4`` fit itself.
Derived fits are uncalibrated: ``is_derived`` tells them apart.
"""

from __future__ import annotations

from dataclasses import replace

from servesim.perf.opmodels.fp4 import FP4_BYTES
from servesim.perf.opmodels.moe_layer import MoELayerFit

#: Marks a derived fit's ``kernel`` (no measurement behind it).
DERIVED_PREFIX = "derived-w4a4:"


def fp4_moe_fit(w4a16: MoELayerFit, label: str) -> MoELayerFit:
    """The W4A4 MoE fit of kernel ``label`` (``fp4``: NVFP4; ``mxfp4_w4a4``) from the measured
    w4a16 ``mxfp4`` fit of the same GPU and stack.

    Raises:
        ValueError: ``w4a16`` is not a 4-bit weight-only fit, or ``label`` is not an fp4 kernel.
    """
    if w4a16.compute_dtype != "bf16" or w4a16.weight_bytes >= 1.0:
        raise ValueError(
            "a W4A4 MoE fit derives from a 4-bit weight-only fit, got "
            f"{w4a16.weight_bytes} B per weight at {w4a16.compute_dtype!r}"
        )
    if label not in FP4_BYTES:
        raise ValueError(f"unknown fp4 kernel {label!r} (known: {sorted(FP4_BYTES)})")
    portable = fp4_moe_fit(w4a16.portable, label) if w4a16.portable is not None else None
    return replace(
        w4a16,
        weight_bytes=FP4_BYTES[label],
        compute_dtype="fp4",
        kernel=f"{DERIVED_PREFIX}{label} from {w4a16.kernel}",
        portable=portable,
    )


def fp4_moe_fits(fits: dict[str, MoELayerFit]) -> dict[str, MoELayerFit]:
    """``fits`` with the W4A4 kernels derived from its ``mxfp4`` (w4a16) fit where it has one
    and no measured fit of that label."""
    donor = fits.get("mxfp4")
    if donor is None:
        return fits
    derived = {label: fp4_moe_fit(donor, label) for label in FP4_BYTES if label not in fits}
    return {**fits, **derived}


def is_derived(fit: MoELayerFit) -> bool:
    """True for a fit this module derived."""
    return fit.kernel.startswith(DERIVED_PREFIX)
