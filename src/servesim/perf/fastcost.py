"""The cost-model fast path: exact iteration prices for the common plan shapes.

The engine asks for one price per iteration (70,000 in ``bench/bench_engine.py``), and no two
batch shapes repeat (the decode context grows every step), so memos on the whole shape never
hit. What does repeat is everything but a few aggregates: per plan, the token-only and
head-only parts are summed once per token count (``PlanCost``), and the attention and host
terms are a few float operations on the batch aggregates. ``FastCost`` performs exactly the
floating-point operations of ``PlanCost.general``, in the same order and on the same operands,
with every per-plan constant and lookup hoisted out of the call: its answers are bit-identical
(``tests/perf/test_fast_path.py`` compares both paths op for op and whole runs byte for byte).

Every plan has a fast path. The closed-form attention of a single layer kind (full, or
sliding windows; no MLA, no measured attention tables) is inlined; any other plan (measured
tables, mixed or linear layer kinds, DeepSeek's sparse attention, MLA) asks ``PlanGraph``
for its attention as the general path does, and MLA adds its extra GEMMs (``PlanCost``).
"""

from __future__ import annotations

from servesim.perf.calibration import HostOverhead
from servesim.perf.fast_attention import closed_form, kernel_joules
from servesim.perf.plan_cost import PlanCost
from servesim.perf.types import BatchShape, StageTimes

_SAMPLING_BITS = 32  # the combined memo key: tokens << 32 | sampling sequences
_MAX_BASES = 200_000  # ~70 MB of memo entries at most (~350 bytes each)
# token part + head part: stage times, kernel counts, FLOPs, bytes, energy, collective time
_Base = tuple[tuple[float, ...], tuple[int, ...], float, float, float, float]

# ``StageTimes(...)`` field by field through its slots: a frozen dataclass's ``__init__`` sets
# each field with ``object.__setattr__`` by name, twice the cost of the slot descriptors (the
# engine builds one per step); the object is the same (tests/perf/test_fast_path.py)
_new_times = StageTimes.__new__
_set_stage_s = StageTimes.__dict__["stage_s"].__set__
_set_overhead_s = StageTimes.__dict__["overhead_s"].__set__
_set_flops = StageTimes.__dict__["flops"].__set__
_set_hbm_bytes = StageTimes.__dict__["hbm_bytes"].__set__
_set_energy_j = StageTimes.__dict__["energy_j"].__set__
_set_comm_s = StageTimes.__dict__["comm_s"].__set__


