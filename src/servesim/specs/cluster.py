"""Nodes, clusters and inter-node networks: which link a group of GPUs talks over.

A ``NodeSpec`` is one server (GPUs + the fabric between them + its network); a ``ClusterSpec``
is identical nodes. ``link_for_group(n)`` answers the question the communication model asks:
for a tensor/expert-parallel group of ``n`` GPUs, packed into as few nodes as possible, which
link bounds its collectives. A "node" is one NVLink domain: 8 GPUs in an HGX server, 72 in a
GB200 NVL72 rack (``get_node_preset("gb200-nvl72")``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.specs.catalog import derived
from servesim.specs.catalog.gpus import get_gpu
from servesim.specs.gpu import GPUSpec, LinkSpec

NETWORKS_FILE = Path(__file__).resolve().parent / "catalog" / "networks.yaml"

#: ``nvlink-all-to-all``: NVSwitch (or AMD Infinity Fabric full mesh), every GPU at full link
#: bandwidth to every other; ``nvlink-pairs``: PCIe cards joined two by two with NVLink
#: bridges; ``pcie``: GPUs talk through the PCIe root complex / switch.
TOPOLOGIES = ("nvlink-all-to-all", "nvlink-pairs", "pcie")
#: GPUs per CPU socket in the default 8-card PCIe server: two sockets, four x16 cards each.
#: A Xeon socket has 80 PCIe 5.0 lanes (Intel ARK, Xeon Platinum 8480+: "Max # of PCI Express
#: Lanes 80"), so eight x16 cards (128 lanes) cannot hang off one socket; dual-socket 8-GPU
#: servers split them 4 + 4 behind PCIe switches (e.g. Supermicro SYS-421GE-TNRT, dual root).
#: The L40S tables agree: 2 GPUs 20 GB/s (P2P under one switch), 4 GPUs 5 GB/s (host memory
#: within a socket), 8 GPUs 1.2-2.2 GB/s (across the sockets) bus bandwidth, NCCL 2.27.
PCIE_GPUS_PER_SOCKET = 4


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    """An inter-node fabric as seen by one NIC.

    Attributes:
        name: catalog key (``ib-ndr-400``).
        bandwidth_bytes_per_s: one NIC, one direction.
        latency_s: per-message start-up latency (alpha) of a collective over it.
        source: citation for the figures.
    """

    name: str
    bandwidth_bytes_per_s: float
    latency_s: float
    source: str = ""


@lru_cache(maxsize=1)
def _networks_file() -> dict[str, Any]:
    return dict(derived.load(NETWORKS_FILE))  # the YAML's data (catalog.json when current)


@lru_cache(maxsize=1)
def _networks() -> dict[str, NetworkSpec]:
    data = _networks_file()["networks"]
    return {
        name: NetworkSpec(
            name=name,
            bandwidth_bytes_per_s=float(e["bandwidth_gb_per_s"]) * 1e9,
            latency_s=float(e["latency_us"]) / 1e6,
            source=str(e["source"]),
        )
        for name, e in data.items()
    }


def get_network(name: str) -> NetworkSpec:
    """The network named ``name`` (case-insensitive); did-you-mean on unknown names."""
    networks = _networks()
    key = name.strip().lower()
    if key not in networks:
        raise UnknownNameError("network", name, networks)
    return networks[key]


def list_networks() -> list[NetworkSpec]:
    """All built-in networks, sorted by name."""
    return [spec for _, spec in sorted(_networks().items())]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One server.

    Attributes:
        gpu: the accelerator in every slot.
        num_gpus: GPUs per node.
        topology: one of ``TOPOLOGIES``.
        network: the inter-node fabric.
        num_nics: NICs per node; None means one per GPU (rail-optimised, as DGX/HGX nodes).
        gpus_per_socket: on a ``pcie`` node, GPUs attached to one CPU socket's PCIe lanes
            (a larger group's collectives cross the inter-socket link through host memory);
            None: every GPU on one socket (or the GPUs do not talk through the host).
    """

    gpu: GPUSpec
    num_gpus: int
    topology: str
    network: NetworkSpec
    num_nics: int | None = None
    gpus_per_socket: int | None = None

    def __post_init__(self) -> None:
        if self.num_gpus < 1:
            raise ConfigError("node.num_gpus", self.num_gpus, "must be >= 1")
        if self.topology not in TOPOLOGIES:
            raise UnknownNameError("topology", self.topology, TOPOLOGIES)
        if self.topology == "nvlink-pairs" and self.gpu.pair_link is None:
            raise ConfigError(
                "node.topology", self.topology, f"{self.gpu.name} has no NVLink bridge"
            )
        if self.num_nics is not None and self.num_nics < 1:
            raise ConfigError("node.num_nics", self.num_nics, "must be >= 1")
        if self.gpus_per_socket is not None and self.gpus_per_socket < 1:
            raise ConfigError("node.gpus_per_socket", self.gpus_per_socket, "must be >= 1")

    @property
    def nics(self) -> int:
        """NICs per node (one per GPU unless set)."""
        return self.num_nics if self.num_nics is not None else self.num_gpus

    def intra_node_link(self, num_gpus: int) -> LinkSpec:
        """Link among ``num_gpus`` GPUs of this node (1 <= num_gpus <= self.num_gpus)."""
        if not 1 <= num_gpus <= self.num_gpus:
            raise ConfigError("group size", num_gpus, f"must be in [1, {self.num_gpus}] in a node")
        if self.topology == "nvlink-all-to-all":
            return self.gpu.intra_node_link
        if self.topology == "nvlink-pairs" and num_gpus <= 2 and self.gpu.pair_link is not None:
            # An NVLink bridge joins exactly two cards; larger groups fall back to PCIe.
            return self.gpu.pair_link
        return self._pcie_link()

    def _pcie_link(self) -> LinkSpec:
        link = self.gpu.intra_node_link
        return link if link.name.startswith("pcie") else self.gpu.host_link

    def network_link(self) -> LinkSpec:
        """Per-GPU share of the node's network when every GPU sends at once."""
        share = min(1.0, self.nics / self.num_gpus)
        return LinkSpec(
            name=self.network.name,
            bandwidth_bytes_per_s=self.network.bandwidth_bytes_per_s * share,
            latency_s=self.network.latency_s,
        )

    def link_for_group(self, num_gpus: int) -> LinkSpec:
        """Link bounding a group of ``num_gpus`` GPUs (network when it spans nodes)."""
        if num_gpus < 1:
            raise ConfigError("group size", num_gpus, "must be >= 1")
        if num_gpus <= self.num_gpus:
            return self.intra_node_link(num_gpus)
        return self.network_link()


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """``num_nodes`` identical nodes."""

    node: NodeSpec
    num_nodes: int = 1

    def __post_init__(self) -> None:
        if self.num_nodes < 1:
            raise ConfigError("cluster.num_nodes", self.num_nodes, "must be >= 1")

    @property
    def num_gpus(self) -> int:
        """GPUs in the whole cluster."""
        return self.node.num_gpus * self.num_nodes

    @property
    def gpu(self) -> GPUSpec:
        """The accelerator of every node."""
        return self.node.gpu

    def link_for_group(self, num_gpus: int) -> LinkSpec:
        """Link a group of ``num_gpus`` GPUs communicates over, packed into few nodes.

        Raises:
            ConfigError: the group is larger than the cluster.
        """
        if num_gpus > self.num_gpus:
            raise ConfigError("group size", num_gpus, f"exceeds the cluster's {self.num_gpus} GPUs")
        return self.node.link_for_group(num_gpus)

    @classmethod
    def for_gpus(cls, gpu: GPUSpec, num_gpus: int, node: NodeSpec | None = None) -> ClusterSpec:
        """Enough default nodes of ``gpu`` (or of ``node``) to hold ``num_gpus`` GPUs."""
        node = node or default_node(gpu)
        if num_gpus < 1:
            raise ConfigError("num_gpus", num_gpus, "must be >= 1")
        return cls(node=node, num_nodes=math.ceil(num_gpus / node.num_gpus))


