"""Multi-turn sessions: conversations whose turns share a growing prefix.

Turn k's prompt is the whole conversation so far (every earlier prompt and output) plus a new
user input, as chat front-ends resend the history. The conversation's token stream is cut into
``block_size``-token blocks; a full block keeps one id for the rest of the session, so turn
k+1 repeats the ids of turn k's full prompt blocks and the engine's prefix cache (vLLM's
automatic prefix caching, Mooncake's block hashes) can reuse their KV. A partial last block
gets a fresh id, as its content changes when the block fills up.

Arrivals are open-loop: session starts come from the arrival process and turn k+1 arrives an
exponential think time after turn k's *arrival* (the simulator does not know the response
time when it generates the workload). Sessions interleave; requests come out in arrival order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload.arrivals import ArrivalProcess
from servesim.workload.lengths import LengthDistribution, LengthSampler
from servesim.workload.request import Request
from servesim.workload.workload import BlockIds, Workload, check_run_length

_SESSION_CHUNK = 1024
# A session whose first turn does not fit the context has no requests; this many in a row
# means the lengths can never fit (rather than looping forever).
_MAX_EMPTY_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Shape of the conversations.

    Attributes:
        mean_turns: mean turns per session; geometric (memoryless user leaving) unless
            ``fixed_turns``.
        fixed_turns: every session has ``round(mean_turns)`` turns.
        mean_think_time_s: mean exponential gap between consecutive turns' arrivals.
        block_size: tokens per prefix block.
        max_context_tokens: a session ends before a turn whose prompt + output would exceed
            this (the model's context window).
        system_prompt_tokens: a system prompt opening every session (its full blocks have
            the same ids in all sessions, as a shared system prompt is cached once).
        followup: distribution of the new user input of turns 2, 3, ... (None: the same
            sampler as the first turn's prompt).
    """

    mean_turns: float = 4.0
    fixed_turns: bool = False
    mean_think_time_s: float = 10.0
    block_size: int = 16
    max_context_tokens: int = 32768
    system_prompt_tokens: int = 0
    followup: LengthDistribution | None = None


@dataclass(slots=True)
class _Turn:
    prompt: int
    output: int
    hashes: tuple[int, ...]


def session_turns(
    new_inputs: np.ndarray,
    outputs: np.ndarray,
    options: SessionOptions,
    ids: BlockIds,
) -> list[_Turn]:
    """The turns of one session from each turn's new input and output lengths."""
    bs = options.block_size
    full_ids = list(ids.shared)
    history = options.system_prompt_tokens
    turns: list[_Turn] = []
    for new_input, output in zip(new_inputs.tolist(), outputs.tolist(), strict=True):
        prompt = history + new_input
        if prompt + output > options.max_context_tokens:
            break
        num_full = prompt // bs
        if num_full > len(full_ids):
            full_ids.extend(ids.fresh(num_full - len(full_ids)))
        partial = ids.fresh(1) if prompt % bs else ()
        turns.append(_Turn(prompt, output, tuple(full_ids[:num_full]) + partial))
        history = prompt + output
    return turns