class FastCost:
    """Per-plan constants of the fast path; call it with a ``BatchShape``."""

    __slots__ = (
        "attention",
        "bases",
        "cost",
        "decode",
        "host",
        "host_cpu",
        "idle_w",
        "launch_s",
        "layer_counts",
        "max_graph_tokens",
        "mla_part",
        "num_layers",
        "pp",
        "prefill",
        "simple",
        "tp",
        "use_graphs",
        "zero",
    )

    def __init__(self, cost: PlanCost) -> None:
        graph, plan, host = cost.graph, cost.plan, cost.host
        self.cost = cost
        self.host = host
        self.pp, self.tp = plan.pp, plan.tp
        self.num_layers = plan.model.num_layers
        self.layer_counts = tuple(len(layers) for layers in graph.stages)
        # one layer kind's closed-form attention inlined, else the plan graph's own attention
        self.attention = None if self._is_closed_form(cost) else graph.attention
        self.prefill, self.decode = closed_form(graph, cost.energy)
        self.mla_part = cost.mla_part if graph.shapes.is_mla else None
        # replays_graph and launch_s of the host profile, hoisted
        self.use_graphs = (plan.use_cuda_graphs, host.graphs_with_prefill)
        self.max_graph_tokens = host.max_graph_tokens
        self.launch_s = host.launch_s
        self.idle_w = cost.energy.idle_power_w
        self.zero = StageTimes(stage_s=(0.0,) * plan.pp)
        # HostOverhead.cpu_time_s's constants, for plain's inlined host time (overlap "none")
        self.host_cpu: tuple[float, float, float, float, float, int] | None = None
        if type(host) is HostOverhead and host.overlap == "none":
            self.host_cpu = (
                *(host.base_s, host.per_seq_s, host.per_prefill_seq_s, host.per_token_s),
                *(host.cpu_speed, host.num_scheduler_steps),
            )
        # the inlined closed form on one stage, no MLA: ``plain`` prices from aggregates
        self.simple = self.attention is None and self.mla_part is None and plan.pp == 1
        # (tokens, sampling) -> token part + head part, summed as PlanCost.general sums them
        self.bases: dict[int, _Base] = {}

    @staticmethod
    def _is_closed_form(cost: PlanCost) -> bool:
        """True when the plan's attention is the inlined closed form (one kind, no tables)."""
        graph = cost.graph
        kinds = graph.kind_counts
        if graph.shapes.is_mla or len(kinds) != 1 or "attention" in graph.kernels.sources:
            return False
        (kind,) = kinds
        return kind != "linear" and not (
            kind == "sparse" and graph.model.sparse_attention is not None
        )

    def _base(self, tokens: int, sampling: int) -> _Base:
        part = self.cost.token_part(tokens)
        head = self.cost.head_part(sampling)
        base = (
            tuple(a + b for a, b in zip(part.stage_s, head.stage_s, strict=True)),
            tuple(a + b for a, b in zip(part.kernels, head.kernels, strict=True)),
            part.flops + head.flops,
            part.num_bytes + head.num_bytes,
            part.energy_j + head.energy_j,
            part.comm_s + head.comm_s,
        )
        if len(self.bases) >= _MAX_BASES:  # a bound for pathological runs (1,668 in bench_engine)
            self.bases.clear()
        self.bases[tokens << _SAMPLING_BITS | sampling] = base
        return base

    def __call__(self, batch: BatchShape) -> StageTimes:
        """The price of one iteration of ``batch`` (identical to ``PlanCost.general``)."""
        if self.simple and not (batch.num_verify_seqs or batch.num_extra_logits):
            return self.plain(
                batch.num_prefill_seqs,
                batch.num_prefill_tokens,
                batch.prefill_chunk_x_context,
                batch.prefill_chunk_sq,
                batch.max_prefill_chunk_tokens,
                batch.num_decode_seqs,
                batch.decode_context_tokens,
                batch.max_decode_context_tokens,
            )
        num_p = batch.num_prefill_tokens
        num_d = batch.num_decode_seqs
        tokens = num_p + num_d
        if tokens == 0:
            return self.zero
        sampling = batch.num_prefill_seqs + num_d + batch.num_extra_logits
        base = self.bases.get(tokens << _SAMPLING_BITS | sampling)
        if base is None:
            base = self._base(tokens, sampling)
        stage_s, kernels, flops, nbytes, joules, comm_s = base
        if self.mla_part is not None:  # MLA's extra GEMMs come before attention, as in general
            extra = self.mla_part(batch)
            stage_s = tuple(a + b for a, b in zip(stage_s, extra.stage_s, strict=True))
            flops += extra.flops
            nbytes += extra.num_bytes
            joules += extra.energy_j
        pre_f, pre_b, pre_t, pre_j, dec_f, dec_b, dec_t, dec_j = self._attention_cost(batch)
        per_layer_s = pre_t + dec_t
        num_calls = (pre_t > 0) + (dec_t > 0)
        num_layers = self.num_layers
        flops += (pre_f + dec_f) * num_layers
        nbytes += (pre_b + dec_b) * num_layers
        if pre_t > 0:
            joules += num_layers * pre_j
        if dec_t > 0:
            joules += num_layers * dec_j
        if self.pp == 1:
            (n,) = self.layer_counts
            t = stage_s[0] + per_layer_s * n
            launch = kernels[0] + num_calls * n
            return self._one_stage(batch, tokens, t, launch, flops, nbytes, joules, comm_s)
        counts = self.layer_counts
        times = [t + per_layer_s * n for t, n in zip(stage_s, counts, strict=True)]
        launches = [k + num_calls * n for k, n in zip(kernels, counts, strict=True)]
        return self._stages(batch, tokens, times, launches, flops, nbytes, joules, comm_s)

    def _attention_cost(
        self, batch: BatchShape
    ) -> tuple[float, float, float, float, float, float, float, float]:
        """One layer's (FLOPs, bytes, time, energy) of prefill, then of decode, attention.

        A fixed-length float tuple, so the mypyc build returns it unboxed (no per-call dict or
        object): this runs once per non-``simple`` iteration.
        """
        if self.attention is None:
            zero = (0.0, 0.0, 0.0, 0.0)
            pre_f, pre_b, pre_t, pre_j = (
                self.prefill.cost(batch) if batch.num_prefill_tokens else zero
            )
            dec_f, dec_b, dec_t, dec_j = self.decode.cost(batch) if batch.num_decode_seqs else zero
            return pre_f, pre_b, pre_t, pre_j, dec_f, dec_b, dec_t, dec_j
        # the graph's attention, priced with its energy by the general path's rule
        pre, dec = self.attention(batch)
        pre_f, pre_b, pre_t = pre.flops, pre.num_bytes, pre.time_s
        dec_f, dec_b, dec_t = dec.flops, dec.num_bytes, dec.time_s
        pre_j = kernel_joules(self.prefill.energy, pre_f, pre_b, pre_t) if pre_t > 0 else 0.0
        dec_j = kernel_joules(self.decode.energy, dec_f, dec_b, dec_t) if dec_t > 0 else 0.0
        return pre_f, pre_b, pre_t, pre_j, dec_f, dec_b, dec_t, dec_j

    def plain(
        self,
        num_prefill_seqs: int,
        num_prefill_tokens: int,
        prefill_chunk_x_context: int,
        prefill_chunk_sq: int,
        max_prefill_chunk_tokens: int,
        num_decode_seqs: int,
        decode_context_tokens: int,
        max_decode_context_tokens: int,
    ) -> StageTimes:
        """``__call__`` of the ``BatchShape`` with these fields (no verify passes, no extra
        logits) on a ``simple`` plan, without building it: the same float operations, in the
        same order (the engine's loop prices every step this way)."""
        num_p, num_d, num_ps = num_prefill_tokens, num_decode_seqs, num_prefill_seqs
        tokens = num_p + num_d
        if tokens == 0:
            return self.zero
        sampling = num_ps + num_d + 0  # + num_extra_logits, as __call__ adds it
        base = self.bases.get(tokens << _SAMPLING_BITS | sampling)
        if base is None:
            base = self._base(tokens, sampling)
        stage_s, kernels, flops, nbytes, joules, comm_s = base
        if num_p:
            pre_f, pre_b, pre_t, pre_j = self.prefill.priced(
                num_p, prefill_chunk_x_context, prefill_chunk_sq, num_ps
            )
        else:
            pre_f, pre_b, pre_t, pre_j = 0.0, 0.0, 0.0, 0.0
        if num_d:
            dec_f, dec_b, dec_t, dec_j = self.decode.priced(
                num_d, decode_context_tokens, max_decode_context_tokens
            )
        else:
            dec_f, dec_b, dec_t, dec_j = 0.0, 0.0, 0.0, 0.0
        num_layers = self.num_layers
        flops += (pre_f + dec_f) * num_layers
        nbytes += (pre_b + dec_b) * num_layers
        if pre_t > 0:
            joules += num_layers * pre_j
        if dec_t > 0:
            joules += num_layers * dec_j
        (n,) = self.layer_counts
        kernel_s = stage_s[0] + (pre_t + dec_t) * n
        launches = kernels[0] + ((pre_t > 0) + (dec_t > 0)) * n
        return self._plain_stage(
            num_ps, num_d, tokens, kernel_s, launches, flops, nbytes, joules, comm_s
        )

    def _plain_stage(
        self,
        num_ps: int,
        num_d: int,
        tokens: int,
        kernel_s: float,
        launches: int,
        flops: float,
        nbytes: float,
        joules: float,
        comm_s: float,
    ) -> StageTimes:
        """``_one_stage`` of ``plain``, with the batch's fields given (no verify passes)."""
        use_graphs, graphs_with_prefill = self.use_graphs
        if use_graphs and (graphs_with_prefill or not num_ps) and tokens <= self.max_graph_tokens:
            t = kernel_s
        else:
            launch_s = launches * self.launch_s
            t = launch_s if launch_s > kernel_s else kernel_s  # max(kernel_s, launch_s)
        host_cpu = self.host_cpu
        if host_cpu is None:
            overhead = self.host.host_time_s(num_d, num_ps, tokens, gpu_s=t)
        else:
            # HostOverhead.host_time_s with overlap "none" (cpu_time_s + 0.0), inlined
            base_s, per_seq_s, per_prefill_s, per_tok_s, speed, steps = host_cpu
            cpu_s = base_s + per_seq_s * num_d + per_prefill_s * num_ps + per_tok_s * tokens
            cpu_s = cpu_s / speed
            if num_ps == 0 and steps > 1:
                cpu_s = cpu_s / steps
            overhead = cpu_s + 0.0
        idle_s = t - kernel_s + overhead
        idle_s = 0.0 if idle_s < 0.0 else idle_s  # max(idle_s, 0.0)
        joules += self.idle_w * idle_s  # pp = 1
        tp = self.tp
        # StageTimes((t,), overhead, flops * tp, nbytes * tp, joules * tp, comm_s)
        times = _new_times(StageTimes)
        _set_stage_s(times, (t,))
        _set_overhead_s(times, overhead)
        _set_flops(times, flops * tp)
        _set_hbm_bytes(times, nbytes * tp)
        _set_energy_j(times, joules * tp)
        _set_comm_s(times, comm_s)
        return times

    def _replays_graph(self, batch: BatchShape, tokens: int) -> bool:
        use_graphs, graphs_with_prefill = self.use_graphs
        return (
            use_graphs
            and (graphs_with_prefill or not batch.num_prefill_seqs - batch.num_verify_seqs)
            and tokens <= self.max_graph_tokens
        )

    def _one_stage(
        self,
        batch: BatchShape,
        tokens: int,
        stage_s: float,
        kernels: int,
        flops: float,
        nbytes: float,
        joules: float,
        comm_s: float,
    ) -> StageTimes:
        """``PlanCost._finish`` for one stage: a float where it sums and maxes a 1-list."""
        kernel_s = stage_s
        if not self._replays_graph(batch, tokens):
            stage_s = max(stage_s, kernels * self.launch_s)
        overhead = self.host.host_time_s(
            batch.num_decode_seqs + batch.num_verify_seqs,
            batch.num_prefill_seqs - batch.num_verify_seqs,
            tokens,
            gpu_s=stage_s,
        )
        joules += self.idle_w * max(stage_s - kernel_s + overhead, 0.0)  # pp = 1
        tp = self.tp
        return StageTimes((stage_s,), overhead, flops * tp, nbytes * tp, joules * tp, comm_s)

    def _stages(
        self,
        batch: BatchShape,
        tokens: int,
        stage_s: list[float],
        kernels: list[int],
        flops: float,
        nbytes: float,
        joules: float,
        comm_s: float,
    ) -> StageTimes:
        """``PlanCost._finish`` with the host profile's graph rule hoisted (same operations)."""
        kernel_s = sum(stage_s)
        if not self._replays_graph(batch, tokens):
            launch_s = self.launch_s
            stage_s = [max(t, k * launch_s) for t, k in zip(stage_s, kernels, strict=True)]
        overhead = self.host.host_time_s(
            batch.num_decode_seqs + batch.num_verify_seqs,
            batch.num_prefill_seqs - batch.num_verify_seqs,
            tokens,
            gpu_s=max(stage_s),
        )
        joules += self.idle_w * max(sum(stage_s) - kernel_s + overhead * self.pp, 0.0)
        tp = self.tp
        return StageTimes(tuple(stage_s), overhead, flops * tp, nbytes * tp, joules * tp, comm_s)
