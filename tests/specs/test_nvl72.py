"""GB200 NVL72: a 72-GPU NVLink domain, so TP/EP groups up to 72 stay off the network."""

from __future__ import annotations

import pytest

from servesim.core.errors import UnknownNameError
from servesim.perf.comm import topology_of
from servesim.specs.catalog import get_gpu
from servesim.specs.cluster import (
    ClusterSpec,
    default_node,
    get_node_preset,
    node_preset_names,
)


def test_nvl72_preset_is_one_72_gpu_nvlink_domain() -> None:
    node = get_node_preset("gb200-nvl72")
    assert node.gpu.name == "gb200"
    assert (node.num_gpus, node.topology) == (72, "nvlink-all-to-all")
    assert default_node(get_gpu("gb200")) == node


@pytest.mark.parametrize("group", [2, 8, 16, 64, 72])
def test_tp_and_ep_groups_in_the_rack_use_nvlink(group: int) -> None:
    cluster = ClusterSpec(get_node_preset("gb200-nvl72"), num_nodes=2)
    link = cluster.link_for_group(group)
    assert link.name == "nvlink5"
    assert link.bandwidth_bytes_per_s == 900e9  # 1.8 TB/s bidirectional per GPU
    assert topology_of(link) == "nvswitch"


def test_groups_beyond_the_rack_use_the_network() -> None:
    cluster = ClusterSpec.for_gpus(get_gpu("gb200"), 144)
    assert cluster.num_nodes == 2
    across = cluster.link_for_group(144)
    assert across.name == "ib-ndr-400" and across.bandwidth_bytes_per_s == 50e9


def test_hgx_nodes_still_span_eight() -> None:
    # TP=16 on HGX H100 crosses nodes; the same TP=16 on NVL72 does not.
    h100 = ClusterSpec.for_gpus(get_gpu("h100"), 16)
    assert h100.link_for_group(16).name == "ib-ndr-400"
    b300 = default_node(get_gpu("b300"))
    assert (b300.num_gpus, b300.network.name) == (8, "ib-xdr-800")
    assert b300.link_for_group(16).bandwidth_bytes_per_s == 100e9


def test_presets_and_network_override() -> None:
    assert {"gb200-nvl72", "hgx-b300"} <= set(node_preset_names())
    node = get_node_preset("GB200-NVL72", network="roce-200")
    assert node.network.name == "roce-200" and node.num_gpus == 72
    with pytest.raises(UnknownNameError, match="did you mean gb200-nvl72"):
        get_node_preset("gb200-nvl27")
