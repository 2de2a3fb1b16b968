"""Factories for engine tests: fake perf models with hand-computable times, tiny requests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from servesim.engine import (
    CacheConfig,
    ReplicaSetup,
    SimulationRecords,
    VLLMSchedulerConfig,
    run_simulation,
)
from servesim.engine.records import RejectReason
from servesim.engine.sequence import Seq
from servesim.engine.state import ReplicaState
from servesim.perf.types import BatchShape, MemoryPlan, ReplicaPlan, StageTimes
from servesim.specs import get_gpu, resolve_model
from servesim.workload.request import Request


class LinearPerf:
    """time = a + b * num_tokens + c * decode_context_tokens (+ d * prefill attention pairs),
    split evenly over ``pp`` stages; a fixed number of KV blocks."""

    def __init__(
        self,
        a: float = 0.01,
        b: float = 1e-4,
        c: float = 1e-7,
        d: float = 0.0,
        *,
        num_kv_blocks: int = 1000,
        kv_bytes_per_token: float = 131072.0,
    ) -> None:
        self.a, self.b, self.c, self.d = a, b, c, d
        self.num_kv_blocks = num_kv_blocks
        self.kv_bytes_per_token = kv_bytes_per_token
        self.num_calls = 0

    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        """The linear formula, per stage."""
        self.num_calls += 1
        pairs = batch.prefill_chunk_x_context + (batch.prefill_chunk_sq + batch.num_prefill_tokens)
        total = (
            self.a
            + self.b * batch.num_tokens
            + self.c * batch.decode_context_tokens
            + self.d * pairs / 2
        )
        pp = plan.pp
        return StageTimes(stage_s=(total / pp,) * pp, flops=float(batch.num_tokens))

    def memory_plan(
        self,
        plan: ReplicaPlan,
        *,
        block_size_tokens: int = 16,
        gpu_memory_utilization: float = 0.9,
        max_num_batched_tokens: int = 8192,
    ) -> MemoryPlan:
        """Fixed block count."""
        kv_bytes = int(self.num_kv_blocks * block_size_tokens * self.kv_bytes_per_token)
        return MemoryPlan(
            gpu_memory_bytes=80 * 2**30,
            usable_bytes=72 * 2**30,
            weight_bytes=16 * 2**30,
            activation_bytes=2**30,
            overhead_bytes=2**30,
            kv_cache_bytes=kv_bytes,
            kv_bytes_per_token=self.kv_bytes_per_token,
            block_size_tokens=block_size_tokens,
            num_kv_blocks=self.num_kv_blocks,
        )


class ConstantPerf(LinearPerf):
    """Every iteration takes ``time_s`` whatever it holds."""

    def __init__(self, time_s: float = 0.1, **kw: float) -> None:
        super().__init__(a=time_s, b=0.0, c=0.0, **kw)  # type: ignore[arg-type]


def plan(pp: int = 1, max_context_tokens: int | None = None) -> ReplicaPlan:
    """A Llama-3.1-8B on H100 plan (the fakes ignore the figures)."""
    model = resolve_model("llama-3.1-8b")
    if max_context_tokens is not None:
        model = dataclasses.replace(model, max_context_tokens=max_context_tokens)
    return ReplicaPlan(model=model, gpu=get_gpu("h100-sxm"), pp=pp)


def setup(
    scheduler: object | None = None,
    *,
    pp: int = 1,
    max_context_tokens: int | None = None,
    **cache: object,
) -> ReplicaSetup:
    """A replica setup with a scheduler config (vLLM V0 by default) and cache options."""
    return ReplicaSetup(
        plan=plan(pp, max_context_tokens),
        scheduler=scheduler or VLLMSchedulerConfig(),  # type: ignore[arg-type]
        cache=CacheConfig(**cache),  # type: ignore[arg-type]
    )


def req(i: int, t: float, prompt: int, output: int, **kw: object) -> Request:
    """A request with id ``i`` arriving at ``t``."""
    return Request(
        request_id=i, arrival_s=t, num_prompt_tokens=prompt, num_output_tokens=output, **kw
    )  # type: ignore[arg-type]


def shared_head_requests(
    n: int,
    gap_s: float,
    heads: Sequence[int],
    prompt: tuple[int, int],
    output: tuple[int, int],
    block: int = 16,
) -> list[Request]:
    """``n`` requests ``gap_s`` apart of 63 prompt blocks each (hashes for prefix caching at
    ``block`` tokens a block): request ``i`` shares its first ``heads[i % len(heads)]`` blocks
    with the others, its prompt is ``prompt[0] + prompt[1] * i`` tokens and its output
    ``output[0] + output[1] * i``."""
    out = []
    for i in range(n):
        shared = heads[i % len(heads)]
        hashes = tuple(range(1, shared + 1)) + tuple(range(1000 * i, 1000 * i + 63 - shared))
        r = req(
            i,
            gap_s * i,
            prompt[0] + prompt[1] * i,
            output[0] + output[1] * i,
            prefix_block_hashes=hashes,
        )
        out.append(dataclasses.replace(r, prefix_block_size=block))
    return out


def poisson_requests(
    n: int, rate: float, prompt: Sequence[int] | int, output: Sequence[int] | int, seed: int = 0
) -> list[Request]:
    """``n`` requests with Poisson arrivals; lengths fixed or drawn uniformly from ranges."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, n))

    def draw(spec: Sequence[int] | int) -> np.ndarray:
        if isinstance(spec, int):
            return np.full(n, spec)
        return rng.integers(spec[0], spec[1] + 1, n)

    ps, os_ = draw(prompt), draw(output)
    return [req(i, float(t[i]), int(ps[i]), int(os_[i])) for i in range(n)]


def run(
    requests: Iterable[Request],
    perf: LinearPerf | None = None,
    replicas: Sequence[ReplicaSetup] | ReplicaSetup | None = None,
    **kw: object,
) -> SimulationRecords:
    """run_simulation with invariant checks on and sensible fakes."""
    if replicas is None:
        replicas = [setup()]
    elif isinstance(replicas, ReplicaSetup):
        replicas = [replicas]
    kw.setdefault("check_invariants", True)
    return run_simulation(requests, replicas, perf or LinearPerf(), **kw)  # type: ignore[arg-type]


def rows(records: SimulationRecords) -> dict[str, np.ndarray]:
    """Request columns sorted by request id."""
    cols = records.requests.view()
    order = np.argsort(cols["request_id"], kind="stable")
    return {k: v[order] for k, v in cols.items()}


def assert_all_served(records: SimulationRecords) -> None:
    """Every request completed with all its tokens."""
    cols = rows(records)
    assert (cols["reject_reason"] == RejectReason.NONE).all()
    assert (cols["num_emitted_tokens"] == cols["num_output_tokens"]).all()
    assert not np.isnan(cols["completion_s"]).any()


def prefill_whole(state: ReplicaState, seq: Seq) -> int:
    """Admit waiting ``seq`` and run its whole prompt in one step through ``state`` (its books
    checked after); the prefix-cache hit in blocks."""
    from servesim.engine.batch import Batch

    state.waiting.remove(seq)
    hit = state.admit(seq, 0.0)
    chunk = seq.prefill_target - seq.num_computed
    state.allocate_chunk(seq, chunk)
    state.apply(Batch(prefills=[(seq, chunk)]), 1.0, 1.0, lambda s, t: None)
    state.check()
    return hit
