"""describe(): hand-computed statistics on tiny workloads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servesim.workload import Request, Workload, describe


class _Fixed(Workload):
    def __init__(self, requests: list[Request]) -> None:
        self.requests = requests
        self.name = "fixed"

    def __iter__(self) -> Iterator[Request]:
        return iter(self.requests)


def _r(i: int, t: float, p: int, o: int, hashes: tuple[int, ...] = ()) -> Request:
    return Request(i, t, p, o, prefix_block_hashes=hashes, prefix_block_size=4 if hashes else 0)


def test_describe_hand_computed() -> None:
    requests = [_r(0, 0.0, 10, 1), _r(1, 1.0, 20, 2), _r(2, 3.0, 30, 3), _r(3, 6.0, 40, 4)]
    stats = describe(_Fixed(requests))
    assert stats.num_requests == 4
    assert stats.duration_s == 6.0
    assert stats.rate_per_s == pytest.approx(0.5)
    # gaps 1, 2, 3: mean 2, population std sqrt(2/3)
    assert stats.interarrival_cv == pytest.approx((2 / 3) ** 0.5 / 2)
    assert stats.prompt.mean == 25.0 and stats.prompt.p50 == 25.0 and stats.prompt.max == 40
    assert stats.output.p90 == pytest.approx(3.7)
    assert stats.prefix_reuse_ratio is None
    assert describe(_Fixed(requests), max_requests=2).num_requests == 2


def test_prefix_reuse_counts_leading_blocks_only() -> None:
    requests = [
        _r(0, 0.0, 12, 1, (1, 2, 3)),
        _r(1, 1.0, 12, 1, (1, 2, 4)),  # 2 leading hits
        _r(2, 2.0, 12, 1, (5, 2, 3)),  # block 2 seen but not leading: 0 hits
        _r(3, 3.0, 8, 1, (1, 2)),  # 2 hits
    ]
    assert describe(_Fixed(requests)).prefix_reuse_ratio == pytest.approx(4 / 11)


def test_empty_workload() -> None:
    stats = describe(_Fixed([]))
    assert stats.num_requests == 0 and stats.rate_per_s == 0.0
    assert stats.to_dict()["prompt"]["max"] == 0
