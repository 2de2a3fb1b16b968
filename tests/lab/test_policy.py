"""Every policy form becomes the same plain Policy."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.lab import resolve_policy
from tests.lab import policies


def test_a_scheduler_file_and_its_class_resolve_alike(pol: str) -> None:
    by_path = resolve_policy(pol + "Fcfs")
    by_class = resolve_policy(policies.Fcfs)
    assert by_path == by_class
    assert by_path.name == "Fcfs"
    assert by_path.overrides == {
        "scheduler": {"kind": "custom", "path": pol + "Fcfs"},
    }
    assert pickle.loads(pickle.dumps(by_path)) == by_path


def test_routers_names_and_mappings(pol: str) -> None:
    assert resolve_policy(pol + "FirstReplicaRouter").overrides == {
        "router": pol + "FirstReplicaRouter"
    }
    assert resolve_policy("sarathi").overrides == {"scheduler": {"kind": "sarathi"}}
    assert resolve_policy("least_kv_usage").overrides == {"router": "least_kv_usage"}
    knobs = resolve_policy({"scheduler": {"kind": "sarathi", "chunk_size": 256}})
    assert knobs.name == "sarathi" and knobs.overrides["scheduler"]["chunk_size"] == 256
    named = resolve_policy({"name": "mine", "scheduler": "orca", "router": "random"})
    assert named.name == "mine"
    assert named.overrides == {"scheduler": {"kind": "orca"}, "router": "random"}


def test_bad_policies_are_refused(pol: str) -> None:
    with pytest.raises(UnknownNameError, match="unknown policy 'vlm'"):
        resolve_policy("vlm")
    with pytest.raises(ConfigError, match="neither a ReplicaScheduler subclass nor a router"):
        resolve_policy(pol + "NotAPolicy")
    with pytest.raises(ConfigError, match="unknown keys"):
        resolve_policy({"schedular": "vllm"})
    with pytest.raises(ConfigError, match="is not a router"):
        resolve_policy({"router": pol + "Fcfs"})
    with pytest.raises(ConfigError, match="top level"):
        resolve_policy(type("Local", (policies.Fcfs,), {}))


def test_a_policy_file_is_imported_in_a_child_not_in_the_caller(tmp_path: Path) -> None:
    import servesim.lab.objectives as objectives

    original = objectives.run_metrics
    patcher = tmp_path / "patcher.py"
    patcher.write_text(
        "import servesim.lab.objectives as o\n"
        "o.run_metrics = lambda result: {}  # a cheat: every later evaluation would see it\n"
        "from servesim.engine.schedulers import ReplicaScheduler\n"
        "class Patcher(ReplicaScheduler):\n"
        "    def schedule(self, now, state):\n"
        "        return None\n"
    )
    assert resolve_policy(f"{patcher}:Patcher").name == "Patcher"
    assert objectives.run_metrics is original
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no import for you')\n")
    with pytest.raises(ConfigError, match=r"raised RuntimeError while loading.*no import for you"):
        resolve_policy(f"{broken}:Anything")
