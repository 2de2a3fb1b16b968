"""The rules every policy's output must keep, checked by the engine on every call.

Built-in and user policies alike: a scheduler's batch (a ``Batch`` or None; within the token
budget and ``max_num_seqs``; each sequence at most once and in the state the batch claims for
it; KV blocks for every decode and every chunk, never more than the pool holds) and a router's
choice (an ``int`` index in range). A broken rule stops the run with a ``ContractError`` that
names the policy, the rule, the value, the limit and the simulated time, e.g.::

    scheduler spf.py:SPF: batch of 38,024 tokens exceeds the token budget 512 at t=12.300 s

These are real checks (``raise``), never ``assert``, so they hold under ``python -O``.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

from servesim.core.errors import ServesimError
from servesim.engine.batch import Batch

if TYPE_CHECKING:
    from servesim.engine.schedulers.base import ReplicaScheduler
    from servesim.engine.sequence import Seq
    from servesim.engine.state import ReplicaState

#: rule names, as ``ContractError.rule`` reports them
RULES = (
    "batch-type",
    "max-num-seqs",
    "token-budget",
    "duplicate-sequence",
    "decode-state",
    "prefill-state",
    "prefill-chunk",
    "decode-kv",
    "prefill-kv",
    "kv-capacity",
    "kv-accounting",
    "state-mutation",
    "router-index",
)


class ContractError(ServesimError):
    """A policy broke a rule the engine enforces (module docstring).

    Attributes:
        policy: the policy as configured (``scheduler spf.py:SPF``, ``router round-robin``).
        rule: one of ``RULES``.
        now_s: simulated time of the call.
    """

    def __init__(self, policy: str, rule: str, detail: str, now_s: float) -> None:
        self.policy = policy
        self.rule = rule
        self.detail = detail
        self.now_s = now_s
        super().__init__(f"{policy}: {detail} at t={now_s:.3f} s")


class KVCapacityError(ServesimError):
    """More KV blocks were asked of the pool than it has available (raised by the block
    manager; the engine reports it as the scheduler's ``kv-capacity`` contract error)."""

    def __init__(self, asked: int, available: int) -> None:
        self.asked = asked
        self.available = available
        super().__init__(f"asked for {asked:,} KV blocks with {available:,} available")


def scheduler_name(scheduler: ReplicaScheduler) -> str:
    """``scheduler <kind>``, or ``scheduler <path.py:Class>`` for a user plug-in."""
    config = scheduler.config
    kind = str(getattr(config, "kind", type(scheduler).__name__))
    if kind == "custom":
        return f"scheduler {getattr(config, 'path', type(scheduler).__name__)}"
    return f"scheduler {kind}"


def check_batch(
    name: str,
    scheduler: ReplicaScheduler,
    batch: object,
    state: ReplicaState,
    now: float,
    decode_blocks_granted: int,
    scan: bool = True,
) -> None:
    """Raise ``ContractError`` if ``batch`` (what ``schedule`` returned) breaks a rule.

    ``decode_blocks_granted``: blocks the state's decode allocations handed out while the
    batch was formed; a decode step needs one for every decode that starts a new block.
    ``scan``: also check each decode's membership and repeats one by one. Every other rule
    is O(1) per batch and always checked; the scan is O(batch), so the engine runs it for user
    policies and under ``check_invariants`` (tests), not for built-in schedulers, whose
    decodes are the state's own ``decoding()`` list.
    """
    if batch is None:
        return
    if type(batch) is not Batch and not isinstance(batch, Batch):
        raise ContractError(
            name, "batch-type", f"schedule returned {batch!r}, not a Batch or None", now
        )
    decodes, prefills = batch.decodes, batch.prefills
    num_seqs = len(decodes) + len(prefills)
    if num_seqs > scheduler.max_num_seqs:
        raise ContractError(
            name,
            "max-num-seqs",
            f"batch of {num_seqs:,} sequences exceeds max_num_seqs {scheduler.max_num_seqs:,}",
            now,
        )
    # a speculative decode verifies k + 1 positions, all of them against the budget
    num_tokens = len(decodes) * scheduler.num_tokens_per_decode
    for _, chunk in prefills:  # sum(n for _, n in prefills), without the generator
        num_tokens += chunk
    if scheduler.is_chunked and num_tokens > scheduler.token_budget:
        raise ContractError(
            name,
            "token-budget",
            f"batch of {num_tokens:,} tokens exceeds the token budget {scheduler.token_budget:,}",
            now,
        )
    if scan:
        _check_decodes(name, batch, state, now, decode_blocks_granted)
    elif decodes:
        _check_decode_blocks(name, decodes, state, now, decode_blocks_granted)
    if prefills:
        _check_prefills(name, batch, state, now)


def _check_decode_blocks(
    name: str, decodes: list[Seq], state: ReplicaState, now: float, granted: int
) -> None:
    """The decode-kv rule alone (a built-in's decodes are the state's own list)."""
    need = (
        state.decode_blocks_needed()
        if len(decodes) == len(state.group.members) + len(state.ready)  # state.num_decoding
        else sum(map(state.needs_block, decodes))
    )
    if granted < need:
        _decode_kv_error(name, need, granted, now)


def _check_decodes(name: str, batch: Batch, state: ReplicaState, now: float, granted: int) -> None:
    decodes = batch.decodes
    if not decodes:
        return
    members, ready = state.group.members, state.ready
    num = len(decodes)
    if num == len(members) + len(ready):
        # the common step decodes every decoding sequence once: membership (counted at C
        # speed; the group and its joiners are disjoint) and no repeat make it exactly that set
        found = sum(map(members.__contains__, decodes))
        if ready:
            found += sum(map(ready.__contains__, decodes))
        if found == num and len(set(decodes)) == num:
            need = state.decode_blocks_needed()
            if granted < need:
                _decode_kv_error(name, need, granted, now)
            return
    seen: set[int] = set()
    need = 0
    prefilling = state.prefilling
    for seq in decodes:
        if id(seq) in seen:
            raise ContractError(name, "duplicate-sequence", f"{seq} decodes twice", now)
        seen.add(id(seq))
        if (seq not in members and seq not in ready) or seq in prefilling:
            raise ContractError(name, "decode-state", f"{seq} is not a decoding sequence", now)
        need += state.needs_block(seq)
    if granted < need:
        _decode_kv_error(name, need, granted, now)


def _decode_kv_error(name: str, need: int, granted: int, now: float) -> None:
    raise ContractError(
        name,
        "decode-kv",
        f"decodes need {need:,} new KV blocks but {granted:,} were allocated "
        "(allocate through state.allocate_decode / allocate_decode_all)",
        now,
    )


def _check_prefills(name: str, batch: Batch, state: ReplicaState, now: float) -> None:
    prefills = batch.prefills
    if not prefills:
        return
    if len(prefills) > 1 and len({id(seq) for seq, _ in prefills}) != len(prefills):
        raise ContractError(name, "duplicate-sequence", "a sequence prefills twice", now)
    # (a decode is a decoding sequence, checked above, and so never also prefilling)
    prefilling = state.prefilling
    layout = state.blocks.layout
    # layout.step_pages(computed, chunk) of a layout without windows: whole blocks
    plain, block_size = layout.plain, layout.block_size
    for seq, chunk in prefills:
        if seq not in prefilling:
            raise ContractError(name, "prefill-state", f"{seq} is not prefilling", now)
        remaining = seq.prefill_target - seq.num_computed  # seq.num_prefill_remaining
        if not ((type(chunk) is int or _is_index(chunk)) and 0 < chunk <= remaining):
            raise ContractError(
                name,
                "prefill-chunk",
                f"prefill chunk {chunk!r} for {seq} is outside 1..{remaining:,}",
                now,
            )
        if plain:
            blocks_needed = -(-(seq.num_computed + chunk) // block_size)
        else:
            blocks_needed = layout.step_pages(seq.num_computed, chunk)
        if seq.num_private + len(seq.block_keys) < blocks_needed:  # seq.num_blocks
            raise ContractError(
                name,
                "prefill-kv",
                f"{seq} holds {seq.num_blocks:,} KV blocks, its chunk needs {blocks_needed:,}",
                now,
            )


def check_state(name: str, state: ReplicaState, now: float) -> None:
    """Raise ``ContractError`` if a policy changed the state's books other than through its
    methods (O(1) identities, checked after every ``schedule``): every KV block is free, used
    or cached, and every running sequence is prefilling or decoding."""
    blocks = state.blocks
    free, cached = blocks.num_free, blocks.num_evictable
    used = blocks.num_private + blocks.num_cached_in_use  # blocks.num_used
    if free < 0 or used < 0 or free + used + cached != blocks.num_blocks:
        raise ContractError(
            name,
            "kv-accounting",
            f"KV pool books broken: {free:,} free + {used:,} used + {cached:,} cached != "
            f"{blocks.num_blocks:,} blocks (allocate and free only through the state)",
            now,
        )
    running, prefilling = len(state.running), len(state.prefilling)
    decoding = len(state.group.members) + len(state.ready)  # state.num_decoding
    if running != prefilling + decoding:
        raise ContractError(
            name,
            "state-mutation",
            f"{running:,} running != {prefilling:,} prefilling + {decoding:,} decoding "
            "(move sequences only through the state's methods)",
            now,
        )


def check_route(name: str, index: object, num_choices: int, now: float) -> int:
    """The replica index a router returned, checked: an integer (not a bool) in range."""
    if not _is_index(index):
        raise ContractError(
            name, "router-index", f"route returned {index!r}, not a replica index", now
        )
    index = operator.index(index)  # type: ignore[arg-type]
    if not 0 <= index < num_choices:
        raise ContractError(
            name,
            "router-index",
            f"route returned {index}, outside 0..{num_choices - 1}",
            now,
        )
    return index


def _is_index(value: object) -> bool:
    """An integer (``int`` or a NumPy integer), not a bool."""
    return not isinstance(value, bool) and hasattr(type(value), "__index__")