class SessionWorkload(Workload):
    """Sessions of turns, interleaved in arrival order (random streams ``workload.*``)."""

    def __init__(
        self,
        arrivals: ArrivalProcess,
        lengths: LengthSampler,
        streams: RandomStreams,
        options: SessionOptions,
        num_requests: int | None = None,
        duration_s: float | None = None,
        name: str = "sessions",
    ) -> None:
        if num_requests is None and duration_s is None:
            raise ConfigError("num_requests", None, "give num_requests or duration_s")
        check_run_length(arrivals, num_requests, duration_s)
        if options.mean_turns < 1:
            raise ConfigError("mean_turns", options.mean_turns, "must be >= 1")
        if options.block_size < 1:
            raise ConfigError("block_size", options.block_size, "must be >= 1")
        if options.system_prompt_tokens >= options.max_context_tokens:
            raise ConfigError(
                "system_prompt_tokens",
                options.system_prompt_tokens,
                f"must be < max_context_tokens={options.max_context_tokens}",
            )
        self.arrivals, self.lengths, self.streams = arrivals, lengths, streams
        self.options = options
        self.num_requests, self.duration_s, self.name = num_requests, duration_s, name

    def _num_turns(self, rng: np.random.Generator, num: int) -> np.ndarray:
        if self.options.fixed_turns:
            return np.full(num, max(1, round(self.options.mean_turns)), dtype=np.int64)
        return rng.geometric(1.0 / self.options.mean_turns, num)

    def _sessions(self) -> Iterator[tuple[float, list[tuple[float, _Turn]]]]:
        """(start time, [(arrival, turn), ...]) per session, in start order."""
        arrival_rng = self.streams.generator("workload.arrivals")
        length_rng = self.streams.generator("workload.lengths")
        session_rng = self.streams.generator("workload.sessions")
        ids = BlockIds()
        ids.shared = ids.fresh(self.options.system_prompt_tokens // self.options.block_size)
        for starts in self.arrivals.stream(arrival_rng, _SESSION_CHUNK):
            counts = self._num_turns(session_rng, starts.size)
            total = int(counts.sum())
            new_inputs, outputs = self.lengths.sample(length_rng, total)
            bounds = np.concatenate(([0], np.cumsum(counts)))
            if self.options.followup is not None:
                is_followup = np.ones(total, dtype=bool)
                is_followup[bounds[:-1]] = False  # each session's first turn
                drawn = self.options.followup.sample(length_rng, total)
                new_inputs = np.where(is_followup, drawn, new_inputs)
            gaps = session_rng.exponential(self.options.mean_think_time_s, total)
            for i in range(starts.size):
                lo, hi = bounds[i], bounds[i + 1]
                turns = session_turns(new_inputs[lo:hi], outputs[lo:hi], self.options, ids)
                # Turn 1 arrives at the session start; later turns after think gaps.
                offsets = np.concatenate(([0.0], np.cumsum(gaps[lo : hi - 1])))
                times = (float(starts[i]) + offsets).tolist()
                yield float(starts[i]), list(zip(times, turns, strict=False))

    def __iter__(self) -> Iterator[Request]:
        limit = self.num_requests if self.num_requests is not None else np.iinfo(np.int64).max
        end_s = self.duration_s if self.duration_s is not None else np.inf
        heap: list[tuple[float, int, int, _Turn]] = []
        next_id = 0
        num_empty = 0
        for session_id, (start, turns) in enumerate(self._sessions()):
            num_empty = 0 if turns else num_empty + 1
            if num_empty > _MAX_EMPTY_SESSIONS:
                raise ConfigError(
                    "max_context_tokens",
                    self.options.max_context_tokens,
                    f"{_MAX_EMPTY_SESSIONS} sessions in a row had no first turn that fits",
                )
            # Everything due before this session starts can be emitted now.
            while heap and heap[0][0] <= start:
                t, sid, _k, turn = heapq.heappop(heap)
                if next_id >= limit or t > end_s:
                    return
                yield self._request(next_id, t, sid, turn)
                next_id += 1
            if start > end_s:
                break
            for k, (t, turn) in enumerate(turns):
                heapq.heappush(heap, (t, session_id, k, turn))
        while heap:  # a finite arrival process ran out: drain
            t, sid, _k, turn = heapq.heappop(heap)
            if next_id >= limit or t > end_s:
                return
            yield self._request(next_id, t, sid, turn)
            next_id += 1

    def _request(self, request_id: int, t: float, session_id: int, turn: _Turn) -> Request:
        return Request(
            request_id=request_id,
            arrival_s=t,
            num_prompt_tokens=turn.prompt,
            num_output_tokens=turn.output,
            session_id=session_id,
            prefix_block_hashes=turn.hashes,
            prefix_block_size=self.options.block_size,
        )
