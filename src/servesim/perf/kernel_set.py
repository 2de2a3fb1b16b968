"""``KernelSet``: the time of each operator family on one GPU under one kernel stack.

The op graph (``graph.PlanGraph``) and the public op query (``servesim.perf.op_time_s``) both
price kernels here, so what a user queries is exactly what the simulator charges. Each method
returns seconds; a family the stack has no fit for (or the legacy ``vllm-0.6`` stack) is priced
by the legacy formulas of ``kernels``/``attention``/``comm`` on the legacy calibration.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from servesim.perf import attention as legacy_attention
from servesim.perf.calibration import Calibration, GpuCalibration
from servesim.perf.comm import (
    collective_time_s,
    custom_all_reduce_time_s,
    eager_all_reduce_copy_s,
)
from servesim.perf.kernel_shapes import ACT_BYTES, GemmShape, MoeShape
from servesim.perf.kernels import gemm_time_s as legacy_gemm_time_s
from servesim.perf.kernels import legacy_gemm_fit
from servesim.perf.shapes import LayerShapes
from servesim.perf.stack_resolve import FamilySource, resolve_family
from servesim.perf.types import BatchShape
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec, LinkSpec

if TYPE_CHECKING:
    from servesim.perf.opmodels.gemm import GemmFit
    from servesim.perf.opmodels.mla import MLAFits


class KernelSet:
    """Operator times for one (calibration, kernel stack, GPU); build once per plan."""

    def __init__(self, calibration: Calibration, stack: str, gpu: GPUSpec) -> None:
        self.calibration = calibration
        self.stack = stack
        self.gpu = gpu
        self.legacy: GpuCalibration = calibration.for_gpu(gpu.name)
        self.sources: dict[str, FamilySource] = {}
        for family in ("gemm", "attention", "moe", "collectives"):
            found = resolve_family(calibration, stack, gpu, family)
            if found is not None:
                self.sources[family] = found
        self._gemm = _gemm_fits(self.sources.get("gemm"))
        self._legacy_gemm = legacy_gemm_fit(self.legacy)  # Vidur-fitted bf16 model, or None
        # a fit at another weight format's bytes (W4A8's packed fp8, weight-only legacy GEMMs)
        self._packed: dict[tuple[str, float], GemmFit] = {}
        self._attention = _attention_fits(self.sources.get("attention"))
        self._moe = _moe_fits(self.sources.get("moe"))
        self._collectives = _collective_fits(self.sources.get("collectives"))
        # MLA attention: only this GPU's own measured kernel (SGLang's FA3 MLA tables); where
        # there is none (vLLM's MLA tables are whole modules) the analytic model stays
        mla = resolve_family(calibration, stack, gpu, "mla")
        self._mla = _mla_fits(mla if mla is not None and mla.how == "measured" else None)
        peaks = gpu.peak_flops_per_s
        self.peak16 = peaks.get(DType.BF16) or peaks.get(DType.FP16) or 0.0
        self.bw = gpu.hbm_bandwidth_bytes_per_s

    @property
    def is_calibrated(self) -> bool:
        """True when the GEMMs (the bulk of the time) come from tables measured on this GPU."""
        gemm = self.sources.get("gemm")
        if gemm is not None:
            return gemm.is_calibrated
        return self.legacy.calibrated

    def describe(self) -> dict[str, str]:
        """Family -> where its figures come from (for summaries and ``perf --op``)."""
        gemm_src = self.legacy.source or "documented default efficiencies"
        legacy = {
            "gemm": gemm_src,
            "attention": self.legacy.attention.source or "documented defaults",
            "moe": "grouped GEMM on the legacy GEMM curve (" + gemm_src + ")",
            "collectives": "NCCL alpha-beta fits (apex_plus, vidur tables) and vLLM's custom "
            "all-reduce latency (PR #2192); link alpha-beta where unmeasured",
        }
        return {
            family: (
                self.sources[family].describe()
                if family in self.sources
                else f"{LEGACY_NAME} legacy: {legacy[family]}"
            )
            for family in ("gemm", "attention", "moe", "collectives")
        }

    # ---- GEMM ---------------------------------------------------------------------------
    def gemm_s(self, shape: GemmShape, peak_flops_per_s: float) -> float:
        """Time of one GEMM; ``peak_flops_per_s`` is the legacy formula's compute peak."""
        fit = self._gemm.get(shape.label) if shape.label is not None else None
        if fit is not None:
            from servesim.perf.opmodels.gemm import gemm_time_s

            fit = self._packed_weights(fit, shape.weight_bytes)
            # a serving step reads every layer's weights between two calls of this GEMM: its
            # weight is not left in L2 as the tables' back-to-back replays leave it
            return gemm_time_s(fit, self.gpu, shape.m, shape.n, shape.k, l2_warm=False)
        if self._legacy_gemm is not None and shape.in_bytes == ACT_BYTES:
            from servesim.perf.opmodels.gemm import gemm_time_s

            # weight-only int4 / int8 (W4A16 / W8A16): the 16-bit kernel's tiles and math, the
            # checkpoint's bytes streamed (the in-register dequant is in no Vidur table)
            fit = self._at_weight_bytes(self._legacy_gemm, shape.weight_bytes)
            return gemm_time_s(fit, self.gpu, shape.m, shape.n, shape.k, False)
        m, n, k = shape.m, shape.n, shape.k
        flops = 2.0 * m * k * n
        nbytes = k * n * shape.weight_bytes + m * k * shape.in_bytes + m * n * ACT_BYTES
        return legacy_gemm_time_s(
            self.legacy.gemm, flops, nbytes, m, k, n, peak_flops_per_s, self.bw
        )

    def _packed_weights(self, fit: GemmFit, weight_bytes: float) -> GemmFit:
        """The fp8 W8A8 fit with int4-packed weights (W4A8: int4 + group scales in HBM, fp8
        tensor-core math after an in-register unpack), else ``fit`` itself.

        Mechanism: the weight stream is read at the checkpoint's bytes per weight; the tile
        math, floors, activation quantisation and kernel dispatch are the fp8 kernel's. The
        unpack (int4 -> fp8 per weight tile) is not in any table: it is left out, so large-m
        W4A8 GEMMs are priced as fast as W8A8 ones.
        """
        if fit.dtype != "fp8" or weight_bytes >= fit.weight_bytes:
            return fit
        return self._at_weight_bytes(fit, weight_bytes)

    def _at_weight_bytes(self, fit: GemmFit, weight_bytes: float) -> GemmFit:
        """``fit`` streaming ``weight_bytes`` per weight (built once per format)."""
        if weight_bytes == fit.weight_bytes:
            return fit
        key = (fit.dtype, weight_bytes)
        packed = self._packed.get(key)
        if packed is None:
            packed = self._packed[key] = replace(fit, weight_bytes=weight_bytes)
        return packed

    # ---- MoE ------------------------------------------------------------------------------
    def moe_experts_s(self, shape: MoeShape, peak_flops_per_s: float) -> float:
        """Expert computation of one MoE layer on the busiest EP rank (router GEMM and
        collectives are separate ops)."""
        fit = self._moe.get(shape.label) if shape.label is not None else None
        if fit is not None:
            from servesim.perf.opmodels.moe_layer import moe_layer_s

            return moe_layer_s(
                fit,
                self.gpu,
                num_tokens=shape.num_tokens,
                hidden=shape.hidden,
                inter=shape.inter,
                topk=shape.topk,
                num_experts=shape.num_experts,
                ep=shape.ep,
                assignments=shape.assignments,
                experts_touched=shape.experts_touched,
                num_matrices=shape.num_matrices,
                # a serving step runs every other layer between two calls of this layer's
                # experts, so their weights have left the L2 (``opmodels.moe_l2``)
                l2_warm=False,
            )
        legacy = self.legacy.gemm
        pairs, touched = shape.assignments, shape.experts_touched
        h, ffn, mats = shape.hidden, shape.inter, shape.num_matrices
        flops = 2.0 * pairs * mats * h * ffn
        weights = touched * mats * h * ffn * shape.weight_bytes
        acts = pairs * (2 * h + (mats - 1) * ffn + ffn) * ACT_BYTES
        per_expert = max(1.0, pairs / max(touched, 1.0))
        t = legacy_gemm_time_s(
            legacy, flops, weights + acts, per_expert, h, ffn, peak_flops_per_s, self.bw
        )
        # three grouped kernels (up/gate, act, down) priced as one: launch counted 3x
        return t + 2 * legacy.launch_s

    # ---- attention ----------------------------------------------------------------------
    def attention_s(
        self, shapes: LayerShapes, batch: BatchShape, window: int | None, kv_bytes: float
    ) -> tuple[legacy_attention.AttnCost, legacy_attention.AttnCost]:
        """Per-layer (prefill, decode) attention costs on one GPU (FLOPs, bytes, time)."""
        args = (self.legacy.attention, window, kv_bytes, self.peak16, self.bw)
        pre = legacy_attention.prefill_attention(shapes, batch, *args)
        dec = legacy_attention.decode_attention(shapes, batch, *args)
        if shapes.is_mla:
            return self._mla_attention(shapes, batch, kv_bytes, pre, dec)
        fits = self._attention
        if fits is None:
            return pre, dec
        from servesim.perf.opmodels.attention_fit import decode_attention_s, prefill_attention_s

        heads = {
            "num_q_heads": shapes.num_q_heads,
            "num_kv_heads": shapes.num_kv_heads,
            "head_dim": shapes.head_dim,
            "kv_bytes": kv_bytes,
            "window": window,
        }
        if batch.num_prefill_tokens:
            mean_chunk = batch.num_prefill_tokens / max(1, batch.num_prefill_seqs)
            t = prefill_attention_s(
                fits.prefill_for(kv_bytes),
                self.gpu,
                num_seqs=batch.num_prefill_seqs,
                num_tokens=batch.num_prefill_tokens,
                num_pairs=batch.prefill_chunk_x_context
                + (batch.prefill_chunk_sq + batch.num_prefill_tokens) / 2.0,
                cached_tokens=round(batch.prefill_chunk_x_context / mean_chunk),
                **heads,
            )
            pre = legacy_attention.AttnCost(pre.flops, pre.num_bytes, t, pre.bound)
        if batch.num_decode_seqs:
            # a serving step runs every layer between two replays: one layer's KV is not left
            # in L2 for the next step's same layer (l2_warm=False)
            t = decode_attention_s(
                fits.decode_for(kv_bytes),
                self.gpu,
                num_seqs=batch.num_decode_seqs,
                context_tokens=batch.decode_context_tokens,
                l2_warm=False,
                **heads,
            )
            dec = legacy_attention.AttnCost(dec.flops, dec.num_bytes, t, dec.bound)
        return pre, dec

    def _mla_attention(
        self,
        shapes: LayerShapes,
        batch: BatchShape,
        kv_bytes: float,
        pre: legacy_attention.AttnCost,
        dec: legacy_attention.AttnCost,
    ) -> tuple[legacy_attention.AttnCost, legacy_attention.AttnCost]:
        """MLA (prefill, decode) times from the fitted kernel (``opmodels.mla``) where this GPU's
        stack measured it for this KV format; the analytic model's otherwise. FLOPs and bytes
        stay the analytic model's (they count the same work)."""
        if self._mla is None:
            return pre, dec
        from servesim.perf.opmodels.mla import mla_attention_times

        t_pre, t_dec = mla_attention_times(self._mla, self.gpu, shapes, batch, kv_bytes)
        if t_pre is not None:
            pre = legacy_attention.AttnCost(pre.flops, pre.num_bytes, t_pre, pre.bound)
        if t_dec is not None:
            dec = legacy_attention.AttnCost(dec.flops, dec.num_bytes, t_dec, dec.bound)
        return pre, dec

    # ---- collectives --------------------------------------------------------------------
    def collective_s(
        self,
        link: LinkSpec,
        collective: str,
        n: int,
        num_bytes: float,
        custom_ar: bool,
        graph: bool = True,
    ) -> tuple[float, bool]:
        """Time of one collective over ``n`` GPUs and whether a measurement backs it.

        ``graph``: the step replays a CUDA graph. Outside one (enforce-eager, or a step larger
        than the captured sizes) a custom all-reduce first copies its input into the
        registered IPC buffer (``opmodels.collectives.eager_copy_s``); the eager launch's host
        time is the host profile's (``plan_cost``: launches per kernel), not added here.
        """
        fitted = self._collective_fit(link, collective, n, num_bytes, custom_ar)
        if fitted is not None:
            t, ok = fitted, True
        else:
            t, ok = collective_time_s(
                self.calibration, self.gpu.name, link, collective, n, num_bytes
            )
            if collective == "all_reduce" and custom_ar:
                custom = custom_all_reduce_time_s(link, n, num_bytes)
                if custom is not None:
                    t = min(t, custom)
        if not graph and collective == "all_reduce" and custom_ar:
            t += eager_all_reduce_copy_s(self.gpu, link, n, num_bytes)
        return t, ok

    def _collective_fit(
        self, link: LinkSpec, collective: str, n: int, num_bytes: float, custom_ar: bool
    ) -> float | None:
        """The fitted time where the tables cover this collective, else None.

        The tables were measured on one node's GPU-to-GPU link, so they price collectives on
        that link only (a TP group across nodes keeps the link alpha-beta model). A TP
        all-reduce with custom all-reduce on uses the engine's custom all-reduce table, which
        already includes its own fall back to NCCL for large messages; its CUDA-graph variant
        is the kernel time (eager launch cost is the host profile's).
        """
        if not self._collectives or n <= 1 or num_bytes <= 0:
            return None
        if link.name != self.gpu.intra_node_link.name:
            return None
        from servesim.perf.opmodels.collectives import group_collective_s

        impl = "custom_graph" if collective == "all_reduce" and custom_ar else "nccl"
        fits = self._collectives.get((collective, impl))
        if not fits and impl == "custom_graph":
            fits = self._collectives.get((collective, "nccl"))
        if not fits:
            return None
        return group_collective_s(fits, self.gpu, n, num_bytes)


