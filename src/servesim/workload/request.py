"""``Request``: one inference request as the simulator sees it (lengths, not text)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    """One request.

    Attributes:
        request_id: unique within a workload, assigned in arrival order from 0.
        arrival_s: arrival time in seconds from the start of the simulation (>= 0).
        num_prompt_tokens: prompt (input) tokens, >= 1.
        num_output_tokens: tokens to generate, >= 1 (a trace's failed request with 0 output
            tokens is either rejected or skipped-and-counted by the reader, never passed on).
        session_id: conversation id for multi-turn workloads (None: independent request).
        prefix_block_hashes: ids of the prompt's prefix blocks, ``prefix_block_size`` tokens
            each; equal ids at equal positions mean the KV of that block can be reused.
        prefix_block_size: tokens per entry of ``prefix_block_hashes`` (512 in Mooncake).
        priority: larger is more urgent (0 by default).
        slo_class: name of the SLO class (``"default"``), for per-class attainment.
        adapter_id: LoRA adapter, if any.
        user_id: tenant / user, for fairness schedulers.
        group_id: parallel-sampling group (n samples of one prompt share this id).
    """

    request_id: int
    arrival_s: float
    num_prompt_tokens: int
    num_output_tokens: int
    session_id: int | None = None
    prefix_block_hashes: tuple[int, ...] = ()
    prefix_block_size: int = 0
    priority: int = 0
    slo_class: str = "default"
    adapter_id: str | None = None
    user_id: int = 0
    group_id: int | None = None
