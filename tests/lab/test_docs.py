"""The worked examples of docs/policies.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from servesim.lab import evaluate

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


def _examples() -> dict[str, str]:
    found = re.findall(r"```python\n# (\w+)\.py\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return {name: code for name, code in found}


@pytest.mark.parametrize(
    ("name", "cls"), [("spf", "ShortestPromptFirst"), ("jsq_prefix", "ShortestKVWithAffinity")]
)
def test_a_worked_example_evaluates(tmp_path: Path, tiny: str, name: str, cls: str) -> None:
    path = tmp_path / f"{name}.py"
    path.write_text(_examples()[name], encoding="utf-8")
    score = evaluate(f"{path}:{cls}", tiny, seeds=[0])
    assert score.is_valid, score.line()


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(_examples()[name], encoding="utf-8")
    return path


def test_the_admission_example_sheds_load_in_the_lab(tmp_path: Path, busy: str) -> None:
    path = _write(tmp_path, "kv_headroom")
    score = evaluate(
        {"admission": {"kind": f"{path}:KVHeadroom", "options": {"max_kv_usage": 0.3}}},
        busy,
        seeds=[0],
    )
    assert score.is_valid, score.line()
    assert score.per_scenario()["chat-small"]["completed_fraction"] < 1.0  # it rejected some


def test_the_eviction_example_keeps_the_books(tmp_path: Path) -> None:
    from servesim.engine.blocks import KVBlockManager

    path = _write(tmp_path, "keep_heads")
    blocks = KVBlockManager(
        3, 16, watermark=0.0, enable_prefix_caching=True, eviction=f"{path}:KeepHeads"
    )
    blocks.allocate(3)
    for key in (1, 2, 3):
        assert blocks.register(key)
    blocks.deref([1, 2, 3])  # one prompt: depths 0, 1, 2
    blocks.allocate(2)  # the two deepest go
    assert [blocks.count_hits([k], 1) for k in (1, 2, 3)] == [1, 0, 0]
    blocks.check()


def test_the_autoscaling_example_scales_a_pool(tmp_path: Path) -> None:
    from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
    from servesim.perf import RooflinePerfModel
    from servesim.workload.request import Request

    path = _write(tmp_path, "queue_delay")
    perf = RooflinePerfModel()
    autoscale = {"min_replicas": 1, "policy": f"{path}:QueueDelay", "interval_s": 1.0}
    autoscale["options"] = {"max_delay_s": 0.2}
    cfg = DeploymentConfig.model_validate({"pools": [{"replicas": 3, "autoscale": autoscale}]})
    reqs = [Request(i, 0.01 * i, 2048, 64) for i in range(600)]
    run = run_cluster(reqs, build_deployment(cfg, "llama-3.1-8b", perf), perf)
    assert run.stats.num_scale_ups >= 1


def test_the_placement_example_prices_below_contiguous(tmp_path: Path) -> None:
    from servesim.cluster import DeploymentConfig, build_deployment
    from servesim.perf import RooflinePerfModel
    from servesim.perf.types import BatchShape

    path = _write(tmp_path, "pair_hot_cold")
    perf = RooflinePerfModel()
    pool = {"gpu": "h100-sxm", "tp": 4, "ep": 4, "expert_zipf_exponent": 1.2}
    step = BatchShape.from_lists(decode_contexts=[1024] * 256)
    times = []
    for extra in ({}, {"expert_placement": f"{path}:PairHotCold"}):
        cfg = DeploymentConfig.model_validate({"pools": [{**pool, **extra}]})
        plan = build_deployment(cfg, "qwen3-30b-a3b", perf).pools[0].plan
        times.append(perf.iteration_time(plan, step).total_s)
    assert times[1] < times[0]