LEGACY_NAME = "vllm-0.6"


def _gemm_fits(source: FamilySource | None) -> dict[str, object]:
    if source is None:
        return {}
    from servesim.perf.opmodels.fp4 import fp4_gemm_fits
    from servesim.perf.opmodels.gemm import GemmFit

    fits = {label: GemmFit.from_dict(params) for label, params in source.params.items()}
    return fp4_gemm_fits(fits)  # no fp4 tables: the W4A4 kernels derived, uncalibrated


def _attention_fits(source: FamilySource | None) -> object | None:
    if source is None:
        return None
    from servesim.perf.opmodels.attention_fit import AttentionFits

    return AttentionFits.from_dict(source.params)


def _mla_fits(source: FamilySource | None) -> MLAFits | None:
    if source is None:
        return None
    from servesim.perf.opmodels.mla import MLAFits

    return MLAFits.from_dict(source.params)


def _moe_fits(source: FamilySource | None) -> dict[str, object]:
    if source is None:
        return {}
    from servesim.perf.opmodels.moe_fp4 import fp4_moe_fits
    from servesim.perf.opmodels.moe_layer import MoELayerFit

    fits = {label: MoELayerFit.from_dict(params) for label, params in source.params.items()}
    return fp4_moe_fits(fits)  # no W4A4 MoE tables: derived, uncalibrated


def _collective_fits(source: FamilySource | None) -> dict[tuple[str, str], list[object]]:
    """(collective, implementation) -> fits at each measured group size."""
    if source is None:
        return {}
    from servesim.perf.opmodels.collectives import fits_from_params

    out: dict[tuple[str, str], list[object]] = {}
    for part in source.params.values():
        for (collective, impl, _), fit in sorted(fits_from_params(part).items()):
            out.setdefault((collective, impl), []).append(fit)
    return out
