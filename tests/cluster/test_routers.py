"""Routers: each picks a valid replica from what it can see; the load-based ones pick the
least loaded; prefix affinity keeps a prefix on one replica unless it is overloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.cluster import ROUTERS, RouterContext, make_router
from servesim.core.errors import UnknownNameError
from servesim.engine.simulation import ReplicaView
from servesim.perf import RooflinePerfModel
from servesim.perf.types import ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.workload.request import Request

PLAN = ReplicaPlan(model=resolve_model("llama-3.1-8b"), gpu=get_gpu("h100-sxm"))


def context(n: int) -> RouterContext:
    return RouterContext((PLAN,) * n, RooflinePerfModel(), np.random.default_rng(1))


def view(
    i: int, queued: int = 0, running: int = 0, kv: float = 0.0, tokens: int = 0, pending: int = 0
) -> ReplicaView:
    return ReplicaView(i, queued, running, kv, tokens, pending)


REQ = Request(
    request_id=0,
    arrival_s=0.0,
    num_prompt_tokens=100,
    num_output_tokens=10,
    prefix_block_hashes=(7, 8, 9),
    prefix_block_size=16,
)

view_lists = st.lists(
    st.builds(
        view,
        st.just(0),
        st.integers(0, 50),
        st.integers(0, 50),
        st.floats(0, 1),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
    ),
    min_size=1,
    max_size=9,
)


@given(view_lists, st.sampled_from(ROUTERS.names()))
def test_every_router_returns_a_valid_position(views: list[ReplicaView], name: str) -> None:
    router = make_router(name, {}, context(len(views)))
    for _ in range(3):
        assert 0 <= router.route(REQ, views) < len(views)


@given(view_lists)
def test_least_loaded_routers_pick_a_minimum(views: list[ReplicaView]) -> None:
    ctx = context(len(views))
    lor = make_router("least_outstanding_requests", {}, ctx).route(REQ, views)
    assert views[lor].num_queued + views[lor].num_running == min(
        v.num_queued + v.num_running for v in views
    )
    lot = make_router("least_outstanding_tokens", {}, ctx).route(REQ, views)
    assert views[lot].outstanding_tokens == min(v.outstanding_tokens for v in views)
    kv = make_router("least_kv_usage", {}, ctx).route(REQ, views)
    assert views[kv].kv_usage == min(v.kv_usage for v in views)


def test_round_robin_cycles() -> None:
    router = make_router("round_robin", {}, context(3))
    views = [view(i) for i in range(3)]
    assert [router.route(REQ, views) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_prefix_affinity_is_sticky_then_falls_back_under_load() -> None:
    router = make_router("prefix_affinity", {"slack": 0}, context(4))
    idle = [view(i) for i in range(4)]
    home = router.route(REQ, idle)
    assert all(router.route(REQ, idle) == home for _ in range(5))
    other = Request(
        request_id=1,
        arrival_s=0.0,
        num_prompt_tokens=100,
        num_output_tokens=10,
        prefix_block_hashes=(1, 2, 3),
        prefix_block_size=16,
    )
    homes = {
        router.route(
            Request(
                request_id=i,
                arrival_s=0.0,
                num_prompt_tokens=64,
                num_output_tokens=1,
                prefix_block_hashes=(i, i + 1),
                prefix_block_size=16,
            ),
            idle,
        )
        for i in range(50)
    }
    assert len(homes) == 4  # prefixes spread over the ring
    assert router.route(other, idle) in range(4)
    loaded = [view(i, queued=40 if i == home else 1) for i in range(4)]
    assert router.route(REQ, loaded) != home


def test_slo_aware_prefers_the_shorter_prefill_backlog() -> None:
    router = make_router("slo_aware", {}, context(3))
    views = [
        view(0, pending=20_000, running=1),
        view(1, pending=500, running=4),
        view(2, pending=9_000),
    ]
    assert router.route(REQ, views) == 1


def test_user_router_by_path(tmp_path: Path) -> None:
    file = tmp_path / "my_router.py"
    file.write_text(
        "class Last:\n"
        "    def __init__(self, offset=0):\n"
        "        self.offset = offset\n"
        "    def route(self, request, views):\n"
        "        return len(views) - 1 - self.offset\n"
    )
    router = make_router(f"{file}:Last", {"offset": 1}, context(3))
    assert router.route(REQ, [view(i) for i in range(3)]) == 1


def test_unknown_router_suggests_names() -> None:
    with pytest.raises(UnknownNameError, match="did you mean round_robin"):
        make_router("round_robbin", {}, context(1))


def test_slo_aware_reads_each_views_own_replica_when_some_are_not_routable() -> None:
    slow = ReplicaPlan(model=resolve_model("llama-3.1-8b"), gpu=get_gpu("a100-80gb"))
    perf = RooflinePerfModel()
    rng = np.random.default_rng(1)
    # entry replicas 4 (A100) and 7 (H100); only 7 is routable, so it is the views' position 0
    router = make_router("slo_aware", {}, RouterContext((slow, PLAN), perf, rng, (4, 7)))
    alone = make_router("slo_aware", {}, RouterContext((PLAN,), perf, rng))
    backlog = [ReplicaView(7, 2, 3, 0.5, 900, 4000)]
    predicted = router.predicted_ttft_s(REQ, backlog)  # type: ignore[attr-defined]
    assert predicted == alone.predicted_ttft_s(REQ, [view(0, 2, 3, 0.5, 900, 4000)])  # type: ignore[attr-defined]
    both = [ReplicaView(4, 0, 0, 0.0, 0, 4000), ReplicaView(7, 0, 0, 0.0, 0, 4000)]
    assert router.route(REQ, both) == 1  # the same backlog drains faster on the H100
