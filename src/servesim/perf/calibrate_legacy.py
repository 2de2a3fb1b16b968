"""The legacy (vllm-0.6) stack's GEMM model fitted to Vidur's tables, and its held-out rows.

Vidur's ``mlp.csv`` tables time the cuBLAS GEMMs of one transformer layer per (model, TP, token
count) on H100, A100 and A40. The smoothed roofline of ``kernels.gemm_time_s`` misses them by
20-50% around the memory/compute crossover (Llama-2-70B TP4 held out, 128-512 tokens), where the
time steps with whole waves of output tiles over the SMs. The vllm-0.24 stack's structured GEMM
model (``opmodels.gemm``: a tile shape per token bucket, waves, a p-norm overlap of memory, K
loop and compute) has those mechanisms; here it is refitted to Vidur's rows by the same fit
(``fitting.gemm.fit_dtype``) on the same train models as the roofline (``calibrate``'s
``HELDOUT_MODELS`` held out).

No log-grid correction is fitted on top (``grid=False``): the grid's nodes learn the residual
at the training shapes' (n, k), and Vidur has five training models (aiconfigurator hundreds of
shapes), so it carries one model's cuBLAS choices to another (held-out H100 GEMM with the
grid 7.5% / +1.4, without 8.1% / +1.0, but Llama-2-70B TP4 at 512 tokens +30% with, +13%
without).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from servesim.perf.calibrate_data import ComputeSample
from servesim.perf.calibration import FUSED_NORM, fused_add_norm_curve
from servesim.perf.opmodels.gemm import GemmFit, gemm_time_s
from servesim.specs.catalog.gpus import get_gpu
from servesim.specs.gpu import GPUSpec

__all__ = [
    "FUSED_NORM",
    "REGIMES",
    "VIDUR_GPUS",
    "fit_structured_gemm",
    "fused_add_norm_curve",
    "heldout_rows",
    "structured_gemm_predict",
]

#: Vidur's GPU folders -> the catalog GPU whose data sheet (SMs, L2, peak, bandwidth) they ran on.
VIDUR_GPUS: Mapping[str, str] = {"h100": "h100-sxm", "a100": "a100-80gb", "a40": "a40"}
#: Token regimes of the held-out rows: decode-size, chunked-prefill-size, long prefill.
REGIMES: tuple[tuple[str, float, float], ...] = (
    ("m<=256", 0.0, 256.0),
    ("256<m<=2048", 256.0, 2048.0),
    ("m>2048", 2048.0, float("inf")),
)


def _spec(gpu: str) -> GPUSpec:
    from servesim.perf.fitting.gemm_rows import with_datasheet

    return with_datasheet(get_gpu(VIDUR_GPUS[gpu]))


def _rows(samples: Sequence[ComputeSample]) -> dict[str, np.ndarray]:
    """Vidur GEMM samples in the row layout ``fitting.gemm`` fits (bf16, one shape per op)."""
    count = len(samples)
    return {
        "m": np.array([float(s.num_tokens) for s in samples]),
        "n": np.array([float(s.n) for s in samples]),
        "k": np.array([float(s.k) for s in samples]),
        "latency_s": np.array([s.time_s for s in samples]),
        "kernel": np.array(["cublas"] * count),
        "shape_key": np.array([f"{s.model}/{s.tp}/{s.op}" for s in samples]),
        "op": np.array(["gemm"] * count),
        "dtype": np.array(["bf16"] * count),
    }


def fit_structured_gemm(samples: Sequence[ComputeSample], gpu: str) -> GemmFit:
    """The structured bf16 GEMM model fitted to these Vidur GEMM samples of ``gpu``."""
    from servesim.perf.fitting.gemm import fit_dtype

    fit = fit_dtype(_rows(samples), _spec(gpu), "bf16", None, grid=False)
    notes = f"vidur {gpu} cuBLAS tables; " + fit.notes
    return GemmFit.from_dict({**fit.to_dict(), "notes": notes})


def structured_gemm_predict(fit: GemmFit, samples: Sequence[ComputeSample], gpu: str) -> np.ndarray:
    """Seconds per sample as the tables timed them (back-to-back replays: ``l2_warm``)."""
    spec = _spec(gpu)
    return np.array([gemm_time_s(fit, spec, s.num_tokens, s.n, s.k) for s in samples])


def heldout_rows(
    gpu: str,
    op: str,
    samples: Sequence[ComputeSample],
    pred: np.ndarray,
    actual: np.ndarray,
    before: np.ndarray | None,
) -> list[dict]:
    """Report rows (the kernel report's layout) per token regime of one op class."""
    from servesim.perf.fitting.heldout import error_stats

    m = np.array([s.num_tokens for s in samples], dtype=float)
    out = []
    for label, lo, hi in REGIMES:
        sel = (m > lo) & (m <= hi)
        if not sel.any():
            continue
        stats = error_stats(pred[sel], actual[sel])
        row = {
            "stack": "vllm-0.6",
            "gpu": gpu,
            "op": op,
            "dtype": "fp16",  # Vidur profiled fp16 (same tensor-core peak as bf16)
            "regime": label,
            "n": stats.num_points,
            "mape": round(stats.mape, 2),
            "median_signed": round(stats.median_signed, 2),
        }
        if before is not None:
            was = error_stats(before[sel], actual[sel])
            row["before_mape"] = round(was.mape, 2)
            row["before_median_signed"] = round(was.median_signed, 2)
        out.append(row)
    return out
