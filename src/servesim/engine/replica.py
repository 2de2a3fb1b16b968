"""``Replica``: one model replica running iterations back to back.

A replica with ``pp`` pipeline stages runs ``pp`` virtual engines (vLLM's PP design): each has
its own scheduler, queues and ``1/pp`` of the KV blocks, and keeps one micro-batch in flight;
micro-batches pass the stages in order, each stage busy for its ``StageTimes.stage_s``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from servesim.core.errors import ConfigError, InfeasibleError
from servesim.core.events import EventLoop, EventPriority
from servesim.engine.blocks import KVBlockManager, at_vllm_block_size
from servesim.engine.config import CacheConfig
from servesim.engine.dp_group import check_rank, rank_memory_plan
from servesim.engine.hybrid import HybridExecutor
from servesim.engine.links import EngineLinks
from servesim.engine.lora import AdapterCache
from servesim.engine.preemption import PreemptionChoice, preemption_for
from servesim.engine.records import RejectReason, ReplicaInfo, SimulationRecords
from servesim.engine.replica_features import replica_features
from servesim.engine.scheduler_setup import make_scheduler, memory_token_budget, prefix_caching
from servesim.engine.schedulers import ReplicaScheduler
from servesim.engine.sequence import Seq
from servesim.engine.setup import ReplicaSetup
from servesim.engine.skip import PipelineSkip
from servesim.engine.speculative import (
    Speculator,
    speculative_state_blocks,
)
from servesim.engine.state import ReplicaState
from servesim.engine.timeline import BatchPricer, StageTimeline, SwapLink
from servesim.engine.vengine import VirtualEngine
from servesim.perf.kv_groups import kv_layout
from servesim.perf.types import PerfModel, ReplicaPlan

if TYPE_CHECKING:
    from servesim.engine.profiles.base import EngineTiming
    from servesim.perf.dp_cost import DPGroupCost

logger = logging.getLogger(__name__)


class Replica:
    """Stage timeline, virtual engines and static facts of one replica."""

    def __init__(
        self,
        replica_id: int,
        setup: ReplicaSetup,
        perf: PerfModel,
        records: SimulationRecords,
        loop: EventLoop,
        clock_limits: Callable[[], float],
        *,
        skip_ahead: bool = True,
        check_invariants: bool = False,
        dp_cost: DPGroupCost | None = None,
    ) -> None:
        setup = at_vllm_block_size(setup)  # linear-attention hybrids: vLLM's raised block
        plan: ReplicaPlan = setup.plan
        # A data-parallel-attention rank (engine/dp_group.py): priced for its own part, its
        # memory holding E / (tp x dp) whole experts per GPU, stepped with its group.
        self.dp_cost = dp_cost
        if dp_cost is not None:
            check_rank(replica_id, setup)
        self.replica_id = replica_id
        self.plan = plan
        self.perf = perf
        self.records = records
        self.loop = loop
        self.max_model_len = plan.model.max_context_tokens
        self.block_size = setup.cache.block_size
        self.prefix_caching = prefix_caching(setup)
        self.role = setup.role
        self.outstanding_tokens = 0
        self.alive: dict[Seq, None] = {}
        self._on_prefilled: Callable[[Seq, float], None] | None = None
        timing = setup.timing.checked()
        self.frontend_latency_s = timing.frontend_latency_s
        # Requests past the server's front end but not yet in an engine loop, as (entry
        # time, request); one latency for all, so they enter in arrival order.
        self.entering: deque[tuple[float, Seq]] = deque()
        self._external_limit = clock_limits
        schedulers = self._schedulers(setup, max(plan.pp, 1))
        block_bytes = self._size_kv(setup, schedulers)
        can_skip = skip_ahead and self._can_skip(setup) and dp_cost is None
        options = {"skip_ahead": can_skip, "check_invariants": check_invariants}
        self.engines = self._engines(setup, schedulers, block_bytes, timing, **options)
        self._hold_kv_skip(setup.receives_kv)
        records.replicas.append(self._info(setup))

    def _engines(
        self,
        setup: ReplicaSetup,
        schedulers: list[ReplicaScheduler],
        block_bytes: float,
        timing: EngineTiming,
        *,
        skip_ahead: bool,
        check_invariants: bool,
    ) -> list[VirtualEngine]:
        """One virtual engine per pipeline stage, each with its share of the KV blocks."""
        pp = len(schedulers)
        links = self._links(block_bytes, pp, setup.receives_kv)
        num_swap_blocks = int(setup.cache.swap_space_bytes // block_bytes) if block_bytes else 0
        engines = [
            VirtualEngine(
                i,
                scheduler,
                self._state(
                    setup.cache,
                    preemption_for(setup.cache, scheduler.preemption_mode, links),
                    num_swap_blocks // pp,
                    pp,
                ),
                links,
                skip_ahead=skip_ahead,
                check_invariants=check_invariants,
                timing=timing,
            )
            for i, scheduler in enumerate(schedulers)
        ]
        if pp > 1:
            joint = PipelineSkip(engines)
            for engine in engines:
                engine.pipeline = joint
        return engines

    def _schedulers(self, setup: ReplicaSetup, pp: int) -> list[ReplicaScheduler]:
        """One scheduler per pipeline stage's virtual engine."""
        return [
            make_scheduler(setup.scheduler, max_model_len=self.max_model_len) for _ in range(pp)
        ]

    def _size_kv(self, setup: ReplicaSetup, schedulers: list[ReplicaScheduler]) -> float:
        """Set the KV pool size (features included); returns the bytes of one KV block on
        one GPU."""
        plan, cache = self.plan, setup.cache
        budget = memory_token_budget(setup.scheduler, max_model_len=self.max_model_len)
        if self.dp_cost is not None:
            mem = rank_memory_plan(plan, self.dp_cost.dp, cache, budget, self.dp_cost.dense_mlp)
        else:
            mem = self.perf.memory_plan(
                plan,
                block_size_tokens=cache.block_size,
                gpu_memory_utilization=cache.gpu_memory_utilization,
                max_num_batched_tokens=budget,
            )
        features = replica_features(
            setup, schedulers, self.perf, mem, budget, cache.num_kv_blocks or mem.num_kv_blocks
        )
        self.speculator: Speculator | None = features.speculator
        self.adapters: AdapterCache | None = features.adapters
        self.hybrid: HybridExecutor | None = features.hybrid
        self.num_kv_blocks = features.num_kv_blocks
        pp = max(plan.pp, 1)
        if self.num_kv_blocks < pp:
            raise InfeasibleError(
                f"replica {self.replica_id}: {self.num_kv_blocks} KV blocks leave none for "
                f"{pp} pipeline virtual engines (weights {mem.weight_bytes} B of "
                f"{mem.usable_bytes} B usable per GPU)"
            )
        return cache.block_size * mem.kv_bytes_per_token  # per GPU

    def _links(self, block_bytes: float, pp: int, receives_kv: bool) -> EngineLinks:
        """The narrow pieces every virtual engine of this replica shares."""
        link = self.plan.gpu.host_link
        host_bw = link.bandwidth_bytes_per_s
        swap = SwapLink(
            # Every GPU copies its own KV slice over its own host link, in parallel.
            s_per_block=block_bytes / host_bw if host_bw > 0 else 0.0,
            latency_s=link.latency_s,
            bytes_per_block=block_bytes * self.plan.num_gpus,
        )
        return EngineLinks(
            loop=self.loop,
            records=self.records,
            replica_id=self.replica_id,
            timeline=StageTimeline(pp),
            price=BatchPricer(self.perf if self.dp_cost is None else self.dp_cost, self.plan),
            swap=swap,
            # (a replica receiving KV adds the time KV can next reach it: skip_until_kv)
            clock_limit=self._clock_limit
            if self.frontend_latency_s or receives_kv
            else self._external_limit,
            on_leave=self.forget,
        )

    def _can_skip(self, setup: ReplicaSetup) -> bool:
        """Whether this replica's engines may skip ahead (see ``VirtualEngine._skip``)."""
        # A prefill replica's held KV is freed by transfer ends it cannot foresee (it never
        # decodes: stepping costs nothing). A replica receiving KV skips only up to the time
        # the cluster says KV can next reach it (``skip_until_kv``). Pipeline engines share
        # one timeline: they skip together (engine/skip.py).
        return setup.role != "prefill"

    def _hold_kv_skip(self, receives_kv: bool) -> None:
        """A replica receiving KV steps one iteration at a time (an arrival it cannot foresee
        may join any iteration) until ``skip_until_kv`` bounds when KV can next reach it."""
        self.receives_kv = receives_kv
        self.kv_bound: Callable[[Callable[[], float]], float] | None = None
        self._kv_skip = [engine.skip_ahead for engine in self.engines] if receives_kv else []
        for engine in self.engines if receives_kv else ():
            engine.skip_ahead = False

    def skip_until_kv(self, bound: Callable[[Callable[[], float]], float]) -> None:
        """Let this KV-receiving replica skip ahead (where its engines may) up to
        ``bound(clock_limit)``: the earliest time new KV, or a router or a sender reading
        this replica's state, can reach it (``engine.skip_bounds.KVArrivalBound``), given the
        driver's clock limit (the next arrival, the stop time)."""
        if not self.receives_kv:
            raise ConfigError("skip_until_kv", self.replica_id, "the replica receives no KV")
        self.kv_bound = bound
        for engine, can_skip in zip(self.engines, self._kv_skip, strict=True):
            engine.skip_ahead = can_skip

    @property
    def on_prefilled(self) -> Callable[[Seq, float], None] | None:
        """Called with (seq, now) once a prompt and its first token are done (prefill role)."""
        return self._on_prefilled

    @on_prefilled.setter
    def on_prefilled(self, callback: Callable[[Seq, float], None] | None) -> None:
        self._on_prefilled = callback
        for engine in self.engines:
            engine.on_prefilled = callback

    def _state(
        self, cache: CacheConfig, preemption: PreemptionChoice, num_swap_blocks: int, pp: int
    ) -> ReplicaState:
        """One virtual engine's queues and its 1/pp share of the KV blocks (vLLM)."""
        blocks = KVBlockManager(
            self.num_kv_blocks // pp,
            cache.block_size,
            watermark=cache.watermark,
            enable_prefix_caching=self.prefix_caching,
            num_swap_blocks=num_swap_blocks,
            eviction=cache.eviction,
            layout=kv_layout(
                self.plan, cache.block_size, speculative_state_blocks(self.speculator)
            ),
            use_eagle=self.speculator is not None and self.speculator.use_eagle,
        )
        state = ReplicaState(
            blocks, self.records.token_gaps, self.records.count, preemption=preemption
        )
        state.speculator = self.speculator
        state.adapters = self.adapters
        state.hybrid = self.hybrid
        return state

    def _info(self, setup: ReplicaSetup) -> ReplicaInfo:
        plan, gpu = self.plan, self.plan.gpu
        return ReplicaInfo(
            replica_id=self.replica_id,
            gpu_name=gpu.name,
            num_gpus=plan.num_gpus,
            num_kv_blocks=self.num_kv_blocks,
            block_size_tokens=self.block_size,
            price_per_gpu_hour_usd=gpu.price_per_hour_usd,
            tdp_w=gpu.tdp_w,
            idle_w=gpu.idle_w,
            peak_flops_per_s=float(gpu.peak_flops_per_s.get(plan.activation_dtype, 0.0)),
            hbm_bandwidth_bytes_per_s=gpu.hbm_bandwidth_bytes_per_s,
            pool=setup.pool,
            role=setup.role,
        )

    # ---- requests ------------------------------------------------------------------------
    def submit(self, seq: Seq, now: float) -> None:
        """Accept a request that arrived at ``now``; it enters the least loaded virtual
        engine once through the front end (``EngineTiming.frontend_latency_s`` later)."""
        self.alive[seq] = None
        self.outstanding_tokens += seq.num_prompt_tokens + seq.num_output_tokens
        if not self.frontend_latency_s:
            self._enter(seq, now)
            return
        entry_s = now + self.frontend_latency_s
        self.entering.append((entry_s, seq))
        self.loop.schedule(entry_s, self._on_entry, priority=EventPriority.ARRIVAL)

    def _on_entry(self) -> None:
        entry_s, seq = self.entering.popleft()
        self._enter(seq, entry_s)

    def _enter(self, seq: Seq, now: float) -> None:
        engine = min(self.engines, key=lambda e: e.num_unfinished())
        engine.add_request(seq, now)

    def _clock_limit(self) -> float:
        """Earliest external event: the next arrival, the stop time, the next entry or (on a
        replica receiving KV) the earliest time KV can reach it."""
        bound = self.kv_bound
        # (with a KV bound, it says whether the next arrival can matter here)
        limit = self._external_limit() if bound is None else bound(self._external_limit)
        if self.entering and self.entering[0][0] < limit:
            return self.entering[0][0]
        return limit

    def receive(
        self, seq: Seq, now: float, on_admitted: Callable[[float], None] | None = None
    ) -> None:
        """Accept a sequence whose prompt KV (and first token) arrives from elsewhere at
        ``now``; it decodes here once the least loaded virtual engine has blocks for it.
        ``on_admitted(t)`` is called once the KV has a home here: at ``now`` when the
        engine's next step is sure to admit it, else when it is admitted (the sender keeps
        its copy while the destination waits for memory: DistServe's back-pressure)."""
        engine = min(self.engines, key=lambda e: e.num_unfinished())
        self.alive[seq] = None
        self.outstanding_tokens += seq.num_prompt_tokens + seq.num_output_tokens
        engine.receive(seq, now, on_admitted)

    def release_kv(self, seq: Seq, now: float) -> None:
        """Free the KV this (prefill) replica kept for ``seq`` after handing it off."""
        for engine in self.engines:
            if seq in engine.state.held:
                engine.release_held(seq, now)
                return
        raise KeyError(f"replica {self.replica_id} holds no KV for {seq}")

    def forget(self, seq: Seq) -> None:
        """A request left the replica (finished)."""
        del self.alive[seq]
        self.outstanding_tokens -= seq.num_prompt_tokens + seq.num_output_tokens

    # ---- what the cluster layer asks (live migration) -------------------------------------
    def decoding(self) -> list[Seq]:
        """Requests decoding here, most recently admitted first (engine by engine)."""
        return [seq for engine in self.engines for seq in engine.decoding_newest_first()]

    def num_kv_tokens(self, seq: Seq) -> int | None:
        """Tokens of KV ``seq`` holds here (None: not running here)."""
        counts = (engine.num_kv_tokens(seq) for engine in self.engines)
        return next((n for n in counts if n is not None), None)

    def detach(self, seq: Seq, done: Callable[[Seq | None, float], None]) -> bool:
        """Take ``seq`` off at its engine's next iteration boundary, then ``done(seq, t)``
        (``done(None, t)`` if it finished or was preempted first); False if not running."""
        return any(engine.detach(seq, done) for engine in self.engines)

    # ---- rejection -----------------------------------------------------------------------
    def reject_reason(self, num_prompt_tokens: int, num_output_tokens: int) -> int:
        """Why this replica can never serve such a request (0 when it can)."""
        if num_prompt_tokens + num_output_tokens > self.max_model_len:
            return RejectReason.PROMPT_EXCEEDS_CONTEXT
        engine = self.engines[0]
        scheduler = engine.scheduler
        blocks = engine.state.blocks
        # A prefill-role replica only holds the prompt and its first token.
        num_out = 1 if self.role == "prefill" else num_output_tokens
        kv_tokens = scheduler.max_kv_tokens(num_prompt_tokens, num_out)
        reserve = blocks.num_watermark_blocks if scheduler.keep_watermark else 0
        usable = blocks.num_blocks - reserve
        step = min(num_prompt_tokens, scheduler.token_budget)
        if blocks.layout.peak_pages(kv_tokens, step) > usable:
            return RejectReason.EXCEEDS_KV_CAPACITY
        if not scheduler.is_chunked and num_prompt_tokens > scheduler.token_budget:
            return RejectReason.PROMPT_EXCEEDS_BATCH_TOKENS
        return RejectReason.NONE
