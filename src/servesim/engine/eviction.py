"""Prefix-cache eviction policies: which unreferenced cached KV block to drop.

The block manager (``servesim.engine.blocks``) keeps the counts; a policy only orders the
evictable keys. ``lru`` is the default (vLLM's prefix-cache evictor), ``lfu`` is least
frequently used with dynamic aging, and a user's class is named ``path/to/file.py:ClassName``
(``cache.eviction``).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Protocol

from servesim.core.errors import ConfigError
from servesim.core.registry import Registry


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
    """

    __slots__ = ("_age", "_counter", "_entry", "_heap", "_uses")

    def __init__(self) -> None:
        self._uses: dict[int, int] = {}  # key -> requests that referenced it, while cached
        self._heap: list[tuple[int, int, int, int]] = []  # (priority, -depth, order, key)
        self._entry: dict[int, int] = {}  # evictable key -> order of its live heap entry
        self._age = 0
        self._counter = 0

    def add(self, key: int, depth: int) -> None:
        """Queue ``key`` at ``age + uses`` (its creator counts as the first use)."""
        uses = self._uses.setdefault(key, 1)
        self._counter += 1
        self._entry[key] = self._counter
        heapq.heappush(self._heap, (self._age + uses, -depth, self._counter, key))

    def reuse(self, key: int, was_evictable: bool) -> None:
        """One more use; an evictable block leaves the queue (its entry goes stale)."""
        self._uses[key] = self._uses.get(key, 1) + 1
        if was_evictable:
            del self._entry[key]

    def evict(self) -> int:
        """The live entry of lowest priority; the age rises to it."""
        heap = self._heap
        while True:
            priority, _, order, key = heapq.heappop(heap)
            if self._entry.get(key) == order:
                del self._entry[key]
                del self._uses[key]
                self._age = priority
                return key


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
