"""Cluster serving: replica pools behind a router, prefill/decode disaggregation with KV
transfer, autoscaling and live migration, driven on top of the engine through its hooks.

Public API::

    from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
    dep = build_deployment(DeploymentConfig(pools=[{"replicas": 4}]), "llama-3.1-8b", perf)
    run = run_cluster(requests, dep, perf)      # run.records, run.stats
"""

from servesim.cluster.config import (
    AutoscaleConfig,
    DeploymentConfig,
    MigrationConfig,
    NodeGroupConfig,
    PoolConfig,
    RouterConfig,
    TransferConfig,
)
from servesim.cluster.deployment import Deployment, DeploymentError, Pool, build_deployment
from servesim.cluster.routers import ROUTERS, Router, RouterContext, make_router
from servesim.cluster.runner import ClusterRun, run_cluster
from servesim.cluster.stats import ClusterStats
from servesim.cluster.transfer import kv_transfer_bytes, kv_transfer_s

__all__ = [
    "ROUTERS",
    "AutoscaleConfig",
    "ClusterRun",
    "ClusterStats",
    "Deployment",
    "DeploymentConfig",
    "DeploymentError",
    "MigrationConfig",
    "NodeGroupConfig",
    "Pool",
    "PoolConfig",
    "Router",
    "RouterConfig",
    "RouterContext",
    "TransferConfig",
    "build_deployment",
    "kv_transfer_bytes",
    "kv_transfer_s",
    "make_router",
    "run_cluster",
]
