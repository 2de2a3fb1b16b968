"""Where a deployment's replicas run: the cluster's nodes (as configured, or enough default
servers per GPU type) and the first-fit placement of every replica's GPUs on them."""

from __future__ import annotations

from dataclasses import replace

from servesim.cluster.config import DeploymentConfig, PoolConfig
from servesim.core.errors import ServesimError
from servesim.perf.dp_cost import GroupSpan
from servesim.perf.types import ReplicaPlan
from servesim.specs.catalog import get_gpu
from servesim.specs.cluster import NodeSpec, default_node
from servesim.specs.gpu import LinkSpec


def cluster_nodes(
    cfg: DeploymentConfig, plans: list[ReplicaPlan | None], problems: list[str]
) -> list[NodeSpec] | None:
    """The cluster's nodes: as configured, or enough default servers per GPU type."""
    nodes: list[NodeSpec] = []
    if cfg.nodes is not None:
        for group in cfg.nodes:
            try:
                gpu = get_gpu(group.gpu)
                node = default_node(gpu, group.network)
                if group.gpus_per_node is not None:
                    # keep the server's other traits (NICs, GPUs per socket) at the new size
                    node = replace(node, num_gpus=group.gpus_per_node)
            except ServesimError as exc:
                problems.append(f"nodes: {exc}")
                return None
            nodes.extend([node] * group.count)
        return nodes
    demand: dict[str, int] = {}
    specs: dict[str, NodeSpec] = {}
    for pool, plan in zip(cfg.pools, plans, strict=True):
        if plan is not None:
            need = num_ranks(pool) * plan.num_gpus
            demand[plan.gpu.name] = demand.get(plan.gpu.name, 0) + need
            specs.setdefault(plan.gpu.name, default_node(plan.gpu))
    for name, need in demand.items():
        node = specs[name]
        nodes.extend([node] * -(-need // node.num_gpus))
    return nodes


def place_replicas(
    cfg: DeploymentConfig,
    plans: list[ReplicaPlan | None],
    nodes: list[NodeSpec],
    problems: list[str],
) -> list[list[int]] | None:
    """First-fit placement of every replica's GPUs (a replica larger than a node takes whole
    consecutive nodes); reports GPU types whose demand exceeds the cluster."""
    free = [n.num_gpus for n in nodes]
    out: list[list[int]] = []
    short: dict[str, int] = {}
    for pool, plan in zip(cfg.pools, plans, strict=True):
        where: list[int] = []
        if plan is None:
            out.append(where)
            continue
        need = plan.num_gpus
        for _ in range(num_ranks(pool)):
            index = _fit(nodes, free, plan.gpu.name, need)
            if index is None:
                short[plan.gpu.name] = short.get(plan.gpu.name, 0) + need
            else:
                where.append(index)
        out.append(where)
    for name, missing in short.items():
        have = sum(n.num_gpus for n in nodes if n.gpu.name == name)
        problems.append(
            f"the pools need {missing} more {name} GPUs than fit on the cluster's {have} "
            f"(of {len(nodes)} nodes)"
        )
    return None if short else out


def group_span(nodes: list[NodeSpec], rank_nodes: list[int], rank_gpus: int) -> GroupSpan | None:
    """Where a DP-attention group's ranks sit (``rank_nodes``: the index into ``nodes`` of
    each rank's first GPU; ``rank_gpus`` GPUs each): None when one server holds them all,
    else the network between the servers and the fewest of the group's GPUs on one."""
    here: dict[int, int] = {}
    for first in rank_nodes:
        size = nodes[first].num_gpus
        # a rank wider than a server fills consecutive whole servers (``place_replicas``)
        for j in range(first, first + -(-rank_gpus // size)):
            here[j] = here.get(j, 0) + min(rank_gpus, size)
    if len(here) < 2:
        return None
    links = [nodes[j].network_link() for j in here]
    network = LinkSpec(
        name=links[0].name,
        bandwidth_bytes_per_s=min(link.bandwidth_bytes_per_s for link in links),
        latency_s=max(link.latency_s for link in links),
    )
    return GroupSpan(network=network, local_gpus=min(here.values()))


def num_ranks(pool: PoolConfig) -> int:
    """Replicas the engine runs for ``pool``: its replicas x its DP-attention ranks."""
    return pool.replicas * pool.dp_attention


def _fit(nodes: list[NodeSpec], free: list[int], gpu: str, need: int) -> int | None:
    for i, node in enumerate(nodes):
        if node.gpu.name == gpu and need <= node.num_gpus and free[i] >= need:
            free[i] -= need
            return i
    span = -(-need // nodes[0].num_gpus) if nodes else 0
    for i in range(len(nodes) - span + 1):
        group = range(i, i + span)
        is_free = all(nodes[j].gpu.name == gpu and free[j] == nodes[j].num_gpus for j in group)
        if is_free and sum(nodes[j].num_gpus for j in group) >= need:
            for j in group:
                free[j] = 0
            return i
    return None
