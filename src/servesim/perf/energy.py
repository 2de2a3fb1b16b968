"""Energy of an iteration, op by op, from the measured power model.

Each op draws the board power its own utilisation implies (``opmodels.power``: fitted to H200
board power per operator class): a GEMM at u_c = FLOP/s over the compute peak, an attention
kernel at its bandwidth share, a collective or element-wise kernel at its memory share, for the
op's own duration. Summing per op, rather than applying the curve to the iteration's average
utilisation, keeps a concave power curve from overstating a mixed iteration (Jensen). Host
time that no kernel overlaps (the engine's CPU work, launch waits) draws the curve's static
power: the GPU is clocked up but idle.
"""

from __future__ import annotations

from servesim.perf.calibration import Calibration
from servesim.perf.opmodels.power import PowerFit, curve_for, default_power_fit
from servesim.perf.types import OpCost
from servesim.specs.gpu import GPUSpec

# op name -> power-model operator class (names of graph.PlanGraph's ops)
_ATTENTION = {"attn_prefill": "attention_prefill", "attn_decode": "attention_decode"}


def power_fit_for(calibration: Calibration, gpu: GPUSpec) -> PowerFit:
    """The measured power fit of ``gpu`` if the calibration has one, else the H200 fit scaled
    by the GPU's TDP and idle power (the rule of ``opmodels.power``)."""
    for key, params in calibration.power.items():
        if gpu.name.startswith(key):
            return PowerFit.from_dict(params)
    return default_power_fit()


class OpEnergy:
    """Joules per GPU of ops on one GPU type (compute peak of the plan's GEMM dtype).

    The power curves are resolved and scaled to the GPU once (the rule of
    ``opmodels.power.power_w_for_ratings``, which ``tests/perf/test_energy.py`` checks this
    against): the perf model prices attention energy on every iteration.
    """

    __slots__ = ("curves", "gpu", "idle_power_w", "peak16", "peak_gemm")

    def __init__(self, fit: PowerFit, gpu: GPUSpec, peak_gemm: float, peak16: float) -> None:
        self.gpu = gpu
        self.peak_gemm = peak_gemm
        self.peak16 = peak16
        dynamic_scale = (gpu.tdp_w - gpu.idle_w) / (fit.ref_tdp_w - fit.ref_idle_w)
        self.curves: dict[str, tuple[float, ...]] = {}
        for op_class in ("any", "gemm", "moe", "attention_prefill", "attention_decode"):
            c = curve_for(fit, op_class)
            self.curves[op_class] = (
                c.static_w * gpu.idle_w / fit.ref_idle_w,
                c.compute_w * dynamic_scale,
                c.compute_exp,
                c.mem_w * dynamic_scale,
                c.mem_exp,
                c.kernel_gap_s,
            )
        self.idle_power_w = self.watts("any", 0.0, 0.0, None)

    def watts(self, op_class: str, u_c: float, u_m: float, kernel_s: float | None) -> float:
        """Board power of ``op_class`` at utilisations ``u_c``, ``u_m`` (clamped to [0, 1])."""
        static_w, c_w, c_exp, m_w, m_exp, gap_s = self.curves[op_class]
        u_c = min(1.0, max(0.0, u_c))
        u_m = min(1.0, max(0.0, u_m))
        busy_w = min(self.gpu.tdp_w, static_w + c_w * u_c**c_exp + m_w * u_m**m_exp)
        if kernel_s is None or gap_s <= 0.0:
            return busy_w
        return static_w + (busy_w - static_w) * kernel_s / (kernel_s + gap_s)

    def kernel_j(
        self, op_class: str, flops: float, num_bytes: float, time_s: float, count: int, peak: float
    ) -> float:
        """Energy of ``count`` kernels of one class taking ``time_s`` together on one GPU."""
        if time_s <= 0:
            return 0.0
        u_c = flops / (time_s * peak) if flops else 0.0
        u_m = num_bytes / (time_s * self.gpu.hbm_bandwidth_bytes_per_s)
        return self.watts(op_class, u_c, u_m, time_s / max(count, 1)) * time_s

    def op_j(self, op: OpCost) -> float:
        """Energy of one row of ops (all its instances) on one GPU."""
        if op.time_s <= 0:
            return 0.0
        op_class = _ATTENTION.get(op.name)
        if op.bound == "comm":
            return self.kernel_j("any", 0.0, 0.0, op.time_s, op.count, 1.0)
        if op_class is not None:
            return self.kernel_j(op_class, op.flops, op.num_bytes, op.time_s, op.count, self.peak16)
        if op.flops > 0:
            op_class = "moe" if op.name == "moe_experts" else "gemm"
            return self.kernel_j(
                op_class, op.flops, op.num_bytes, op.time_s, op.count, self.peak_gemm
            )
        return self.kernel_j("any", 0.0, op.num_bytes, op.time_s, op.count, 1.0)

    def idle_j(self, seconds: float) -> float:
        """A clocked-up GPU waiting (host time, launch waits) for ``seconds``."""
        return self.idle_power_w * max(seconds, 0.0)
