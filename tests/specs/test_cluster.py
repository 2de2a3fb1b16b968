"""Node/cluster link selection and the network catalog."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.specs.catalog import get_gpu, list_gpus
from servesim.specs.cluster import (
    ClusterSpec,
    NodeSpec,
    default_node,
    get_network,
    list_networks,
)


def test_network_catalog() -> None:
    names = {n.name for n in list_networks()}
    assert {"ib-ndr-400", "ib-hdr-200", "roce-200", "eth-100", "eth-25"} <= names
    ndr = get_network("IB-NDR-400")
    assert ndr.bandwidth_bytes_per_s == 50e9
    for net in list_networks():
        assert net.bandwidth_bytes_per_s > 0
        assert 0 < net.latency_s < 1e-4
        assert len(net.source) > 20
    with pytest.raises(UnknownNameError, match="did you mean"):
        get_network("ib-ndr-40")


def test_sxm_default_node_is_eight_on_nvswitch() -> None:
    node = default_node(get_gpu("h100-sxm"))
    assert (node.num_gpus, node.topology, node.network.name) == (
        8,
        "nvlink-all-to-all",
        "ib-ndr-400",
    )
    assert default_node(get_gpu("a100")).network.name == "ib-hdr-200"


def test_pcie_default_node() -> None:
    node = default_node(get_gpu("l40s"))
    assert node.topology == "pcie"
    assert node.link_for_group(4).name == "pcie4"


def test_h100_cluster_links() -> None:
    cluster = ClusterSpec.for_gpus(get_gpu("h100"), 16)
    assert cluster.num_nodes == 2 and cluster.num_gpus == 16
    assert cluster.link_for_group(2).name == "nvlink4"
    assert cluster.link_for_group(8).bandwidth_bytes_per_s == 450e9
    across = cluster.link_for_group(16)
    assert across.name == "ib-ndr-400"
    assert across.bandwidth_bytes_per_s == 50e9  # one 400G NIC per GPU
    with pytest.raises(ConfigError, match="exceeds"):
        cluster.link_for_group(17)


def test_nvlink_pairs_only_for_two_gpus() -> None:
    node = NodeSpec(get_gpu("a40"), 4, "nvlink-pairs", get_network("eth-100"))
    assert node.link_for_group(2).name == "nvlink-bridge-a40"
    assert node.link_for_group(4).name == "pcie4"


def test_nvlink_pairs_needs_a_bridge() -> None:
    with pytest.raises(ConfigError, match="no NVLink bridge"):
        NodeSpec(get_gpu("l4"), 2, "nvlink-pairs", get_network("eth-100"))


def test_shared_nics_split_bandwidth() -> None:
    node = NodeSpec(get_gpu("l4"), 8, "pcie", get_network("eth-100"), num_nics=1)
    assert node.link_for_group(16).bandwidth_bytes_per_s == pytest.approx(12.5e9 / 8)


def test_bad_node_values() -> None:
    gpu = get_gpu("h100")
    net = get_network("ib-ndr-400")
    with pytest.raises(UnknownNameError):
        NodeSpec(gpu, 8, "torus", net)
    with pytest.raises(ConfigError):
        NodeSpec(gpu, 0, "nvlink-all-to-all", net)
    with pytest.raises(ConfigError):
        ClusterSpec(default_node(gpu), num_nodes=0)


GPU_NAMES = [g.name for g in list_gpus()]


@given(gpu_name=st.sampled_from(GPU_NAMES), group=st.integers(1, 64), nodes=st.integers(1, 8))
def test_link_never_gets_faster_as_the_group_grows(gpu_name: str, group: int, nodes: int) -> None:
    cluster = ClusterSpec(default_node(get_gpu(gpu_name)), num_nodes=nodes)
    if group > cluster.num_gpus:
        with pytest.raises(ConfigError):
            cluster.link_for_group(group)
        return
    link = cluster.link_for_group(group)
    smaller = cluster.link_for_group(max(1, group // 2))
    assert link.bandwidth_bytes_per_s <= smaller.bandwidth_bytes_per_s
    assert link.bandwidth_bytes_per_s > 0
