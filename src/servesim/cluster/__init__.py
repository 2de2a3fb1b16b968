"""Cluster serving: replica pools behind admission control and a router, prefill/decode
disaggregation with KV transfer, autoscaling, live migration and MoE expert placement, driven
on top of the engine through its hooks.

Public API::

    from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
    dep = build_deployment(DeploymentConfig(pools=[{"replicas": 4}]), "llama-3.1-8b", perf)
    run = run_cluster(requests, dep, perf)      # run.records, run.stats

The names load on first use (``servesim.core.lazy``): importing one cluster module does not
load the others (the live cluster and expert placement only when used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servesim.core.lazy import lazy_exports

if TYPE_CHECKING:
    from servesim.cluster.admission import ADMISSION_POLICIES, AdmissionPolicy
    from servesim.cluster.config import (
        AdmissionConfig,
        AutoscaleConfig,
        DeploymentConfig,
        MigrationConfig,
        NodeGroupConfig,
        PoolConfig,
        RouterConfig,
        TransferConfig,
    )
    from servesim.cluster.deployment import Deployment, DeploymentError, Pool, build_deployment
    from servesim.cluster.live import LiveCluster
    from servesim.cluster.placement import PLACEMENTS, ExpertPlacement
    from servesim.cluster.routers import ROUTERS, Router, RouterContext, make_router
    from servesim.cluster.runner import ClusterRun, run_cluster
    from servesim.cluster.scaling import SCALING_POLICIES, PoolState, ScalingPolicy
    from servesim.cluster.stats import ClusterStats
    from servesim.cluster.transfer import kv_transfer_bytes, kv_transfer_s

# name -> the module (under servesim.cluster) that defines it
_EXPORTS = {
    "ADMISSION_POLICIES": "admission",
    "AdmissionPolicy": "admission",
    "AdmissionConfig": "config",
    "AutoscaleConfig": "config",
    "DeploymentConfig": "config",
    "MigrationConfig": "config",
    "NodeGroupConfig": "config",
    "PoolConfig": "config",
    "RouterConfig": "config",
    "TransferConfig": "config",
    "Deployment": "deployment",
    "DeploymentError": "deployment",
    "Pool": "deployment",
    "build_deployment": "deployment",
    "LiveCluster": "live",
    "PLACEMENTS": "placement",
    "ExpertPlacement": "placement",
    "ROUTERS": "routers",
    "Router": "routers",
    "RouterContext": "routers",
    "make_router": "routers",
    "ClusterRun": "runner",
    "run_cluster": "runner",
    "SCALING_POLICIES": "scaling",
    "PoolState": "scaling",
    "ScalingPolicy": "scaling",
    "ClusterStats": "stats",
    "kv_transfer_bytes": "transfer",
    "kv_transfer_s": "transfer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ADMISSION_POLICIES",
    "PLACEMENTS",
    "ROUTERS",
    "SCALING_POLICIES",
    "AdmissionConfig",
    "AdmissionPolicy",
    "AutoscaleConfig",
    "ClusterRun",
    "ClusterStats",
    "Deployment",
    "DeploymentConfig",
    "DeploymentError",
    "ExpertPlacement",
    "LiveCluster",
    "MigrationConfig",
    "NodeGroupConfig",
    "Pool",
    "PoolConfig",
    "PoolState",
    "Router",
    "RouterConfig",
    "RouterContext",
    "ScalingPolicy",
    "TransferConfig",
    "build_deployment",
    "kv_transfer_bytes",
    "kv_transfer_s",
    "make_router",
    "run_cluster",
]
