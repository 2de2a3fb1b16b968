"""Prefix-cache eviction policies: which unreferenced cached KV block to drop.

The block manager (``servesim.engine.blocks``) keeps the counts; a policy only orders the
evictable keys. ``lru`` is the default (vLLM's prefix-cache evictor), ``lfu`` is least
frequently used with dynamic aging, and a user's class is named ``path/to/file.py:ClassName``
(``cache.eviction``).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from operator import itemgetter
from typing import Protocol

from servesim.core.errors import ConfigError
from servesim.core.registry import Registry

_DEPTH = itemgetter(0)  # sort key of an LFU entry (depth, key)


class EvictionPolicy(Protocol):
    """Orders the cached prefix blocks that no sequence references (the evictable ones).

    The block manager calls ``add`` when a cached block loses its last reference, ``reuse``
    when a request references a cached block (``was_evictable``: it was unreferenced, so it
    leaves the evictable set), and ``evict`` when it needs a block: the policy removes one
    evictable key from its books and returns it (the manager checks it is evictable).
    Built with no arguments, one instance per block manager.
    """

    def add(self, key: int, depth: int) -> None:
        """``key`` became evictable; ``depth``: its block's position in the prompt (0: first)."""
        ...

    def reuse(self, key: int, was_evictable: bool) -> None:
        """A request referenced cached block ``key`` (a prefix hit)."""
        ...

    def evict(self) -> int:
        """Remove and return the evictable key to drop."""
        ...


EVICTION_POLICIES: Registry[type[EvictionPolicy]] = Registry("eviction policy")


@EVICTION_POLICIES.register("lru")
class LRUEviction:
    """Least recently used first (vLLM's evictor): the block unreferenced longest ago goes.

    A prompt's blocks are released tail first (``deref``), so among blocks freed together the
    deepest goes first and the shared head of a prefix stays.
    """

    __slots__ = ("_order",)

    def __init__(self) -> None:
        self._order: OrderedDict[int, None] = OrderedDict()

    def add(self, key: int, depth: int) -> None:
        """Newest at the end."""
        self._order[key] = None

    def reuse(self, key: int, was_evictable: bool) -> None:
        """Referenced again: no longer a candidate."""
        if was_evictable:
            del self._order[key]

    def evict(self) -> int:
        """The oldest."""
        return self._order.popitem(last=False)[0]


@EVICTION_POLICIES.register("lfu")
class LFUEviction:
    """Least frequently used with dynamic aging (LFU-DA, Arlitt et al., 2000).

    A block's priority is ``age + uses`` at the time it became evictable, where ``uses``
    counts the requests that referenced it while cached and ``age`` is the priority of the
    last block evicted. Blocks shared by many requests (a system prompt) outlive one-off
    prompt tails even when those are newer; aging lets once-hot blocks that stopped being
    used go eventually (plain LFU would keep them forever). Ties: the deeper block first
    (a prefix's tail before its head), then the one evictable longest.

    One unsorted list per priority level, sorted once when it becomes the lowest level, not
    a heap entry per block: a new block's priority is at least ``age + 1`` and ``age`` is the
    level being drained, so a level never grows once eviction from it has begun. ``add`` is
    an append, ``evict`` a list pop; a heap orders only the (few) levels. A key that left
    the evictable set (``reuse``) stays in its list as a stale entry, recognised by identity
    and skipped. The order is exactly that of a heap of ``(priority, -depth, insertion
    order)`` (``tests/engine/test_eviction.py`` checks it against that heap).
    """

    __slots__ = ("_age", "_draining", "_entry", "_levels", "_priorities", "_uses")

    def __init__(self) -> None:
        self._uses: dict[int, int] = {}  # key -> requests that referenced it, while cached
        self._entry: dict[int, tuple[int, int]] = {}  # evictable key -> its live entry
        # priority -> (depth, key) entries in insertion order (stale ones included)
        self._levels: dict[int, list[tuple[int, int]]] = {}
        self._priorities: list[int] = []  # heap of the keys of ``_levels``
        self._draining: list[tuple[int, int]] = []  # the lowest level, sorted: next at the end
        self._age = 0

    def add(self, key: int, depth: int) -> None:
        """Queue ``key`` at ``age + uses`` (its creator counts as the first use)."""
        priority = self._age + self._uses.setdefault(key, 1)
        entry = self._entry[key] = (depth, key)
        level = self._levels.get(priority)
        if level is None:
            level = self._levels[priority] = []
            heapq.heappush(self._priorities, priority)
        level.append(entry)

    def reuse(self, key: int, was_evictable: bool) -> None:
        """One more use; an evictable block leaves the queue (its entry goes stale)."""
        self._uses[key] = self._uses.get(key, 1) + 1
        if was_evictable:
            del self._entry[key]

    def evict(self) -> int:
        """The live entry of lowest priority, deepest, oldest; the age rises to it."""
        draining = self._draining
        live = self._entry
        while True:
            while draining:
                entry = draining.pop()
                key = entry[1]
                if live.get(key) is entry:
                    del live[key]
                    del self._uses[key]
                    return key
            priority = heapq.heappop(self._priorities)
            draining = self._draining = self._levels.pop(priority)
            # oldest last among equal depths (a stable sort of the reversed list), so that
            # pop() yields the deepest block, then the one queued first
            draining.reverse()
            draining.sort(key=_DEPTH)
            self._age = priority


def make_eviction(name: str) -> EvictionPolicy:
    """The eviction policy ``name`` (a registry name or ``path/to/file.py:ClassName``)."""
    cls = EVICTION_POLICIES.get(name)
    try:
        policy = cls()
    except TypeError as exc:
        raise ConfigError(
            "cache.eviction", name, f"cannot be built with no arguments: {exc}"
        ) from None
    for hook in ("add", "reuse", "evict"):
        if not callable(getattr(policy, hook, None)):
            raise ConfigError("cache.eviction", name, f"has no {hook} method (EvictionPolicy)")
    return policy
