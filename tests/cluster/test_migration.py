"""Llumnix-style live migration: requests move off a crowded replica, their KV copy is
counted, every token is still produced exactly once, and decoding gets faster."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
from servesim.engine.records import RejectReason
from servesim.perf import RooflinePerfModel
from servesim.workload.request import Request


def _run(tmp_path: Path, migration: dict | None):  # type: ignore[no-untyped-def]
    router = tmp_path / "first.py"
    router.write_text("class First:\n    def route(self, request, views):\n        return 0\n")
    cfg = DeploymentConfig.model_validate(
        {
            "pools": [{"replicas": 2, "cache": {"num_kv_blocks": 4000}}],
            "router": {"kind": f"{router}:First"},
            "migration": migration,
        }
    )
    perf = RooflinePerfModel()
    reqs = [Request(i, 0.01 * i, 2000, 600) for i in range(24)]
    return run_cluster(
        reqs, build_deployment(cfg, "llama-3.1-8b", perf), perf, check_invariants=True
    )


def test_migration_balances_a_crowded_replica(tmp_path: Path) -> None:
    still = _run(tmp_path, None)
    moved = _run(tmp_path, {"interval_s": 0.5, "kv_usage_gap": 0.2, "max_per_round": 2})
    stats = moved.stats
    assert still.stats.num_migrations == 0 and stats.num_migrations > 0
    # every migration copies at least the prompt's KV (2000 tokens x 128 KiB)
    assert stats.migration_bytes >= stats.num_migrations * 2000 * 131072
    cols = moved.records.requests.view()
    assert (cols["reject_reason"] == RejectReason.NONE).all()
    assert (cols["num_emitted_tokens"] == 600).all()
    # replica 1 did decode work only thanks to migration
    it = moved.records.iterations.view()
    assert (it["replica_id"] == 1).any()
    assert not (still.records.iterations.view()["replica_id"] == 1).any()
    e2e = lambda r: float(np.mean(r.records.requests.view()["completion_s"]))  # noqa: E731
    assert e2e(moved) < e2e(still)
