"""A draft model's weights and KV count in the deployment check: a target that fits alone but
not beside its draft is refused before the run, the message naming both with figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.cli import main
from servesim.engine.config import SpeculativeConfig
from servesim.engine.speculative import draft_memory_problem
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import ReplicaPlan
from servesim.specs import get_gpu, resolve_model

# Llama-3.1-8B in bf16 (8.03B parameters: 14.96 GiB) fits a 24 GiB A10 (21.6 GiB usable at
# utilization 0.9); Llama-3.2-3B as its draft adds 3.21B parameters (5.98 GiB): together
# 20.94 GiB of weights, which with the profiling pass's activations leaves no KV block.
YAML = """model: llama-3.1-8b
hardware:
  gpu: a10
speculative:
  method: draft
  draft_model: {draft}
  num_speculative_tokens: 4
workload:
  num_requests: 5
"""


def _plan() -> ReplicaPlan:
    return ReplicaPlan(model=resolve_model("llama-3.1-8b"), gpu=get_gpu("a10"))


def test_target_fits_alone_but_not_beside_its_draft() -> None:
    perf = RooflinePerfModel()
    assert perf.memory_plan(_plan()).num_kv_blocks > 0
    config = SpeculativeConfig(method="draft", draft_model="llama-3.2-3b")
    problem = draft_memory_problem(_plan(), config, perf)
    assert problem is not None
    assert "target weights 14.96 GiB" in problem and "draft weights 5.98 GiB" in problem
    small = SpeculativeConfig(method="draft", draft_model="llama-3.2-1b")
    assert draft_memory_problem(_plan(), small, perf) is None


def test_simulate_refuses_it_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(YAML.format(draft="llama-3.2-3b"))
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--config", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "llama-3.1-8b + draft llama-3.2-3b on a10" in err
    assert "target weights 14.96 GiB + draft weights 5.98 GiB" in err
    assert "Traceback" not in err
