"""The measured rank's load in aiconfigurator's MoE tables, recomputed from its collector.

aiconfigurator's ``collect_moe.py`` routes tokens with ``balanced_logits`` or
``power_law_logits_v3`` (module docstring of ``fitting.moe``); ``collector_load`` reproduces
the measured rank's token-expert pairs, distinct experts, exact padded rows per candidate tile
and busiest expert from the same statistics (seeded draws, averaged as the collector averages).

Layers with group-limited routing (DeepSeek-V3's ``n_group`` 8 / ``topk_group`` 4) route the
collector's synthetic logits through grouped top-k (``grouped_select``), which changes the
measured rank's load completely: the balanced pattern puts exactly one chosen expert in each
group, so only ``topk_group`` of the ``topk`` survive and the vacated slots tie at the low
score, taken by the lowest-index experts of the kept groups, i.e. the measured rank 0's. H100
vLLM fp8_block, hidden 7168, 256 experts, top 8, balanced, 16384 tokens: rank 0 holds 8 / 6 /
5 / 4.5 / 4.25 / 4 / 2 / 1 pairs per token at EP 2 / 4 / ... / 256 (1/EP of 8 without groups),
and the measured 25.8 / 17.6 / 13.9 / 12.1 / 11.4 / 10.7 / 5.5 / 2.8 ms follow those pairs at
2.7-3.2 ms per pair per token.
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
#: Tiles the tables' rows carry exact padding for: the candidates and Marlin's block sizes
#: (``opmodels.moe_tiles.marlin_block_m``: 8, 16, 32, 48, 64).
PAD_TILES = (8, 16, 32, 48, 64, 128)


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
    padded = tuple(float((np.ceil(hit / tile) * tile).sum()) for tile in PAD_TILES)
    return (*padded, float(per_expert.max(initial=0.0)))


def grouped_select(scores: np.ndarray, topk: int, num_groups: int, topk_groups: int) -> np.ndarray:
    """Experts each token keeps under DeepSeek-V3's group-limited top-k: (n, E) scores -> (n, topk)
    expert ids.

    Experts form ``num_groups`` contiguous groups; a group's score is the sum of its two best
    experts' scores; the best ``topk_groups`` groups are kept and the token's top-k is taken
    inside them. Ties go to the lowest index at both steps (the collector's synthetic logits take
    only two values, so most candidates tie).
    """
    n, num_experts = scores.shape
    size = num_experts // num_groups
    grouped = scores.reshape(n, num_groups, size)
    group_score = -np.sort(-grouped, axis=2)[:, :, :2].sum(axis=2)
    best = np.argsort(-group_score, axis=1, kind="stable")[:, :topk_groups]
    kept = np.zeros((n, num_groups), dtype=bool)
    np.put_along_axis(kept, best, True, axis=1)
    masked = np.where(np.repeat(kept, size, axis=1), scores, -np.inf)
    return np.argsort(-masked, axis=1, kind="stable")[:, :topk]


def _local_counts_of(selected: np.ndarray, weights: np.ndarray, local: int) -> np.ndarray:
    """Pairs per local expert (ids below ``local``) of tokens' selections, each token weighted."""
    hit = selected < local
    rows = np.broadcast_to(weights[:, None], selected.shape)
    return np.bincount(selected[hit], weights=rows[hit], minlength=local).astype(float)


def _balanced_experts(num_tokens: int, num_experts: int, topk: int) -> tuple[np.ndarray, ...]:
    """The collector's balanced choice per token, as (experts (n, topk), weights (n,)).

    With at least ``stride`` tokens the pattern repeats every ``num_experts`` tokens, so one
    period weighted by how often each residue occurs is exact.
    """
    stride = -(-num_experts // topk)
    j = np.arange(topk)[None, :]
    if num_tokens < stride:
        i = np.arange(num_tokens)[:, None]
        experts = np.floor(i * stride / num_tokens + j * stride).astype(np.int64) % num_experts
        return experts, np.ones(num_tokens)
    residue = np.arange(min(num_tokens, num_experts))
    weights = ((num_tokens - residue + num_experts - 1) // num_experts).astype(float)
    return (residue[:, None] + j * stride) % num_experts, weights


def _grouped_scores(experts: np.ndarray, num_experts: int) -> np.ndarray:
    """One-hot counts of each token's chosen experts (the logits' order: chosen above the rest)."""
    scores = np.zeros((experts.shape[0], num_experts))
    np.add.at(scores, (np.arange(experts.shape[0])[:, None], experts), 1.0)
    return scores


@cache
def collector_load(
    num_tokens: int,
    num_experts: int,
    topk: int,
    ep: int,
    alpha: float,
    num_groups: int = 1,
    topk_groups: int = 1,
) -> tuple[float, ...]:
    """(assignments, experts touched, padded rows per tile of ``PAD_TILES``, busiest expert) of the
    measured rank; ``alpha`` 0 means balanced; ``num_groups`` > 1: group-limited routing keeps
    ``topk_groups`` groups (``grouped_select``)."""
    local = num_experts // ep
    if num_groups > 1:
        return _grouped_load(num_tokens, num_experts, topk, ep, alpha, (num_groups, topk_groups))
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


def _grouped_load(
    num_tokens: int, num_experts: int, topk: int, ep: int, alpha: float, groups: tuple[int, int]
) -> tuple[float, ...]:
    """``collector_load`` for group-limited routing: the collector's logits (balanced, or the
    power-law layout of ``_skewed_local_counts``) through ``grouped_select``."""
    local = num_experts // ep
    if alpha == 0.0:
        experts, weights = _balanced_experts(num_tokens, num_experts, topk)
        selected = grouped_select(_grouped_scores(experts, num_experts), topk, *groups)
        per_expert = _local_counts_of(selected, weights, local)
        return (float(per_expert.sum()), float((per_expert > 0).sum()), *_padded(per_expert))
    rng = np.random.default_rng([num_tokens, num_experts, topk, ep, int(alpha * 1000)])
    lo, hi = (1.0, 0.8 * num_tokens) if num_tokens * topk > num_experts else (0.01, 2.0)
    a = 1.0 - alpha
    x = ((hi**a - lo**a) * rng.random((NUM_DRAWS, num_experts)) + lo**a) ** (1.0 / a)
    target = num_tokens * topk
    n = min(num_tokens, MAX_SAMPLED_TOKENS)
    tokens = (np.arange(n) * num_tokens) // n
    draws = []
    for row in np.round(x / x.sum(axis=1, keepdims=True) * target).astype(np.int64):
        counts = _fix_sum(row, target).reshape(ep, local)
        best = int(np.argmax(counts.sum(axis=1)))
        counts[[0, best]] = counts[[best, 0]]
        counts = counts.reshape(-1)
        order = np.argsort(-counts, kind="stable")
        ends = np.cumsum(counts[order])
        flat = tokens[:, None] + num_tokens * np.arange(topk)
        experts = order[np.searchsorted(ends, flat, side="right")]
        selected = grouped_select(_grouped_scores(experts, num_experts), topk, *groups)
        per_expert = _local_counts_of(selected, np.full(n, num_tokens / n), local)
        per_expert = np.round(per_expert)
        draws.append((per_expert.sum(), (per_expert > 0).sum(), *_padded(per_expert)))
    return tuple(float(v) for v in np.mean(np.array(draws, dtype=float), axis=0))