def node_preset_names() -> list[str]:
    """Names of the built-in node presets (``gb200-nvl72``, ``hgx-b300``, ...), sorted."""
    return sorted(_networks_file()["node_presets"])


def get_node_preset(name: str, network: NetworkSpec | str | None = None) -> NodeSpec:
    """The named server or NVLink domain from ``networks.yaml`` (``gb200-nvl72``: 72 GPUs).

    Raises:
        UnknownNameError: no such preset (the message suggests close names).
    """
    presets = _networks_file()["node_presets"]
    key = name.strip().lower()
    if key not in presets:
        raise UnknownNameError("node preset", name, presets)
    entry = presets[key]
    if isinstance(network, str):
        network = get_network(network)
    return NodeSpec(
        gpu=get_gpu(str(entry["gpu"])),
        num_gpus=int(entry["num_gpus"]),
        topology=str(entry["topology"]),
        network=network or get_network(str(entry["network"])),
        gpus_per_socket=entry.get("gpus_per_socket"),
    )


def _default_preset(gpu: GPUSpec) -> str | None:
    """The preset marked ``default_for_gpu`` for this GPU, if any."""
    for name, entry in sorted(_networks_file()["node_presets"].items()):
        if entry.get("default_for_gpu") and entry["gpu"] == gpu.name:
            return str(name)
    return None


def default_node(gpu: GPUSpec, network: NetworkSpec | str | None = None) -> NodeSpec:
    """The usual server for ``gpu``.

    A preset marked ``default_for_gpu`` wins (GB200: the 72-GPU NVL72 NVLink domain; B300:
    HGX B300 with 800G NICs). Otherwise SXM/OAM parts: 8 GPUs on NVSwitch / Infinity Fabric
    (DGX/HGX, MI300X platform), one 400G NDR NIC per GPU (HDR 200G for A100, as DGX A100).
    GH200: one superchip per node. PCIe cards: 8 per server over PCIe with 100 GbE, as typical
    cloud inference servers.
    """
    if isinstance(network, str):
        network = get_network(network)
    preset = _default_preset(gpu)
    if preset is not None:
        node = get_node_preset(preset, network)
        # Keep the caller's spec object (a catalog GPU compares equal, a custom one may not).
        return NodeSpec(
            gpu, node.num_gpus, node.topology, node.network, gpus_per_socket=node.gpus_per_socket
        )
    if gpu.form_factor == "pcie":
        return NodeSpec(
            gpu,
            8,
            "pcie",
            network or get_network("eth-100"),
            num_nics=1,
            gpus_per_socket=PCIE_GPUS_PER_SOCKET,
        )
    if gpu.name == "gh200":
        return NodeSpec(gpu, 1, "nvlink-all-to-all", network or get_network("ib-ndr-400"))
    default_net = "ib-hdr-200" if gpu.name.startswith("a100") else "ib-ndr-400"
    return NodeSpec(gpu, 8, "nvlink-all-to-all", network or get_network(default_net))
