"""GPU board power as a function of compute and memory utilisation (fitted to measured power).

Mechanism (per operator class, and one pooled ``"any"`` curve for whole iterations):

    P_busy = min(P_limit, static_w + compute_w * u_c ** compute_exp + mem_w * u_m ** mem_exp)
    P = static_w + (P_busy - static_w) * kernel_s / (kernel_s + kernel_gap_s)

- ``static_w``: the board's draw with clocks up and nothing useful done (leakage, HBM refresh,
  fans/VRM). Measured H200 rows of tiny kernels sit at ~130-215 W depending on the board (the
  collector ran 8 boards at once: ``fitting.power``), well above the catalog's 75 W deep-idle
  estimate: the GPU does not drop its clocks between replays.
- ``compute_w * u_c ** compute_exp``: tensor-core switching power; ``u_c`` = achieved FLOP/s /
  dense peak of the op's dtype. The exponent is fitted (power rises sub- or super-linearly
  with tensor activity, cf. POLCA, Patel et al. ASPLOS'24: prefill sits near TDP).
- ``mem_w * u_m ** mem_exp``: HBM and L2 traffic; ``u_m`` = achieved bytes/s / HBM bandwidth.
  Memory-bound decode at full bandwidth draws far less than TDP (Splitwise, ISCA'24).
- the cap: the board's power limit (700 W on H200 SXM); the firmware lowers clocks to hold it.
- ``kernel_gap_s``: short kernels draw less than their utilisation says. At the same achieved
  utilisation, measured H200 power rises with kernel duration (correlation 0.53 with
  log(latency) for memory-bound decode above 60 % bandwidth): each kernel boundary costs a
  drain/launch gap at near-static draw, and a 10 us kernel is mostly boundary. ``kernel_s`` is
  the mean duration of one kernel; ``None`` (the default, used for whole iterations, whose
  kernels are not known individually) means long kernels (factor 1), an upper estimate.

Other GPUs (the rule ``gpu_power_w`` applies): a fit is measured on a reference GPU (``ref_idle_w``,
``ref_tdp_w``). On a target GPU the static part scales by ``idle_w / ref_idle_w`` and the dynamic
parts by ``(tdp_w - idle_w) / (ref_tdp_w - ref_idle_w)``; the cap becomes the target's ``tdp_w``.
Utilisations are always relative to the target's own data-sheet peaks, so a GPU at the same
fraction of its peaks draws the same fraction of its dynamic range. ``default_power_fit()`` is
the H200 fit (``python -m servesim.perf.fitting.power``) used wherever a GPU has no fit of its
own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servesim.specs.gpu import GPUSpec

#: Operator classes with a curve of their own; ``any`` is pooled over all rows (iterations).
OP_CLASSES = ("gemm", "attention_prefill", "attention_decode", "moe", "any")


@dataclass(frozen=True, slots=True)
class PowerParams:
    """One utilisation -> power curve on the reference GPU (watts).

    Attributes:
        static_w: draw at zero utilisation with clocks up.
        compute_w: extra draw at full tensor-core utilisation (before the cap).
        compute_exp: exponent on compute utilisation.
        mem_w: extra draw at full HBM bandwidth.
        mem_exp: exponent on memory utilisation.
        kernel_gap_s: per-kernel boundary time at static draw (see the module docstring).
        own_share: the measurement's share of the row's own kernel, fitted beside the curve
            and used only to score the measured tables (``fitting.power``: the rest of a
            reading is the board's previous case); the runtime draws the curve itself (1.0).
    """

    static_w: float
    compute_w: float
    compute_exp: float
    mem_w: float
    mem_exp: float
    kernel_gap_s: float = 0.0
    own_share: float = 1.0

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PowerParams:
        """Inverse of ``to_dict`` (a field a stored curve lacks keeps its default)."""
        return cls(**{k: float(data[k]) for k in cls.__slots__ if k in data})  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class PowerFit:
    """Power curves of one GPU and kernel stack, per operator class.

    Attributes:
        ref_gpu: catalog name of the GPU the curves were measured on.
        ref_idle_w: that GPU's data-sheet idle draw (scaling rule in the module docstring).
        ref_tdp_w: that GPU's board power limit.
        curves: ``<op>:<dtype>``, ``<op>`` (``OP_CLASSES``) or ``any`` -> curve; a lookup
            falls back in that order, so ``any`` must be present.
    """

    ref_gpu: str
    ref_idle_w: float
    ref_tdp_w: float
    curves: Mapping[str, PowerParams] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if "any" not in self.curves:
            raise ValueError("a PowerFit needs the pooled 'any' curve")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ref_gpu": self.ref_gpu,
            "ref_idle_w": self.ref_idle_w,
            "ref_tdp_w": self.ref_tdp_w,
            "curves": {k: self.curves[k].to_dict() for k in sorted(self.curves)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PowerFit:
        """Inverse of ``to_dict``."""
        curves = {k: PowerParams.from_dict(v) for k, v in data["curves"].items()}
        return cls(
            str(data["ref_gpu"]), float(data["ref_idle_w"]), float(data["ref_tdp_w"]), curves
        )


def curve_for(fit: PowerFit, op: str = "any", dtype: str = "") -> PowerParams:
    """The most specific curve: ``op:dtype``, then ``op``, then ``any``."""
    curves = fit.curves
    return curves.get(f"{op}:{dtype}") or curves.get(op) or curves["any"]


def power_w_for_ratings(
    fit: PowerFit,
    tdp_w: float,
    idle_w: float,
    compute_util: float,
    mem_util: float,
    *,
    op: str = "any",
    dtype: str = "",
    kernel_s: float | None = None,
) -> float:
    """Board power (W) of a GPU rated ``tdp_w`` / ``idle_w`` at the given utilisations.

    The same as :func:`gpu_power_w` for callers that hold only the ratings (replica records).
    Utilisations are clamped to [0, 1]: achieved rates above the data-sheet peak (L2 hits,
    rounding) cannot draw more than full activity.
    """
    curve = curve_for(fit, op, dtype)
    static_w = curve.static_w * idle_w / fit.ref_idle_w
    dynamic_scale = (tdp_w - idle_w) / (fit.ref_tdp_w - fit.ref_idle_w)
    u_c = min(1.0, max(0.0, compute_util))
    u_m = min(1.0, max(0.0, mem_util))
    dynamic = curve.compute_w * u_c**curve.compute_exp + curve.mem_w * u_m**curve.mem_exp
    busy_w = min(tdp_w, static_w + dynamic * dynamic_scale)
    if kernel_s is None or curve.kernel_gap_s <= 0.0:
        return busy_w
    return static_w + (busy_w - static_w) * kernel_s / (kernel_s + curve.kernel_gap_s)


def gpu_power_w(
    fit: PowerFit,
    gpu: GPUSpec,
    compute_util: float,
    mem_util: float,
    *,
    op: str = "any",
    dtype: str = "",
    kernel_s: float | None = None,
) -> float:
    """Board power (W) of ``gpu`` at ``compute_util`` (achieved FLOP/s / peak of the op's
    dtype) and ``mem_util`` (achieved bytes/s / HBM bandwidth).

    Uses the most specific curve of ``fit`` (``curve_for``), scaled to ``gpu`` by the rule in
    the module docstring; ``kernel_s`` is the mean kernel duration (None: long kernels).
    """
    return power_w_for_ratings(
        fit,
        gpu.tdp_w,
        gpu.idle_w,
        compute_util,
        mem_util,
        op=op,
        dtype=dtype,
        kernel_s=kernel_s,
    )


# The H200 SXM / vLLM 0.22.0 fit, per-op and pooled curves: the shipped calibration's
# ``power.h200`` (``python bench/refit_family.py power``; ``test_default_fit_is_the_shipped_one``
# checks they agree).
_DEFAULT_H200 = {
    "ref_gpu": "h200-sxm",
    "ref_idle_w": 75.0,
    "ref_tdp_w": 700.0,
    "curves": {
        "any": {
            "compute_exp": 0.61005,
            "compute_w": 410.44,
            "kernel_gap_s": 3.6243e-05,
            "mem_exp": 0.42433,
            "mem_w": 499.93,
            "own_share": 0.77071,
            "static_w": 178.73,
        },
        "gemm": {
            "compute_exp": 0.39388,
            "compute_w": 630.83,
            "kernel_gap_s": 1.3374e-05,
            "mem_exp": 0.35727,
            "mem_w": 413.9,
            "own_share": 0.99027,
            "static_w": 108.92,
        },
        "attention_prefill": {
            "compute_exp": 0.39566,
            "compute_w": 362.51,
            "kernel_gap_s": 3.1849e-06,
            "mem_exp": 0.2,
            "mem_w": 221.63,
            "own_share": 0.44198,
            "static_w": 116.82,
        },
        "attention_decode": {
            "compute_exp": 3.9936,
            "compute_w": 1.6206e-09,
            "kernel_gap_s": 0.00022914,
            "mem_exp": 0.89732,
            "mem_w": 786.54,
            "own_share": 0.79472,
            "static_w": 232.38,
        },
        "moe": {
            "compute_exp": 0.74714,
            "compute_w": 3000.0,
            "kernel_gap_s": 0.00015749,
            "mem_exp": 3.0981,
            "mem_w": 3000.0,
            "own_share": 0.75304,
            "static_w": 341.19,
        },
    },
}


def default_power_fit() -> PowerFit:
    """The H200 fit, applied to any GPU without a fit of its own by the ratings rule."""
    return PowerFit.from_dict(_DEFAULT_H200)
