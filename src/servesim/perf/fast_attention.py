"""The closed-form attention of ``FastCost`` (``servesim.perf.fastcost``), its constants hoisted.

``attention.prefill_attention`` and ``decode_attention`` for one plan's (single) layer kind,
each with the energy of its kernel (``OpEnergy.kernel_j``, count 1, 16-bit peak) in the same
call: the engine prices every step this way, so the floating-point operations of both are
written out here, in the same order and on the same operands as the general path's (the
fast-path tests compare the two op for op and whole runs byte for byte).
"""

from __future__ import annotations

from servesim.perf.attention import DECODE_COMPUTE_EFF, PREFILL_MEM_EFF
from servesim.perf.energy import OpEnergy
from servesim.perf.graph import PlanGraph
from servesim.perf.types import BatchShape

#: (FLOPs, bytes, time, energy) of one layer's attention kernel
Priced = tuple[float, float, float, float]


def closed_form(graph: PlanGraph, energy: OpEnergy) -> tuple[PrefillConsts, DecodeConsts]:
    """The constants of ``attention.prefill_attention`` and ``decode_attention`` for the plan's
    (first) layer kind, with those of their kernels' energy: what ``FastCost`` inlines when
    the plan's attention is that form."""
    window = graph.model.attention_window(next(iter(graph.kind_counts)))
    kernels = graph.kernels
    curve = kernels.legacy.attention
    s = graph.shapes
    kv_width = 2 * s.num_kv_heads * s.head_dim
    # OpEnergy's attention power curves and limits (kernel_j's operands)
    watts = (energy.peak16, energy.gpu.hbm_bandwidth_bytes_per_s, energy.gpu.tdp_w)
    prefill = PrefillConsts(
        s.num_q_heads, s.head_dim, kv_width, graph.kv_bytes, window, kernels.peak16,
        kernels.bw * PREFILL_MEM_EFF, curve.prefill_e_max, curve.prefill_len_half,
        curve.launch_s, (*energy.curves["attention_prefill"], *watts),
    )  # fmt: skip
    decode = DecodeConsts(
        s.num_q_heads, s.head_dim, s.num_kv_heads, graph.kv_bytes, window,
        kernels.peak16 * DECODE_COMPUTE_EFF, kernels.bw, curve.decode_mem_eff,
        curve.decode_ctx_half, curve.launch_s, (*energy.curves["attention_decode"], *watts),
    )  # fmt: skip
    return prefill, decode


def kernel_joules(
    energy: tuple[float, ...], flops: float, num_bytes: float, time_s: float
) -> float:
    """``OpEnergy.kernel_j`` of one kernel (count 1) from its hoisted constants ``energy``
    (static, compute and memory watts and exponents, gap, peak, bandwidth, TDP), with the same
    float operations in the same order."""
    static_w, c_w, c_exp, m_w, m_exp, gap_s, peak16, hbm_bw, tdp_w = energy
    u_c = flops / (time_s * peak16) if flops else 0.0
    u_m = num_bytes / (time_s * hbm_bw)
    # min(1.0, max(0.0, u)) without the calls: max(0.0, u) is u only when u > 0.0 (NaN and
    # -0.0 give 0.0), min(1.0, v) is v only when v < 1.0 -- the same values
    u_c = u_c if u_c > 0.0 else 0.0
    u_c = u_c if u_c < 1.0 else 1.0
    u_m = u_m if u_m > 0.0 else 0.0
    u_m = u_m if u_m < 1.0 else 1.0
    busy_w = static_w + c_w * u_c**c_exp + m_w * u_m**m_exp
    busy_w = busy_w if busy_w < tdp_w else tdp_w  # min(tdp_w, busy_w)
    if gap_s <= 0.0:
        return busy_w * time_s
    return (static_w + (busy_w - static_w) * time_s / (time_s + gap_s)) * time_s


