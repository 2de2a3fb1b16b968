"""Shared-prefix prompts at a constant rate: inference-perf's ``shared_prefix`` data generator.

inference-perf (kubernetes-sigs/inference-perf, ``datagen/shared_prefix_datagen.py``) builds
``num_groups x prompts_per_group`` fixed prompts, group by group: each group draws one system
prompt of ``system_prompt_len`` random tokens, each prompt of the group appends its own question
of ``question_len`` tokens. Request ``k`` sends prompt ``k % num_prompts``, so the ten prompts of
a group share their system prompt and every prompt repeats once per cycle: vLLM's prefix cache
hits both. With its ``constant`` load type requests arrive every ``1 / rate`` seconds.

Here a prompt is its prefix-block ids (``Request.prefix_block_hashes``): the full blocks inside
the system prompt carry the group's ids, every later block (the one straddling the boundary, the
question's, the partial last one) ids of that prompt alone, the same each time it is re-sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload.arrivals import ArrivalProcess
from servesim.workload.request import Request
from servesim.workload.workload import BlockIds, Workload, check_run_length

# vLLM's default KV block size: the prefix cache matches in blocks of this many tokens.
DEFAULT_BLOCK_SIZE = 16


@dataclass(frozen=True, slots=True)
class SharedPrefixOptions:
    """The generator's settings (inference-perf's ``shared_prefix`` config keys).

    Attributes:
        num_groups: groups of prompts, each with its own system prompt.
        prompts_per_group: prompts (questions) per group.
        system_prompt_tokens: tokens of each group's system prompt.
        question_tokens: tokens of each prompt's question.
        output_tokens: tokens generated per request (exact: ``ignore_eos``).
        block_size: tokens per prefix block id.
    """

    num_groups: int
    prompts_per_group: int
    system_prompt_tokens: int
    question_tokens: int
    output_tokens: int
    block_size: int = DEFAULT_BLOCK_SIZE

    def __post_init__(self) -> None:
        for name in ("num_groups", "prompts_per_group", "output_tokens", "block_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1")
        if self.system_prompt_tokens < 0 or self.question_tokens < 0:
            raise ConfigError("question_tokens", self.question_tokens, "lengths must be >= 0")
        if self.num_prompt_tokens < 1:
            raise ConfigError("question_tokens", self.question_tokens, "empty prompt")

    @property
    def num_prompts(self) -> int:
        """Distinct prompts the requests cycle through."""
        return self.num_groups * self.prompts_per_group

    @property
    def num_prompt_tokens(self) -> int:
        """Tokens of every prompt: system prompt + question."""
        return self.system_prompt_tokens + self.question_tokens


def prompt_block_ids(options: SharedPrefixOptions) -> list[tuple[int, ...]]:
    """The prefix-block ids of every prompt, in inference-perf's order (group-major)."""
    ids = BlockIds()
    bs = options.block_size
    num_blocks = -(-options.num_prompt_tokens // bs)
    num_shared = options.system_prompt_tokens // bs
    prompts = []
    for _ in range(options.num_groups):
        system = ids.fresh(num_shared)
        prompts += [
            system + ids.fresh(num_blocks - num_shared) for _ in range(options.prompts_per_group)
        ]
    return prompts


class SharedPrefixWorkload(Workload):
    """Requests every ``1 / rate_per_s`` seconds for ``duration_s``, cycling through the prompts.

    ``round(rate_per_s x duration_s)`` requests, the first at t = 0 (inference-perf's
    ``constant`` load: 600 s at 5 req/s sent 3000).
    """

    name = "shared_prefix"

    def __init__(self, options: SharedPrefixOptions, rate_per_s: float, duration_s: float):
        if rate_per_s <= 0:
            raise ConfigError("rate_per_s", rate_per_s, "must be > 0")
        if duration_s <= 0:
            raise ConfigError("duration_s", duration_s, "must be > 0")
        self.options = options
        self.rate_per_s = rate_per_s
        self.num_requests = round(rate_per_s * duration_s)
        self._prompts = prompt_block_ids(options)

    def __iter__(self) -> Iterator[Request]:
        opts = self.options
        for k in range(self.num_requests):
            yield Request(
                request_id=k,
                arrival_s=k / self.rate_per_s,
                num_prompt_tokens=opts.num_prompt_tokens,
                num_output_tokens=opts.output_tokens,
                prefix_block_hashes=self._prompts[k % len(self._prompts)],
                prefix_block_size=opts.block_size,
            )


class SharedPrefixStream(Workload):
    """The same prompts as ``SharedPrefixWorkload`` (request ``k`` sends prompt
    ``k % num_prompts``) at any arrival process (``workload.arrivals`` stream), stopping after
    ``num_requests`` or at ``duration_s``: the ``shared_prefix`` workload of a config."""

    name = "shared-prefix"

    def __init__(
        self,
        options: SharedPrefixOptions,
        arrivals: ArrivalProcess,
        streams: RandomStreams,
        num_requests: int | None = None,
        duration_s: float | None = None,
    ) -> None:
        if num_requests is None and duration_s is None:
            raise ConfigError("num_requests", None, "give num_requests or duration_s")
        check_run_length(arrivals, num_requests, duration_s)
        self.options, self.arrivals, self.streams = options, arrivals, streams
        self.num_requests, self.duration_s = num_requests, duration_s
        self._prompts = prompt_block_ids(options)

    def __iter__(self) -> Iterator[Request]:
        opts = self.options
        limit = self.num_requests if self.num_requests is not None else np.iinfo(np.int64).max
        end_s = self.duration_s if self.duration_s is not None else np.inf
        k = 0
        for times in self.arrivals.stream(self.streams.generator("workload.arrivals")):
            for t in times.tolist():
                if k >= limit or t > end_s:
                    return
                yield Request(
                    request_id=k,
                    arrival_s=t,
                    num_prompt_tokens=opts.num_prompt_tokens,
                    num_output_tokens=opts.output_tokens,
                    prefix_block_hashes=self._prompts[k % len(self._prompts)],
                    prefix_block_size=opts.block_size,
                )
                k += 1
