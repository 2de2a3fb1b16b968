"""``StepFeaturesMixin``: the parts of ``VirtualEngine``'s step that speculative decoding and
multi-LoRA change (the step's time, what its decodes emit), kept out of the plain loop, and
the time of a CPU-GPU hybrid step (``engine.hybrid``).

Speculation (``engine.speculative``): the step is the target's verify pass plus the draft's
passes, and each decode keeps its accepted drafts plus one token. LoRA (``engine.lora``): the
step adds the batched-LoRA kernels and the copy of any adapter it loaded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from servesim.engine.batch import Batch
from servesim.engine.sequence import Seq
from servesim.perf.types import BatchShape, StageTimes

if TYPE_CHECKING:
    from servesim.engine.records import SimulationRecords
    from servesim.engine.replica import Replica
    from servesim.engine.schedulers.base import ReplicaScheduler
    from servesim.engine.state import ReplicaState


class StepFeaturesMixin:
    """Speculative and LoRA step parts of ``VirtualEngine`` (which provides the attributes
    and methods declared below)."""

    state: ReplicaState
    scheduler: ReplicaScheduler
    replica: Replica
    records: SimulationRecords

    if TYPE_CHECKING:

        def perf(self, shape: BatchShape) -> StageTimes: ...
        def _shape(self, batch: Batch) -> BatchShape: ...
        def _emit(self, seq: Seq, now: float) -> None: ...
        def _finish(self, seq: Seq, now: float) -> None: ...

    def _with_lora(self, batch: Batch, times: StageTimes) -> tuple[StageTimes, float]:
        """``times`` plus the batched-LoRA kernels (split over the stages like the layers),
        and the host -> GPU copy time of the adapters this step loaded."""
        adapters = self.state.adapters
        assert adapters is not None
        per = self.scheduler.num_tokens_per_decode
        entries = [*batch.prefills, *((seq, per) for seq in batch.decodes)]
        cost = adapters.batch_cost(entries)
        num_loads, num_bytes = adapters.take_step_loads()
        if num_loads:
            self.records.count("lora_loads", num_loads)
            self.records.count("lora_load_bytes", num_bytes)
        if cost.time_s:
            share = cost.time_s / len(times.stage_s)
            times = replace(
                times,
                stage_s=tuple(t + share for t in times.stage_s),
                flops=times.flops + cost.flops,
                hbm_bytes=times.hbm_bytes + cost.hbm_bytes,
            )
        return times, adapters.load_time_s(num_bytes, num_loads)

    def _spec_tick(self, decodes: list[Seq], now: float) -> None:
        """Each speculative decode keeps its accepted drafts plus one token, all streamed
        at the step's end (one inter-token gap per step, as a client receives them)."""
        spec = self.state.speculator
        assert spec is not None
        for seq in decodes:
            kept = spec.num_kept(seq, spec.num_verify(seq, seq.num_emitted))
            self._emit(seq, now)
            seq.num_emitted += kept - 1
            if seq.num_emitted >= seq.num_output_tokens:
                self._finish(seq, now)

    def _spec_times(self, batch: Batch) -> StageTimes:
        """A speculative step's time: the target's verify pass (the prefill chunks plus
        ``k + 1`` positions per decode) and the draft's passes (``engine.speculative``)."""
        spec = self.state.speculator
        assert spec is not None
        plain = self._shape(batch)  # its decode fields are what the draft passes read
        prefill = replace(
            plain, num_decode_seqs=0, decode_context_tokens=0, max_decode_context_tokens=0
        )
        decodes = (
            (s.num_prompt_tokens + s.num_emitted, spec.num_verify(s, s.num_emitted))
            for s in batch.decodes
        )
        times = self.perf(spec.verify_shape(prefill, decodes))
        return spec.with_draft(times, prefill, plain, self.replica.perf.iteration_time)

    def _hybrid_times(self, batch: Batch) -> StageTimes:
        """A hybrid step's time: the GPU's part and the CPU's decode attention overlapped,
        plus the host-link copies (``engine.hybrid``); counts the CPU-attended decodes."""
        state = self.state
        hybrid = state.hybrid
        assert hybrid is not None
        contexts = [state.context(seq) for seq in batch.decodes]
        step = hybrid.step(self._shape(batch), contexts, state.blocks.num_used, self.perf)
        if step.num_cpu_decodes:
            self.records.count("hybrid_cpu_decodes", step.num_cpu_decodes)
            self.records.count("hybrid_cpu_steps", 1)
        return step.times
