"""Cluster serving: replica pools behind admission control and a router, prefill/decode
disaggregation with KV transfer, autoscaling, live migration and MoE expert placement, driven
on top of the engine through its hooks.

Public API::

    from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
    dep = build_deployment(DeploymentConfig(pools=[{"replicas": 4}]), "llama-3.1-8b", perf)
    run = run_cluster(requests, dep, perf)      # run.records, run.stats
"""

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
