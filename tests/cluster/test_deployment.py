"""Deployment model: placement, links, and one error line per problem before simulating."""

from __future__ import annotations

import pytest

from servesim.cluster import DeploymentConfig, DeploymentError, build_deployment
from servesim.perf import RooflinePerfModel

PERF = RooflinePerfModel()


def build(pools: list[dict], **extra: object):  # type: ignore[no-untyped-def]
    return build_deployment(
        DeploymentConfig.model_validate({"pools": pools, **extra}), "llama-3.1-8b", PERF
    )


def test_disaggregated_pools_share_a_node_by_default() -> None:
    dep = build(
        [
            {"name": "p", "role": "prefill", "replicas": 2},
            {"name": "d", "role": "decode", "replicas": 6},
        ]
    )
    assert dep.num_gpus == 8 and len(dep.nodes) == 1 and dep.is_disaggregated
    assert dep.replica_nodes() == [0] * 8
    link = dep.link_between(0, 0)
    assert link.bandwidth_bytes_per_s == dep.nodes[0].gpu.intra_node_link.bandwidth_bytes_per_s
    setups = dep.setups()
    assert [s.role for s in setups] == ["prefill"] * 2 + ["decode"] * 6
    assert [s.receives_kv for s in setups] == [False] * 2 + [True] * 6


def test_placement_across_nodes_uses_the_network() -> None:
    dep = build(
        [
            {"name": "p", "role": "prefill", "replicas": 1, "tp": 2},
            {"name": "d", "role": "decode", "replicas": 1, "tp": 2},
        ],
        nodes=[{"gpu": "h100-sxm", "count": 2, "gpus_per_node": 2}],
    )
    assert dep.replica_nodes() == [0, 1]
    net = dep.link_between(0, 1)
    assert net.bandwidth_bytes_per_s == dep.nodes[0].network_link().bandwidth_bytes_per_s
    assert net.bandwidth_bytes_per_s < dep.link_between(0, 0).bandwidth_bytes_per_s


def test_every_problem_is_reported_once_before_simulating() -> None:
    with pytest.raises(DeploymentError) as info:
        build(
            [
                {"name": "a", "role": "prefill", "tp": 3},  # 32 heads
                {"name": "b", "pp": 64},  # 32 layers
                {"name": "c", "gpu": "h100-smx"},  # unknown GPU
                {"name": "d", "ep": 4},  # dense model: no experts
                {"name": "e", "model": "llama-3.1-70b", "gpu": "l4"},  # weights do not fit
            ]
        )
    problems = info.value.problems
    text = "\n".join(problems)
    assert "prefill pool needs a decode pool" in text
    assert "tp=3 does not divide the 32 attention heads" in text
    assert "pp=64 exceeds the 32 layers" in text
    assert "unknown gpu 'h100-smx'" in text.lower()
    assert "ep=4" in text and "no experts" in text
    assert "pool 'e'" in text
    assert len(problems) == 6, problems
    assert str(info.value).count("\n") == len(problems)


def test_ep_beyond_the_experts() -> None:
    with pytest.raises(DeploymentError, match="exceeds the 8 experts"):
        build_deployment(
            DeploymentConfig.model_validate({"pools": [{"tp": 16, "ep": 16, "gpu": "h200"}]}),
            "mixtral-8x7b",
            PERF,
        )


def test_more_gpus_than_the_cluster_has() -> None:
    with pytest.raises(DeploymentError, match="need 4 more h100-sxm GPUs than fit"):
        build([{"replicas": 12}], nodes=[{"gpu": "h100-sxm", "count": 1}])


def test_decode_without_prefill_and_duplicate_names() -> None:
    with pytest.raises(DeploymentError) as info:
        build([{"name": "x", "role": "decode"}, {"name": "x"}])
    text = str(info.value)
    assert "decode pool needs a prefill pool" in text and "'x' is used by 2 pools" in text


def test_heterogeneous_pools_sit_on_their_own_servers() -> None:
    dep = build(
        [
            {"name": "p", "role": "prefill", "replicas": 2, "gpu": "h100-sxm"},
            {"name": "d", "role": "decode", "replicas": 4, "gpu": "a100-80gb"},
        ]
    )
    assert [n.gpu.name for n in dep.nodes] == ["h100-sxm", "a100-80gb"]
    assert dep.replica_nodes() == [0, 0, 1, 1, 1, 1]
    link = dep.link_between(0, 1)  # H100 NDR 400G NIC vs A100 HDR 200G: the slower side
    assert link.bandwidth_bytes_per_s == dep.nodes[1].network_link().bandwidth_bytes_per_s
    assert [p.plan.gpu.name for p in dep.pools] == ["h100-sxm", "a100-80gb"]


def test_a_resized_server_keeps_its_sockets_and_nics() -> None:
    # an 8-slot PCIe server (4 GPUs per socket) configured with 6 GPUs keeps that split
    dep = build([{"name": "a", "gpu": "l40s"}], nodes=[{"gpu": "l40s", "gpus_per_node": 6}])
    node = dep.nodes[0]
    assert node.num_gpus == 6 and node.gpus_per_socket == 4 and node.topology == "pcie"
