"""The scheduler contract is declared on the class, set once: built-in trust is a class
statement flag that a user subclass never inherits, and a scheduler's own preemption mode is
fixed at construction (vLLM V1 no longer rewrites the state's mode every step)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.engine import CustomSchedulerConfig, ReplicaScheduler, VLLMSchedulerConfig
from servesim.engine.contracts import ContractError
from servesim.engine.preemption import FixedPreemption
from servesim.engine.schedulers import (
    FairScheduler,
    OrcaScheduler,
    PriorityScheduler,
    SarathiScheduler,
    StaticScheduler,
    VLLMScheduler,
)
from servesim.engine.simulation import run_simulation
from tests.engine.fakes import ConstantPerf, req, setup

#: what the user scheduler of the hooks test records (its file imports this list)
HOOK_CALLS: list[str] = []


def test_only_servesims_own_classes_are_built_in() -> None:
    for cls in (
        VLLMScheduler,
        SarathiScheduler,
        OrcaScheduler,
        StaticScheduler,
        PriorityScheduler,
        FairScheduler,
    ):
        assert cls.is_builtin, cls

    class Mine(VLLMScheduler):
        pass

    assert not ReplicaScheduler.is_builtin
    assert not Mine.is_builtin  # never inherited


def test_a_user_subclass_of_a_built_in_is_scanned(tmp_path: Path) -> None:
    # decodes one sequence twice: caught only by the per-decode scan, which a built-in skips
    path = tmp_path / "twice.py"
    path.write_text(
        "from servesim.engine import VLLMSchedulerConfig\n"
        "from servesim.engine.schedulers import VLLMScheduler\n"
        "class Twice(VLLMScheduler):\n"
        "    def __init__(self, config, *, max_model_len):\n"
        "        v1 = VLLMSchedulerConfig(version='v1', max_num_seqs=config.max_num_seqs)\n"
        "        super().__init__(v1, max_model_len=max_model_len)\n"
        "    def schedule(self, now, state):\n"
        "        batch = super().schedule(now, state)\n"
        "        if batch is not None and batch.decodes:\n"
        "            batch.decodes = batch.decodes + batch.decodes[:1]\n"
        "        return batch\n"
    )
    cfg = CustomSchedulerConfig(path=f"{path}:Twice", max_num_seqs=8)
    requests = [req(i, 0.0, 100, 20) for i in range(3)]
    with pytest.raises(ContractError) as info:
        run_simulation(requests, [setup(cfg)], ConstantPerf(0.01), check_invariants=False)
    assert info.value.rule == "duplicate-sequence"


def test_preemption_mode_is_declared_once() -> None:
    v1 = VLLMScheduler(VLLMSchedulerConfig(version="v1"), max_model_len=4096)
    v0 = VLLMScheduler(VLLMSchedulerConfig(), max_model_len=4096)
    assert v1.preemption_mode == "recompute"
    assert v0.preemption_mode is None  # the cache config decides
    records = run_simulation(
        [req(i, 0.0, 50, 100) for i in range(4)],
        [setup(VLLMSchedulerConfig(version="v1"), num_kv_blocks=24, preemption_mode="swap")],
        ConstantPerf(0.01),
        check_invariants=True,
    )
    assert records.counters["num_preemptions"] > 0
    assert "num_swap_outs" not in records.counters
    assert FixedPreemption("recompute").mode == "recompute"


def test_a_user_schedulers_batch_and_queue_hooks_run_every_step(tmp_path: Path) -> None:
    # the engine skips the hooks only for FCFS with the base class's (no-op) hooks
    path = tmp_path / "hooks.py"
    path.write_text(
        "from servesim.engine import VLLMSchedulerConfig\n"
        "from servesim.engine.schedulers import VLLMScheduler\n"
        "from tests.engine.test_scheduler_contract import HOOK_CALLS\n"
        "class Hooks(VLLMScheduler):\n"
        "    def __init__(self, config, *, max_model_len):\n"
        "        v1 = VLLMSchedulerConfig(version='v1', max_num_seqs=config.max_num_seqs)\n"
        "        super().__init__(v1, max_model_len=max_model_len)\n"
        "    def on_batch_done(self, batch, now):\n"
        "        HOOK_CALLS.append('batch')\n"
        "    def num_queued(self, state):\n"
        "        HOOK_CALLS.append('queued')\n"
        "        return super().num_queued(state)\n"
    )
    cfg = CustomSchedulerConfig(path=f"{path}:Hooks", max_num_seqs=8)
    HOOK_CALLS.clear()
    requests = [req(i, 0.01 * i, 300, 20) for i in range(12)]
    records = run_simulation(requests, [setup(cfg)], ConstantPerf(), skip_ahead=False)
    num_steps = len(records.iterations.view()["repeat"])
    assert num_steps > 12 and HOOK_CALLS.count("batch") == num_steps  # once per step
    assert HOOK_CALLS.count("queued") >= num_steps  # each batch's queue count asks it
