"""The measured rank's load in aiconfigurator's MoE tables, recomputed from its collector.

aiconfigurator's ``collect_moe.py`` routes tokens with ``balanced_logits`` or
``power_law_logits_v3`` (module docstring of ``fitting.moe``); ``collector_load`` reproduces
the measured rank's token-expert pairs, distinct experts, exact padded rows per candidate tile
and busiest expert from the same statistics (seeded draws, averaged as the collector averages).
"""

from __future__ import annotations

from functools import cache

import numpy as np

#: Power-law draws averaged per row (the collector averages its own over 5 replays).
NUM_DRAWS = 8
#: Tokens whose expert sets are built per power-law draw (evenly spaced; loads scale by T/n).
MAX_SAMPLED_TOKENS = 512
#: Candidate M tiles of the grouped GEMMs; the fit picks one per format and stack.
TILES = (16, 32, 64, 128)


def _fix_sum(counts: np.ndarray, target: int) -> np.ndarray:
    """The collector's rounding repair: +1 to the largest experts, -1 from the smallest."""
    delta = int(target - counts.sum())
    if delta == 0:
        return counts
    order = np.argsort(-counts, kind="stable")
    out = counts.copy()
    size = out.size
    if delta > 0:
        out += delta // size
        out[order[: delta % size]] += 1
        return out
    for i in range(-delta):
        index = order[-(i % size) - 1]
        out[index if out[index] > 0 else int(np.argmax(out))] -= 1
    return out


def _skewed_local_counts(counts: np.ndarray, num_tokens: int, topk: int, local: int) -> np.ndarray:
    """Pairs per local expert (experts ``[0, local)``) of one power-law draw after top-k.

    The collector lays experts out in descending count order and reshapes to (topk, T): an
    expert with more than T pairs appears twice in some tokens' rows. ``torch.topk`` over the
    resulting logits keeps each expert once per token (so an expert holds at most T pairs) and
    fills the missing slots with the lowest-index experts the token lacks (equal zero logits:
    the radix select takes ties in index order). Those lowest indices are rank 0's experts:
    the measured rank gains the surplus.
    """
    t = num_tokens
    order = np.argsort(-counts, kind="stable")
    ends = np.cumsum(counts[order])
    n = min(t, MAX_SAMPLED_TOKENS)
    tokens = (np.arange(n) * t) // n
    experts = order[np.searchsorted(ends, tokens[:, None] + t * np.arange(topk), side="right")]
    experts.sort(axis=1)
    num_dup = (experts[:, 1:] == experts[:, :-1]).sum(axis=1)
    out = np.minimum(counts[:local], t).astype(float)
    rows = np.nonzero(num_dup)[0]
    if rows.size:
        width = min(topk, local)  # a token's missing slots go to indices below topk
        member = (experts[rows][:, :, None] == np.arange(width)).any(axis=1)
        free = ~member
        fill = free & (np.cumsum(free, axis=1) <= num_dup[rows][:, None])
        out[:width] += np.round(fill.sum(axis=0) * t / n)
    return out


def _padded(per_expert: np.ndarray) -> tuple[float, ...]:
    """Rows after padding every touched expert's pairs to each candidate tile."""
    hit = per_expert[per_expert > 0]
    padded = tuple(float((np.ceil(hit / tile) * tile).sum()) for tile in TILES)
    return (*padded, float(per_expert.max(initial=0.0)))


@cache
def collector_load(
    num_tokens: int, num_experts: int, topk: int, ep: int, alpha: float
) -> tuple[float, ...]:
    """(assignments, experts touched, padded rows per tile of ``TILES``) of the measured rank;
    ``alpha`` 0 means balanced."""
    local = num_experts // ep
    if alpha == 0.0:
        stride = -(-num_experts // topk)
        i = np.arange(num_tokens)[:, None]
        j = np.arange(topk)[None, :]
        if num_tokens >= stride:
            experts = (i + j * stride) % num_experts
        else:
            experts = np.floor(i * stride / num_tokens + j * stride).astype(np.int64) % num_experts
        per_expert = np.bincount(experts[experts < local], minlength=local).astype(float)
        return (float(per_expert.sum()), float((per_expert > 0).sum()), *_padded(per_expert))
    rng = np.random.default_rng([num_tokens, num_experts, topk, ep, int(alpha * 1000)])
    lo, hi = (1.0, 0.8 * num_tokens) if num_tokens * topk > num_experts else (0.01, 2.0)
    a = 1.0 - alpha
    x = ((hi**a - lo**a) * rng.random((NUM_DRAWS, num_experts)) + lo**a) ** (1.0 / a)
    target = num_tokens * topk
    draws = []
    for row in np.round(x / x.sum(axis=1, keepdims=True) * target).astype(np.int64):
        groups = _fix_sum(row, target).reshape(ep, local)
        best = int(np.argmax(groups.sum(axis=1)))  # the busiest EP group is swapped to rank 0
        groups[[0, best]] = groups[[best, 0]]
        per_expert = _skewed_local_counts(groups.reshape(-1), num_tokens, topk, local)
        draws.append((per_expert.sum(), (per_expert > 0).sum(), *_padded(per_expert)))
    return tuple(float(v) for v in np.mean(np.array(draws, dtype=float), axis=0))
