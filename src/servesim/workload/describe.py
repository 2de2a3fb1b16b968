"""``describe(workload)``: summary statistics of a workload in one streaming pass."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from servesim.workload.workload import Workload


@dataclass(frozen=True, slots=True)
class LengthStats:
    """Percentiles of one length column (tokens)."""

    mean: float
    p50: float
    p90: float
    p99: float
    max: int


@dataclass(frozen=True, slots=True)
class WorkloadStats:
    """What a workload looks like.

    Attributes:
        name: the workload's name.
        num_requests: requests produced.
        duration_s: last arrival minus first arrival.
        rate_per_s: (n - 1) / duration (the mean rate between first and last arrival).
        interarrival_cv: coefficient of variation of the gaps (1 for Poisson).
        prompt: prompt-token statistics.
        output: output-token statistics.
        num_sessions: distinct session ids (0 when none).
        num_groups: distinct parallel-sampling groups (0 when none).
        prefix_reuse_ratio: fraction of prefix blocks already seen in an earlier request at the
            same prompt prefix (an infinite prefix cache's hit ratio, counting each request's
            leading run of seen blocks); None when the workload has no block ids.
        num_skipped_rows: trace rows skipped as malformed.
        num_capped_requests: requests capped to a context limit.
        skipped_by_problem: {problem: rows skipped} for traces read with ``skip_bad_rows``.
    """

    name: str
    num_requests: int
    duration_s: float
    rate_per_s: float
    interarrival_cv: float
    prompt: LengthStats
    output: LengthStats
    num_sessions: int
    num_groups: int
    prefix_reuse_ratio: float | None
    num_skipped_rows: int
    num_capped_requests: int
    skipped_by_problem: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def _length_stats(values: np.ndarray) -> LengthStats:
    if values.size == 0:
        return LengthStats(0.0, 0.0, 0.0, 0.0, 0)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return LengthStats(float(values.mean()), float(p50), float(p90), float(p99), int(values.max()))


def _leading_hits(hashes: Sequence[int], seen_blocks: set[int]) -> int:
    """Blocks of ``hashes`` a prefix cache holding ``seen_blocks`` would hit; then remember them.

    A prefix cache matches leading blocks only: the count stops at the first unseen block.
    """
    run = 0
    while run < len(hashes) and hashes[run] in seen_blocks:
        run += 1
    seen_blocks.update(hashes)
    return run


def describe(workload: Workload, max_requests: int | None = None) -> WorkloadStats:
    """Statistics of ``workload`` (reads it once, holding only numeric columns).

    Args:
        workload: any ``Workload``.
        max_requests: look at only the first this many requests.
    """
    times, prompts, outputs = array("d"), array("q"), array("q")
    sessions: set[int] = set()
    groups: set[int] = set()
    seen_blocks: set[int] = set()
    num_blocks = num_hits = 0
    for request in workload:
        if max_requests is not None and len(prompts) >= max_requests:
            break
        times.append(request.arrival_s)
        prompts.append(request.num_prompt_tokens)
        outputs.append(request.num_output_tokens)
        if request.session_id is not None:
            sessions.add(request.session_id)
        if request.group_id is not None:
            groups.add(request.group_id)
        hashes = request.prefix_block_hashes
        if hashes:
            num_blocks += len(hashes)
            num_hits += _leading_hits(hashes, seen_blocks)
    t = np.frombuffer(times, dtype=np.float64) if times else np.empty(0)
    gaps = np.diff(t)
    duration = float(t[-1] - t[0]) if t.size else 0.0
    rate = (t.size - 1) / duration if duration > 0 else 0.0
    cv = float(gaps.std() / gaps.mean()) if gaps.size and gaps.mean() > 0 else 0.0
    return WorkloadStats(
        name=workload.name,
        num_requests=int(t.size),
        duration_s=duration,
        rate_per_s=rate,
        interarrival_cv=cv,
        prompt=_length_stats(np.frombuffer(prompts, dtype=np.int64) if prompts else np.empty(0)),
        output=_length_stats(np.frombuffer(outputs, dtype=np.int64) if outputs else np.empty(0)),
        num_sessions=len(sessions),
        num_groups=len(groups),
        prefix_reuse_ratio=(num_hits / num_blocks) if num_blocks else None,
        num_skipped_rows=workload.num_skipped_rows,
        num_capped_requests=workload.num_capped_requests,
        skipped_by_problem=workload.skipped_by_problem,
    )
