"""What one step costs: its batch shape, and the parts speculative decoding, multi-LoRA and
CPU-GPU hybrid execution change, kept out of the plain engine loop.

Speculation (``engine.speculative``): the step is the target's verify pass plus the draft's
passes. LoRA (``engine.lora``): the step adds the batched-LoRA kernels and the copy of any
adapter it loaded. Hybrid (``engine.hybrid``): the GPU's part and the CPU's decode attention
overlapped. Every function reads the state, never changes its books.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from servesim.engine.batch import Batch
from servesim.engine.lora import AdapterCache
from servesim.engine.speculative import Speculator
from servesim.engine.state import ReplicaState
from servesim.perf.types import BatchShape, PerfModel, StageTimes

Price = Callable[[BatchShape], StageTimes]
Count = Callable[[str, int], None]


#: ``BatchShape``'s first eight fields, in order (what ``batch_aggregates`` returns)
Aggregates = tuple[int, int, int, int, int, int, int, int]


def batch_shape(batch: Batch, state: ReplicaState) -> BatchShape:
    """The shape the perf model prices for ``batch`` (read off the state's aggregates when
    the batch decodes every decoding sequence)."""
    return BatchShape(*batch_aggregates(batch, state))


def batch_aggregates(batch: Batch, state: ReplicaState) -> Aggregates:
    """``batch_shape``'s fields, in ``BatchShape`` order, without building it (the engine
    hands them to ``FastCost.plain``)."""
    num_p = p_tok = cxk = csq = maxc = 0
    for seq, chunk in batch.prefills:
        num_p += 1
        p_tok += chunk
        cxk += chunk * seq.num_computed
        csq += chunk * chunk
        if chunk > maxc:  # max(maxc, chunk)
            maxc = chunk
    decodes = batch.decodes
    ctx_sum = max_ctx = 0
    if decodes:
        group, ready = state.group, state.ready
        if len(decodes) == len(group.members) + len(ready):  # state.num_decoding
            ctx_sum = group.ctx_sum
            max_ctx = group.max_context() if group.members else 0
            for seq in ready:
                ctx = seq.num_prompt_tokens + seq.num_emitted
                ctx_sum += ctx
                max_ctx = max(max_ctx, ctx)
        else:
            contexts = [state.context(seq) for seq in decodes]
            ctx_sum, max_ctx = sum(contexts), max(contexts)
    return num_p, p_tok, cxk, csq, maxc, len(decodes), ctx_sum, max_ctx


def lora_times(
    adapters: AdapterCache,
    batch: Batch,
    times: StageTimes,
    num_tokens_per_decode: int,
    count: Count,
) -> tuple[StageTimes, float]:
    """``times`` plus the batched-LoRA kernels (split over the stages like the layers),
    and the host -> GPU copy time of the adapters this step loaded."""
    per = num_tokens_per_decode
    entries = [*batch.prefills, *((seq, per) for seq in batch.decodes)]
    cost = adapters.batch_cost(entries)
    num_loads, num_bytes = adapters.take_step_loads()
    if num_loads:
        count("lora_loads", num_loads)
        count("lora_load_bytes", num_bytes)
    if cost.time_s:
        share = cost.time_s / len(times.stage_s)
        times = replace(
            times,
            stage_s=tuple(t + share for t in times.stage_s),
            flops=times.flops + cost.flops,
            hbm_bytes=times.hbm_bytes + cost.hbm_bytes,
        )
    return times, adapters.load_time_s(num_bytes, num_loads)


def spec_times(
    spec: Speculator, batch: Batch, state: ReplicaState, price: Price, perf: PerfModel
) -> StageTimes:
    """A speculative step's time: the target's verify pass (the prefill chunks plus
    ``k + 1`` positions per decode) and the draft's passes (``engine.speculative``)."""
    plain = batch_shape(batch, state)  # its decode fields are what the draft passes read
    prefill = replace(
        plain, num_decode_seqs=0, decode_context_tokens=0, max_decode_context_tokens=0
    )
    decodes = (
        (s.num_prompt_tokens + s.num_emitted, spec.num_verify(s, s.num_emitted))
        for s in batch.decodes
    )
    times = price(spec.verify_shape(prefill, decodes))
    return spec.with_draft(times, prefill, plain, perf.iteration_time)


def hybrid_times(batch: Batch, state: ReplicaState, price: Price, count: Count) -> StageTimes:
    """A hybrid step's time: the GPU's part and the CPU's decode attention overlapped,
    plus the host-link copies (``engine.hybrid``); counts the CPU-attended decodes."""
    hybrid = state.hybrid
    assert hybrid is not None
    contexts = [state.context(seq) for seq in batch.decodes]
    ids = [seq.sid for seq in batch.decodes]
    step = hybrid.step(batch_shape(batch, state), contexts, state.blocks.num_used, price, ids)
    if step.num_cpu_decodes:
        count("hybrid_cpu_decodes", step.num_cpu_decodes)
        count("hybrid_cpu_steps", 1)
    if step.num_moved:
        count("hybrid_kv_moves", step.num_moved)
    return step.times
