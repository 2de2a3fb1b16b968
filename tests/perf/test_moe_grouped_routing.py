"""Group-limited routing of the collector's synthetic logits (``fitting.moe_loads``).

DeepSeek-V3-style grouped top-k keeps ``topk_groups`` of ``num_groups`` expert groups; on the
collector's two-valued logits the vacated slots tie and go to the lowest indices, which is what
makes the measured rank 0 hot in aiconfigurator's DeepSeek-V3 rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from servesim.perf.fitting import moe, moe_loads


def test_grouped_select_keeps_lowest_groups_and_fills_lowest_experts() -> None:
    # 8 experts in 4 groups of 2; token 0 chose one expert per group (0, 2, 4, 6): every group
    # scores 1 + 0, so groups 0 and 1 are kept (ties: lowest index), highs 0 and 2 survive and the
    # two vacated slots go to the lowest-index experts left there, 1 and 3
    scores = np.zeros((2, 8))
    scores[0, [0, 2, 4, 6]] = 1.0
    scores[1, [1, 2, 5, 7]] = 1.0  # groups 0 and 1 again tie at 1; highs 1 and 2, fills 0 and 3
    picked = moe_loads.grouped_select(scores, topk=4, num_groups=4, topk_groups=2)
    assert sorted(picked[0].tolist()) == [0, 1, 2, 3]
    assert sorted(picked[1].tolist()) == [0, 1, 2, 3]


def test_grouped_select_prefers_groups_with_two_chosen_experts() -> None:
    # group score is the sum of its two best experts: group 3 (experts 6, 7 both chosen) wins
    scores = np.zeros((1, 8))
    scores[0, [1, 6, 7]] = 1.0
    picked = moe_loads.grouped_select(scores, topk=3, num_groups=4, topk_groups=2)
    assert sorted(picked[0].tolist()) == [1, 6, 7]


def test_balanced_load_under_groups_piles_onto_rank_zero() -> None:
    # 8 tokens, 8 experts, top 4 (stride 2): tokens pick {0,2,4,6} or {1,3,5,7}; with 2 of 4
    # groups kept every token ends with {0,1,2,3}. EP 4 (rank 0 owns experts 0, 1): 8 + 8 pairs,
    # not the 4 + 4 of plain top-k
    grouped = moe_loads.collector_load(8, 8, 4, 4, 0.0, 4, 2)
    plain = moe_loads.collector_load(8, 8, 4, 4, 0.0)
    assert grouped[:2] == (16.0, 2.0) and grouped[-1] == 8.0
    assert plain[:2] == (8.0, 2.0) and plain[-1] == 4.0
    # one group kept of one: grouped top-k is plain top-k
    assert moe_loads.collector_load(64, 256, 8, 8, 0.0, 1, 1) == moe_loads.collector_load(
        64, 256, 8, 8, 0.0
    )


@pytest.mark.parametrize("ep", [2, 8, 64, 128, 256])
def test_deepseek_shape_pairs_per_token(ep: int) -> None:
    # hidden 7168, 256 experts in 8 groups (4 kept), top 8, balanced, 16384 tokens: experts 0-3
    # take every token (the fills), plus the chosen experts of the kept groups that rank 0 owns
    expected = {2: 8.0, 8: 5.0, 64: 4.0, 128: 2.0, 256: 1.0}[ep]
    assignments = moe_loads.collector_load(16384, 256, 8, ep, 0.0, 8, 4)[0]
    assert assignments == pytest.approx(expected * 16384)
    assert moe.GROUP_LIMITED_SHAPES[(7168, 2048, 256, 8)] == (8, 4)


def test_grouped_power_law_is_seeded_and_conserves_pairs() -> None:
    first = moe_loads.collector_load(512, 256, 8, 1, 1.2, 8, 4)
    assert first == moe_loads.collector_load(512, 256, 8, 1, 1.2, 8, 4)
    assert first[0] == pytest.approx(512 * 8)  # EP 1: the rank holds every pair


def test_grouped_select_stays_inside_kept_groups() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(64, 32)).astype(float)
    picked = moe_loads.grouped_select(scores, topk=6, num_groups=8, topk_groups=3)
    for row, chosen in zip(scores, picked, strict=True):
        assert len(set(chosen.tolist())) == 6
        assert len(set((chosen // 4).tolist())) <= 3  # groups of 4 experts
        # within the kept groups the chosen are the best scores there
        kept = np.isin(np.arange(32) // 4, chosen // 4)
        assert row[chosen].min() >= np.sort(row[kept])[-6]


@pytest.mark.slow
def test_held_out_fp8_block_balanced_above_256_tokens_on_h100_vllm() -> None:
    from servesim.core.paths import shared_data_dir
    from servesim.perf.fitting.heldout import crossval_predictions, error_stats, take
    from servesim.perf.fitting.tables import aic_root
    from servesim.specs.catalog.gpus import get_gpu

    data = shared_data_dir()
    if data is None:
        pytest.skip("shared data (aiconfigurator tables) not found")
    rows = moe.load_rows(aic_root(data), "h100_sxm", "vllm", "0.24.0")
    if rows is None:
        pytest.skip("no moe table for h100_sxm vllm 0.24.0")
    keep = (rows["dtype"] == "fp8_block") & np.isin(rows["num_tokens"], [1, 64, 512, 4096, 16384])
    rows = take(rows, keep)
    pred = crossval_predictions(moe, rows, get_gpu("h100-sxm"))
    big = (rows["num_tokens"] > 256) & (rows["regime"] == "tokens>256/balanced")
    stats = error_stats(pred[big], rows["latency_s"][big])
    deepseek = big & (rows["shape_key"] == "7168/2048/256/8")
    # measured (all token counts): 10.8% / +1.9%, DeepSeek-V3's shape 8.6% / +1.5%; with plain
    # top-k loads 19.8% / +7.0% and the DeepSeek shape -61% (median)
    assert stats.mape < 15.0 and abs(stats.median_signed) < 5.0
    assert abs(error_stats(pred[deepseek], rows["latency_s"][deepseek]).median_signed) < 15.0
