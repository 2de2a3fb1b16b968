"""The replica-scheduler ABC, its registry, and the batch-forming steps schedulers share.

A scheduler decides, the ``ReplicaState`` keeps the books: ``schedule(now, state)`` admits,
preempts and allocates through the state's methods and returns a ``Batch``; the engine asks
the perf model how long it takes and calls ``on_batch_done(batch, now)`` when it completes.
Schedulers never read a clock nor compute durations.

A user scheduler is a subclass in a plain file, loaded with ``kind: custom`` and
``path: my_sched.py:MyScheduler`` (its config's ``options`` dict is ``self.config.options``)::

    class MyScheduler(ReplicaScheduler):
        def schedule(self, now, state):
            self.preempt_for_decode(state)          # preempt before allocating anything
            decodes = self.decode_step(state, self.token_budget)
            prefills = []
            budget = self.continue_prefills(state, self.token_budget - len(decodes), prefills)
            self.admit_waiting(now, state, budget, prefills)
            return self.make_batch(state, prefills, decodes)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from servesim._mypyc import mypyc_attr
from servesim.core.registry import Registry
from servesim.engine.batch import Batch
from servesim.engine.schedulers.queues import RequestQueue
from servesim.engine.sequence import Seq
from servesim.engine.state import ReplicaState

#: the contract fields a subclass may declare in its class body (see ``settle_contract``)
CONTRACT_ATTRIBUTES = (
    "is_chunked",
    "keep_watermark",
    "preemption_mode",
    "supports_skip",
    "async_output_processing",
    "num_tokens_per_decode",
)


# user schedulers are plain Python subclasses of this class (also when it is compiled)
@mypyc_attr(allow_interpreted_subclasses=True)
class ReplicaScheduler(ABC):
    """Base class of replica schedulers (built-in and user-written).

    Subclasses implement ``schedule``; the helpers below (decode step with preemption,
    continuing chunked prefills, swapping in, admitting from the queue) are the shared parts.

    Attributes:
        config: the scheduler's own config (a pydantic model from ``engine.config``).
        max_num_seqs: most sequences on the GPU at once.
        token_budget: most tokens (prefill + decode) in one iteration.
        is_chunked: prompts may be split across iterations; when False a prompt longer than
            ``token_budget`` is rejected on arrival.
        admission_blocked: set by ``admit_waiting`` when the queue head could not be admitted
            for lack of sequence slots or KV blocks (both only improve when a request
            finishes, so a run of decode-only iterations may be advanced at once).
        queue: the admission order, a ``RequestQueue`` from ``make_queue`` (FCFS by
            default; ``PriorityQueue``, ``FairQueue`` or a subclass of your own).

    The engine calls ``step`` (the queue absorbs new and preempted requests around
    ``schedule``), ``notify_batch_done`` and ``notify_finish`` (the queue first, then the
    ``on_*`` hook); override the hooks, not these.
    """

    # ---- the contract, declared once per class (or set once in ``__init__``) ----------
    #: prompts may be split across iterations (the token budget is then enforced)
    is_chunked: bool = True
    #: admissions leave the block manager's watermark free (vLLM V0; V1 does not)
    keep_watermark: bool = True
    #: the preemption mode this scheduler always uses (vLLM V1: ``"recompute"``); None lets
    #: the cache config choose (``preemption_mode``, ``preemption_choice``)
    preemption_mode: str | None = None
    #: servesim's own schedulers, whose decodes are the state's ``decoding()`` list, so the
    #: engine's per-decode scan is skipped for them; set by ``builtin=True`` in the class
    #: statement and never inherited (a user subclass of a built-in is checked in full)
    is_builtin: ClassVar[bool] = False
    #: the engine may advance decode-only runs without calling ``schedule`` when ``can_skip``
    #: says so, and, when nothing is queued, swapped or mid-prefill, through finishes (the
    #: scheduler must then decode all the others). Built-ins opt in; a user scheduler is
    #: stepped one iteration at a time unless it sets this.
    supports_skip: bool = False
    #: tokens of step N are processed (stamped) inside step N+1, one host overhead later
    #: (vLLM V0's async output processing, RFC #6913); see ``VirtualEngine.output_lag``
    async_output_processing: bool = False
    #: token-budget cost of one decode entry: 1, or k + 1 under speculative decoding (the
    #: verify pass computes k + 1 positions); set by the replica, checked by the engine
    num_tokens_per_decode: int = 1

    def __init_subclass__(cls, *, builtin: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a compiled class cannot take a class keyword: it declares ``is_builtin = True``
        # in its own body instead (``vars``: the class's own, so still never inherited)
        cls.is_builtin = builtin or vars(cls).get("is_builtin") is True

    def __init__(self, config: Any, *, max_model_len: int) -> None:
        self.config = config
        self.max_model_len = max_model_len
        self.max_num_seqs: int = config.max_num_seqs
        budget = getattr(config, "max_num_batched_tokens", None)
        self.token_budget: int = budget if budget is not None else self.default_budget()
        self.admission_blocked = False
        self.queue = self.make_queue()

    def settle_contract(self) -> None:
        """Store the contract as Python resolves it in this instance's own fields.

        A plain-Python subclass may declare ``supports_skip = True`` (etc.) in its class
        body; compiled code reads the base class's fields directly and would not see that
        declaration, so the engine calls this once before it reads the contract (a no-op
        in the pure-Python build).
        """
        seen = {name: getattr(self, name) for name in CONTRACT_ATTRIBUTES}
        self.is_chunked = seen["is_chunked"]
        self.keep_watermark = seen["keep_watermark"]
        self.preemption_mode = seen["preemption_mode"]
        self.supports_skip = seen["supports_skip"]
        self.async_output_processing = seen["async_output_processing"]
        self.num_tokens_per_decode = seen["num_tokens_per_decode"]

    def make_queue(self) -> RequestQueue:
        """The admission order (``schedulers/queues.py``): FCFS unless overridden."""
        return RequestQueue()

    def default_budget(self) -> int:
        """Token budget when the config leaves it unset."""
        return 8192

    # ---- the protocol --------------------------------------------------------------------
    @abstractmethod
    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        """Form the next batch (or None when there is nothing to run)."""

    # ---- what the engine calls ----------------------------------------------------------
    def step(self, now: float, state: ReplicaState) -> object:
        """One scheduling step: the queue takes what entered, ``schedule`` decides, and the
        queue takes what the step preempted. Returns what ``schedule`` returned, unchecked
        (the engine's ``check_batch`` names a wrong type as the policy's error)."""
        # called as a plain callable: compiled code would otherwise check the declared
        # return type itself and raise a bare TypeError before check_batch can
        schedule: Callable[[float, ReplicaState], object] = self.schedule
        queue = self.queue
        if type(queue) is RequestQueue:  # FCFS absorbs nothing (RequestQueue.absorb)
            return schedule(now, state)
        queue.absorb(state.waiting)
        batch = schedule(now, state)
        queue.absorb(state.waiting)
        return batch

    def notify_batch_done(self, batch: Batch, now: float) -> None:
        """A batch ran: the queue, then ``on_batch_done``."""
        self.queue.on_batch_done(batch)
        self.on_batch_done(batch, now)

    def notify_finish(self, seq: Seq) -> None:
        """A sequence left (finished, handed off, migrated): the queue, then ``on_finish``."""
        self.queue.on_finish(seq)
        self.on_finish(seq)

    # ---- hooks a subclass may override ---------------------------------------------------
    def on_batch_done(self, batch: Batch, now: float) -> None:
        """Called after the engine has applied the batch's results (tokens, finishes)."""
        return

    def on_finish(self, seq: Seq) -> None:
        """Called when a sequence finishes (its blocks are already freed)."""
        return

    def on_decode_ticks(self, state: ReplicaState, num_ticks: int) -> None:
        """Called for decode-only iterations the engine advanced without ``schedule`` (all
        decoding sequences each emitted ``num_ticks`` tokens)."""
        return

    def can_skip(self, state: ReplicaState) -> bool:
        """True when, as long as no request arrives or finishes and KV blocks last, this
        scheduler would keep returning a decode step of every decoding sequence."""
        return not state.swapped and (not self.num_queued(state) or self.admission_blocked)

    def num_queued(self, state: ReplicaState) -> int:
        """Requests waiting for admission."""
        return self.queue.num_queued(state.waiting)

    def max_kv_tokens(self, num_prompt_tokens: int, num_output_tokens: int) -> int:
        """KV tokens a request needs at its peak (used to reject requests that never fit)."""
        return num_prompt_tokens + num_output_tokens - 1

    # ---- the queue -----------------------------------------------------------------------
    def peek_waiting(self, state: ReplicaState) -> Seq | None:
        """The next sequence to admit (the queue's head)."""
        return self.queue.peek(state.waiting)

    def pop_waiting(self, state: ReplicaState) -> Seq:
        """Remove the sequence ``peek_waiting`` returned."""
        return self.queue.pop(state.waiting)

    def pick_victim(self, state: ReplicaState) -> Seq:
        """The running sequence to preempt first: vLLM takes the most recently admitted."""
        return next(reversed(state.running))

    # ---- shared steps --------------------------------------------------------------------
    def preempt_for_decode(self, state: ReplicaState) -> bool:
        """Preempt victims until every decoding sequence's next block fits; True if any."""
        preempted = False
        blocks, members, ready = state.blocks, state.group.members, state.ready
        # (members or ready: state.num_decoding; num_free + num_evictable: num_available)
        while (members or ready) and (
            state.decode_blocks_needed() > blocks.num_free + blocks.num_evictable
        ):
            state.preempt(self.pick_victim(state))
            preempted = True
        return preempted

    def decode_step(self, state: ReplicaState, budget: int) -> list[Seq]:
        """Allocate and return the decode entries (all decoding sequences, or the first
        ``budget`` of them when the token budget is smaller)."""
        per = self.num_tokens_per_decode
        if (len(state.group.members) + len(state.ready)) * per <= budget:  # num_decoding
            state.allocate_decode_all()
            return state.decoding()
        decodes = state.decoding()[: max(budget // per, 0)]
        for seq in decodes:
            state.allocate_decode(seq)
        return decodes

    def continue_prefills(
        self, state: ReplicaState, budget: int, prefills: list[tuple[Seq, int]]
    ) -> int:
        """Give running prefills their next chunks in admission order; returns the budget left."""
        blocks = state.blocks
        for seq in state.prefilling:  # (allocating a chunk leaves the dict as it is)
            if budget <= 0:
                break
            remaining = seq.prefill_target - seq.num_computed  # seq.num_prefill_remaining
            chunk = remaining if remaining < budget else budget  # min(remaining, budget)
            need = state.chunk_blocks(seq, chunk)
            if need > blocks.num_free + blocks.num_evictable:  # blocks.num_available
                break
            state.allocate_chunk(seq, chunk, need)
            prefills.append((seq, chunk))
            budget -= chunk
        return budget

    def swap_in_waiting(self, state: ReplicaState, budget: int, decodes: list[Seq]) -> int:
        """Swap sequences back in (FCFS) while they fit; they decode in this step."""
        while (
            state.swapped
            and budget > 0
            and len(state.running) < self.max_num_seqs
            and state.can_swap_in(state.swapped[0])
        ):
            seq = state.swapped.popleft()
            state.swap_in(seq)
            state.allocate_decode(seq)
            decodes.append(seq)
            budget -= self.num_tokens_per_decode
        return budget

    def admit_waiting(
        self,
        now: float,
        state: ReplicaState,
        budget: int,
        prefills: list[tuple[Seq, int]],
    ) -> int:
        """Admit queued sequences while budget, sequence slots and KV blocks allow; returns
        the budget left. Non-chunked schedulers admit whole prompts only (the first prompt of
        a step may exceed the budget: a recompute of prompt + generated tokens must run)."""
        self.admission_blocked = False
        skipped: list[Seq] = []
        while budget > 0:
            seq = self.peek_waiting(state)
            if seq is None:
                break
            if len(state.running) >= self.max_num_seqs:
                self.admission_blocked = True
                break
            if state.adapters is not None and not state.can_pin(seq):
                # vLLM: a request whose LoRA finds no free slot waits; those behind it go on
                skipped.append(self.pop_waiting(state))
                continue
            hit_tokens, _ = state.admission_cost(seq, 0)
            remaining = seq.prefill_target - hit_tokens
            if self.is_chunked:
                chunk = min(remaining, budget)
            else:
                chunk = remaining
                if chunk > budget and prefills:
                    break
            _, need = state.admission_cost(seq, chunk)
            if not self.fits(state, seq, need):
                self.admission_blocked = True
                break
            self.pop_waiting(state)
            state.admit(seq, now)
            state.allocate_chunk(seq, chunk)
            prefills.append((seq, chunk))
            budget -= chunk
        if skipped:
            # back at the head in their order (a policy queue takes them back on its drain)
            state.waiting.extendleft(reversed(skipped))
            self.admission_blocked = True
        return budget

    def fits(self, state: ReplicaState, seq: Seq, num_blocks: int) -> bool:
        """True when admitting ``seq`` with ``num_blocks`` new blocks is allowed (and, under
        CPU-GPU hybrid execution, when the host CPU can take the KV beyond the GPU's)."""
        if not state.blocks.can_allocate(num_blocks, keep_watermark=self.keep_watermark):
            return False
        hybrid = state.hybrid
        return hybrid is None or hybrid.can_admit(
            state.blocks.num_used + num_blocks, len(state.running)
        )

    def decodes_first(
        self, now: float, state: ReplicaState, *, allow_swap: bool, admit_after_preempt: bool
    ) -> Batch | None:
        """Chunked-prefill step: decodes, then running prefills, then swapped, then new
        prompts, all under one token budget (vLLM chunked prefill, Sarathi-Serve, vLLM V1)."""
        preempted = self.preempt_for_decode(state)
        decodes = self.decode_step(state, self.token_budget)
        budget = self.token_budget - len(decodes) * self.num_tokens_per_decode
        prefills: list[tuple[Seq, int]] = []
        budget = self.continue_prefills(state, budget, prefills)
        if allow_swap and not preempted:
            budget = self.swap_in_waiting(state, budget, decodes)
        if admit_after_preempt or not preempted:
            self.admit_waiting(now, state, budget, prefills)
        else:
            self.admission_blocked = False
        return self.make_batch(state, prefills, decodes)

    @staticmethod
    def make_batch(
        state: ReplicaState, prefills: list[tuple[Seq, int]], decodes: list[Seq]
    ) -> Batch | None:
        """Wrap the step's work (and any swaps decided in it) into a ``Batch``; None when it
        computes nothing and moves no KV (``Batch.is_empty``)."""
        swap_in, swap_out = state.num_swap_in_blocks, state.num_swap_out_blocks
        if not (prefills or decodes or swap_in or swap_out):
            return None
        return Batch(prefills, decodes, swap_in, swap_out)


SCHEDULERS: Registry[type[ReplicaScheduler]] = Registry("scheduler")
