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
from servesim.perf.opmodels.power import PowerFit, default_power_fit, gpu_power_w
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
    """Joules per GPU of ops on one GPU type (compute peak of the plan's GEMM dtype)."""

    __slots__ = ("fit", "gpu", "idle_power_w", "peak16", "peak_gemm")

    def __init__(self, fit: PowerFit, gpu: GPUSpec, peak_gemm: float, peak16: float) -> None:
        self.fit = fit
        self.gpu = gpu
        self.peak_gemm = peak_gemm
        self.peak16 = peak16
        self.idle_power_w = gpu_power_w(fit, gpu, 0.0, 0.0)

    def op_j(self, op: OpCost) -> float:
        """Energy of one row of ops (all its instances) on one GPU."""
        if op.time_s <= 0:
            return 0.0
        per_kernel_s = op.time_s / max(op.count, 1)
        op_class = _ATTENTION.get(op.name)
        if op.bound == "comm":
            u_c, u_m, op_class = 0.0, 0.0, "any"
        elif op_class is not None:
            u_c = op.flops / (op.time_s * self.peak16)
            u_m = op.num_bytes / (op.time_s * self.gpu.hbm_bandwidth_bytes_per_s)
        elif op.flops > 0:
            op_class = "moe" if op.name == "moe_experts" else "gemm"
            u_c = op.flops / (op.time_s * self.peak_gemm)
            u_m = op.num_bytes / (op.time_s * self.gpu.hbm_bandwidth_bytes_per_s)
        else:
            op_class, u_c = "any", 0.0
            u_m = op.num_bytes / (op.time_s * self.gpu.hbm_bandwidth_bytes_per_s)
        watts = gpu_power_w(
            self.fit, self.gpu, min(u_c, 1.0), min(u_m, 1.0), op=op_class, kernel_s=per_kernel_s
        )
        return watts * op.time_s

    def idle_j(self, seconds: float) -> float:
        """A clocked-up GPU waiting (host time, launch waits) for ``seconds``."""
        return self.idle_power_w * max(seconds, 0.0)
