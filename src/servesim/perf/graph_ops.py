"""``OpPricer``: the primitive op costs of one replica plan (a GEMM, a memory-bound kernel, a
collective), each an ``OpCost`` on one GPU of a stage; ``PlanGraph`` builds the layers from them.
"""

from __future__ import annotations

from servesim.perf.calibration import Calibration
from servesim.perf.graph_kinds import GroupKernels, group_kernels
from servesim.perf.kernel_set import KernelSet
from servesim.perf.kernel_shapes import FP4_LABELS, GemmShape, gemm_label
from servesim.perf.kernels import elementwise_time_s, gemm_compute_eff
from servesim.perf.shapes import stage_layer_ranges
from servesim.perf.types import OpCost, ReplicaPlan
from servesim.specs.dtypes import DType
from servesim.specs.quant import MODULE_GROUPS, module_formats

ACT_BYTES = 2.0  # activations stay 16-bit between kernels (bf16/fp16), also under FP8 GEMMs


class OpPricer:
    """Per-plan constants (peaks, bandwidth, formats, links, kernel tables) and op prices."""

    def __init__(self, plan: ReplicaPlan, calibration: Calibration) -> None:
        self.plan = plan
        self.model = plan.model
        self.cal = calibration.for_gpu(plan.gpu.name)
        self.calibration = calibration
        self.kernels = KernelSet(calibration, plan.kernel_stack, plan.gpu)
        self.is_calibrated = self.kernels.is_calibrated
        self.gemm_label = gemm_label(plan.weight_dtype, plan.activation_dtype)
        self.gpu_name = plan.gpu.name
        peaks = plan.gpu.peak_flops_per_s
        self.peak = peaks.get(plan.activation_dtype) or peaks.get(DType.BF16) or peaks[DType.FP16]
        self.peak16 = peaks.get(DType.BF16) or peaks.get(DType.FP16) or self.peak
        self.bw = plan.gpu.hbm_bandwidth_bytes_per_s
        self.w_bytes = plan.weight_dtype.num_bytes
        self.in_bytes = min(ACT_BYTES, plan.activation_dtype.num_bytes)
        self.kv_bytes = plan.kv_dtype.num_bytes
        self.tp_link = plan.tp_link or plan.gpu.intra_node_link
        self.pp_link = plan.pp_link or plan.gpu.intra_node_link
        self.stages = stage_layer_ranges(self.model.num_layers, plan.pp)
        self.any_uncalibrated_comm = False
        # steps up to the host profile's captured size replay a CUDA graph (perf/host); a TP
        # all-reduce carries the step's hidden states (tokens x hidden, 16-bit), so a larger
        # message is an eager step's, which copies its input (kernel_set.collective_s graph)
        host = calibration.host_profile(plan.host_profile)
        graph_tokens = host.max_graph_tokens if plan.use_cuda_graphs else 0
        self.graph_all_reduce_bytes = graph_tokens * self.model.hidden_size * ACT_BYTES
        formats = module_formats(self.model.quantization, plan.weight_dtype)
        plain = GroupKernels(self.w_bytes, self.in_bytes, None, None, self.peak)
        self.groups = {
            g: group_kernels(plan, formats[g], plain, self.peak16) for g in MODULE_GROUPS
        }
        # no fp4 tables exist: a W4A4 GEMM is derived from fp8 (opmodels/fp4.py), W4A4 experts
        # from the w4a16 MoE fit (opmodels/moe_fp4.py); their groups' GEMM label is an fp4 one
        self.is_calibrated &= all(g.gemm_label not in FP4_LABELS for g in self.groups.values())

    # ---- primitives -------------------------------------------------------------------
    def scope(self, stage: int, count: int = 0) -> str:
        """Human-readable location: the stage's layers for per-layer ops, else the stage."""
        r = self.stages[stage]
        if count < len(r) // 2 or count == 1:
            return f"stage{stage}"
        return f"stage{stage} layers {r.start}-{r.stop - 1}"

    def gemm(
        self,
        name: str,
        stage: int,
        count: int,
        m: float,
        k: int,
        n: int,
        *,
        quantised: bool = True,
        group: str = "attention",
    ) -> OpCost:
        """A GEMM of m tokens by a k x n weight of module ``group`` (16-bit when not
        ``quantised``)."""
        g = self.groups[group]
        w = g.weight_bytes if quantised else ACT_BYTES
        in_bytes = g.in_bytes if quantised else ACT_BYTES
        flops = 2.0 * m * k * n
        nbytes = k * n * w + m * k * in_bytes + m * n * ACT_BYTES
        label = g.gemm_label if quantised else "bf16"
        peak = g.peak_flops_per_s if quantised else self.peak16
        t = self.kernels.gemm_s(GemmShape(m, n, k, label, w, in_bytes), peak)
        t_c = flops / (peak * gemm_compute_eff(self.cal.gemm, m, k, n))
        bound = "compute" if t_c >= nbytes / (self.bw * self.cal.gemm.mem_eff) else "memory"
        return OpCost(
            name,
            self.scope(stage, count),
            count,
            flops * count,
            nbytes * count,
            bound,
            t * count,
            stage,
        )

    def elementwise(self, name: str, cls: str, stage: int, count: int, nbytes: float) -> OpCost:
        """A memory-bound kernel of op class ``cls`` (norm, rope, activation, add, embedding)."""
        curve = self.cal.elementwise.get(cls) or self.calibration.default_gpu.elementwise[cls]
        t = elementwise_time_s(curve, nbytes, self.bw)
        return OpCost(
            name, self.scope(stage, count), count, 0.0, nbytes * count, "memory", t * count, stage
        )

    def comm(
        self,
        name: str,
        collective: str,
        stage: int,
        count: int,
        n: int,
        nbytes: float,
        pp: bool = False,
    ) -> OpCost:
        """A collective over ``n`` GPUs of the TP group (or a PP send when ``pp``)."""
        link = self.pp_link if pp else self.tp_link
        custom = collective == "all_reduce" and not pp and self.plan.custom_all_reduce
        graph = nbytes <= self.graph_all_reduce_bytes
        t, ok = self.kernels.collective_s(link, collective, n, nbytes, custom, graph)
        self.any_uncalibrated_comm |= not ok
        return OpCost(
            name, self.scope(stage, count), count, 0.0, nbytes * count, "comm", t * count, stage
        )