class PrefillConsts:
    """``attention.prefill_attention`` for one plan, its constants hoisted.

    ``energy``: the kernel's power curve (static W, compute W and exponent, memory W and
    exponent, gap s) then the 16-bit peak, the HBM bandwidth and the TDP.
    """

    __slots__ = (
        "bw_eff", "e_max", "energy", "head_dim", "heads", "kv_bytes", "kv_width", "launch_s",
        "len_half", "peak", "q_width", "window",
    )  # fmt: skip

    def __init__(
        self,
        heads: int,
        head_dim: int,
        kv_width: int,
        kv_bytes: float,
        window: int | None,
        peak: float,
        bw_eff: float,
        e_max: float,
        len_half: float,
        launch_s: float,
        energy: tuple[float, ...],
    ) -> None:
        self.heads, self.head_dim, self.kv_width = heads, head_dim, kv_width
        self.q_width = 2 * heads * head_dim + kv_width
        self.kv_bytes, self.window, self.peak, self.bw_eff = kv_bytes, window, peak, bw_eff
        self.e_max, self.len_half, self.launch_s = e_max, len_half, launch_s
        self.energy = energy

    def cost(self, batch: BatchShape) -> Priced:
        """(FLOPs, bytes, time, energy) of one layer's prefill attention (prefill tokens > 0)."""
        return self.priced(
            batch.num_prefill_tokens,
            batch.prefill_chunk_x_context,
            batch.prefill_chunk_sq,
            batch.num_prefill_seqs,
        )

    def priced(self, tokens: int, cxk: int, chunk_sq: int, num_seqs: int) -> Priced:
        """``cost`` of a batch with these prefill aggregates."""
        pairs = cxk + (chunk_sq + tokens) / 2.0
        window = self.window
        if window is not None:
            pairs = min(pairs, float(tokens) * window)
        flops = 4.0 * pairs * self.heads * self.head_dim
        mean_chunk = tokens / (num_seqs if num_seqs > 1 else 1)  # max(1, num_seqs)
        cached = cxk / mean_chunk
        num_bytes = tokens * self.q_width * 2.0 + cached * self.kv_width * self.kv_bytes
        x = 2.0 * pairs / tokens
        eff = self.e_max * x / (x + self.len_half)
        t_c = flops / (self.peak * eff)
        t_m = num_bytes / self.bw_eff
        time_s = self.launch_s + (t_c if t_c >= t_m else t_m)
        return flops, num_bytes, time_s, kernel_joules(self.energy, flops, num_bytes, time_s)


class DecodeConsts:
    """``attention.decode_attention`` for one plan, its constants hoisted (``energy`` as in
    ``PrefillConsts``)."""

    __slots__ = (
        "bw", "ctx_half", "energy", "head_dim", "heads", "kv_bytes", "kv_heads", "launch_s",
        "mem_eff", "peak_eff", "window",
    )  # fmt: skip

    def __init__(
        self,
        heads: int,
        head_dim: int,
        kv_heads: int,
        kv_bytes: float,
        window: int | None,
        peak_eff: float,
        bw: float,
        mem_eff: float,
        ctx_half: float,
        launch_s: float,
        energy: tuple[float, ...],
    ) -> None:
        self.heads, self.head_dim, self.kv_heads, self.kv_bytes = (
            heads,
            head_dim,
            kv_heads,
            kv_bytes,
        )
        self.window, self.peak_eff, self.bw = window, peak_eff, bw
        self.mem_eff, self.ctx_half, self.launch_s = mem_eff, ctx_half, launch_s
        self.energy = energy

    def cost(self, batch: BatchShape) -> Priced:
        """(FLOPs, bytes, time, energy) of one layer's decode attention (decode sequences > 0;
        all zero when no context is read: a hybrid step whose host CPU attends them all)."""
        return self.priced(
            batch.num_decode_seqs, batch.decode_context_tokens, batch.max_decode_context_tokens
        )

    def priced(self, seqs: int, context_tokens: int, max_context: int) -> Priced:
        """``cost`` of a batch with these decode aggregates."""
        if context_tokens == 0:  # a hybrid step whose host CPU attends them all
            return 0.0, 0.0, 0.0, 0.0
        context = float(context_tokens)
        window = self.window
        if window is not None and max_context > window:
            context = min(context, float(seqs) * window)
        heads, head_dim = self.heads, self.head_dim
        flops = 4.0 * context * heads * head_dim
        kv_read = context * 2 * self.kv_heads * head_dim * self.kv_bytes
        q_bytes = seqs * heads * head_dim * 2 * 2.0
        mean = context / seqs
        eff = self.mem_eff * mean / (mean + self.ctx_half)
        t_c = flops / self.peak_eff
        num_bytes = kv_read + q_bytes
        t_m = num_bytes / (self.bw * eff)
        time_s = self.launch_s + (t_c if t_c >= t_m else t_m)
        return flops, num_bytes, time_s, kernel_joules(self.energy, flops, num_bytes, time_s)
