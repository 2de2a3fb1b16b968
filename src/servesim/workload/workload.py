"""``Workload``: a lazy, re-iterable stream of ``Request`` objects in arrival order.

A workload is generated in numpy chunks and turned into ``Request`` objects one at a time as
the consumer iterates, so a million-request workload never holds a million Python objects at
once. Iterating twice gives the same requests (each iteration restarts the random streams from
the seed). Request ids are 0..n-1 in arrival order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from servesim.core.domains import NUM_REQUESTS
from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload.arrivals import DEFAULT_CHUNK, ArrivalProcess
from servesim.workload.lengths import LengthSampler
from servesim.workload.request import Request


@dataclass(frozen=True, slots=True)
class GroupOptions:
    """Parallel sampling (``n`` > 1 in the OpenAI API): samples share one prompt.

    Attributes:
        group_size: samples per group (all arrive together, same prompt, same prefix hashes,
            same ``group_id``; output lengths are drawn independently per sample).
        group_fraction: fraction of prompts that are sampled as a group (others are single).
    """

    group_size: int = 1
    group_fraction: float = 1.0


@dataclass(frozen=True, slots=True)
class PrefixOptions:
    """Prefix-block ids for synthetic requests (so the engine's prefix cache can work).

    Attributes:
        block_size: tokens per prefix block; 0 gives no hashes (unless sessions/groups need them,
            then 16, vLLM's default KV block size).
        shared_prefix_tokens: leading tokens common to every request (a system prompt); the
            full blocks inside it get the same ids in every request.
    """

    block_size: int = 0
    shared_prefix_tokens: int = 0


class Workload:
    """Base class: an iterable of ``Request`` in arrival order with cheap metadata.

    Attributes:
        name: a short label (preset name, trace file name, or "synthetic").
        num_skipped_rows: trace rows skipped as malformed (``skip_bad_rows``); 0 if synthetic.
        num_capped_requests: requests whose lengths were capped to a context limit.
    """

    name: str = "workload"

    def __iter__(self) -> Iterator[Request]:
        raise NotImplementedError

    @property
    def num_skipped_rows(self) -> int:
        return 0

    @property
    def num_capped_requests(self) -> int:
        return 0

    @property
    def skipped_by_problem(self) -> dict[str, int]:
        """{problem: rows skipped} (traces read with ``skip_bad_rows``); empty otherwise."""
        return {}

    def head(self, num: int) -> list[Request]:
        """The first ``num`` requests as a list (convenience for tests and examples)."""
        out: list[Request] = []
        for request in self:
            if len(out) >= num:
                break
            out.append(request)
        return out


@dataclass
class BlockIds:
    """Hands out fresh, deterministic prefix-block ids (a per-workload counter)."""

    next_id: int = 0
    shared: tuple[int, ...] = field(default_factory=tuple)

    def fresh(self, num: int) -> tuple[int, ...]:
        start = self.next_id
        self.next_id += num
        return tuple(range(start, start + num))


def prompt_block_ids(
    num_prompt_tokens: int, block_size: int, ids: BlockIds, shared_prefix_tokens: int
) -> tuple[int, ...]:
    """Ids for a fresh prompt: the shared prefix's full blocks, then new ids to the end.

    As in Mooncake, ``ceil(prompt / block_size)`` ids; the last, partial block gets its own id.
    """
    num_blocks = -(-num_prompt_tokens // block_size)
    num_shared = min(shared_prefix_tokens, num_prompt_tokens) // block_size
    num_shared = min(num_shared, len(ids.shared))
    return ids.shared[:num_shared] + ids.fresh(num_blocks - num_shared)


def check_run_length(
    arrivals: ArrivalProcess, num_requests: int | None, duration_s: float | None
) -> None:
    """Refuse a duration whose expected arrivals a run could not finish (no request cap).

    ``--duration-s 1e8`` at 2.5 req/s is 2.5e8 requests: days of simulation, refused before
    any work with the estimate, rather than a run that never ends.
    """
    if num_requests is not None or duration_s is None:
        return
    rate = arrivals.mean_rate_per_s
    expected = rate * duration_s
    limit = NUM_REQUESTS.high or math.inf
    if expected > limit:
        raise ConfigError(
            "duration_s",
            duration_s,
            f"at {rate:g} req/s that is ~{expected:.3g} requests, over the {limit:.0e} a run "
            "can simulate (give num_requests or a shorter duration)",
        )


class SyntheticWorkload(Workload):
    """Arrival process x length sampler, optionally with parallel-sampling groups.

    Stops after ``num_requests`` requests or at ``duration_s`` (whichever is given; both: the
    earlier). Random streams used: ``workload.arrivals``, ``workload.lengths``,
    ``workload.groups``.
    """

    def __init__(
        self,
        arrivals: ArrivalProcess,
        lengths: LengthSampler,
        streams: RandomStreams,
        num_requests: int | None = None,
        duration_s: float | None = None,
        groups: GroupOptions | None = None,
        prefix: PrefixOptions | None = None,
        name: str = "synthetic",
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        if num_requests is None and duration_s is None:
            raise ConfigError("num_requests", None, "give num_requests or duration_s")
        if num_requests is not None and num_requests < 0:
            raise ConfigError("num_requests", num_requests, "must be >= 0")
        check_run_length(arrivals, num_requests, duration_s)
        self.arrivals, self.lengths, self.streams = arrivals, lengths, streams
        self.num_requests, self.duration_s = num_requests, duration_s
        self.groups = groups or GroupOptions()
        self.prefix = prefix or PrefixOptions()
        self.name, self.chunk_size = name, chunk_size

    def _block_size(self) -> int:
        if self.prefix.block_size:
            return self.prefix.block_size
        # Groups and a shared system prompt only make sense with block ids: vLLM's 16.
        return 16 if self.groups.group_size > 1 or self.prefix.shared_prefix_tokens else 0

    def __iter__(self) -> Iterator[Request]:
        arrival_rng = self.streams.generator("workload.arrivals")
        length_rng = self.streams.generator("workload.lengths")
        group_rng = self.streams.generator("workload.groups")
        block_size = self._block_size()
        ids = BlockIds()
        if block_size:
            ids.shared = ids.fresh(self.prefix.shared_prefix_tokens // block_size)
        limit = self.num_requests if self.num_requests is not None else np.iinfo(np.int64).max
        end_s = self.duration_s if self.duration_s is not None else np.inf
        counters = [0, 0]  # next request id, next group id
        for times in self.arrivals.stream(arrival_rng, self.chunk_size):
            prompts, outputs = self.lengths.sample(length_rng, times.size)
            sizes = self._group_sizes(group_rng, times.size)
            num_extra = int(sizes.sum() - sizes.size)
            # Each extra sample of a group draws its own output length.
            extra = self.lengths.sample(length_rng, num_extra)[1] if num_extra else outputs
            chunk = zip(
                times.tolist(), prompts.tolist(), outputs.tolist(), sizes.tolist(), strict=True
            )
            extra_outputs = iter(extra.tolist())
            for t, prompt, output, size in chunk:
                if t > end_s:
                    return
                hashes = ()
                if block_size:
                    shared = self.prefix.shared_prefix_tokens
                    hashes = prompt_block_ids(prompt, block_size, ids, shared)
                group_id = None
                if size > 1:
                    group_id, counters[1] = counters[1], counters[1] + 1
                for k in range(size):
                    if counters[0] >= limit:
                        return
                    yield Request(
                        request_id=counters[0],
                        arrival_s=t,
                        num_prompt_tokens=prompt,
                        num_output_tokens=output if k == 0 else next(extra_outputs),
                        prefix_block_hashes=hashes,
                        prefix_block_size=block_size,
                        group_id=group_id,
                    )
                    counters[0] += 1

    def _group_sizes(self, rng: np.random.Generator, num: int) -> np.ndarray:
        if self.groups.group_size <= 1:
            return np.ones(num, dtype=np.int64)
        is_group = rng.random(num) < self.groups.group_fraction
        return np.where(is_group, self.groups.group_size, 1)
