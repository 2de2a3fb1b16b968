"""The engine's contracts on policies: each broken rule stops the run with a one-line
``ContractError`` naming the policy, the rule, the value and the limit (also under -O)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from servesim.engine import CustomSchedulerConfig
from servesim.engine.contracts import ContractError, check_route
from servesim.engine.simulation import run_simulation
from tests.engine.fakes import ConstantPerf, LinearPerf, req, setup

HEADER = "from servesim.engine import ReplicaScheduler, Batch\n"

# Each plug-in breaks one rule; the rest of its schedule() is a correct FCFS step.
PLUGINS = {
    "token-budget": """
        class Greedy(ReplicaScheduler):
            is_chunked = True
            def schedule(self, now, state):
                decodes = self.decode_step(state, 10**9)
                prefills = []
                # admits whole prompts, ignoring the token budget
                self.admit_waiting(now, state, 10**9, prefills)
                return self.make_batch(state, prefills, decodes)
        """,
    "max-num-seqs": """
        class Crowd(ReplicaScheduler):
            def schedule(self, now, state):
                decodes = self.decode_step(state, self.token_budget)
                prefills = []
                while state.waiting:  # admits everyone, ignoring max_num_seqs (and budget)
                    seq = state.waiting.popleft()
                    state.admit(seq, now)
                    state.allocate_chunk(seq, seq.num_prefill_remaining)
                    prefills.append((seq, seq.num_prefill_remaining))
                return self.make_batch(state, prefills, decodes)
        """,
    "duplicate-sequence": """
        class Twice(ReplicaScheduler):
            def schedule(self, now, state):
                decodes = self.decode_step(state, self.token_budget)
                prefills = []
                self.admit_waiting(now, state, self.token_budget - len(decodes), prefills)
                return self.make_batch(state, prefills, decodes + decodes[:1])
        """,
    "decode-kv": """
        class NoBlocks(ReplicaScheduler):
            def schedule(self, now, state):
                decodes = state.decoding()  # never allocates the decode blocks
                prefills = []
                self.admit_waiting(now, state, self.token_budget - len(decodes), prefills)
                return self.make_batch(state, prefills, decodes)
        """,
    "kv-capacity": """
        class Hog(ReplicaScheduler):
            def schedule(self, now, state):
                state.blocks.allocate(state.blocks.num_available + 1)
                return None
        """,
    "batch-type": """
        class FortyTwo(ReplicaScheduler):
            def schedule(self, now, state):
                return 42
        """,
    "decode-state": """
        class Stranger(ReplicaScheduler):
            def schedule(self, now, state):
                prefills = []
                self.admit_waiting(now, state, self.token_budget, prefills)
                batch = self.make_batch(state, prefills, [])
                if batch is not None:
                    # the first one is still prefilling, yet claimed as a decode
                    batch.decodes, batch.prefills = [prefills[0][0]], prefills[1:]
                return batch
        """,
    "state-mutation": """
        class Dropper(ReplicaScheduler):
            def schedule(self, now, state):
                decodes = self.decode_step(state, self.token_budget)
                prefills = []
                self.admit_waiting(now, state, self.token_budget - len(decodes), prefills)
                if decodes:
                    del state.running[decodes[-1]]  # drops a request behind the state's back
                    decodes = decodes[:-1]
                return self.make_batch(state, prefills, decodes)
        """,
    "kv-accounting": """
        class Forger(ReplicaScheduler):
            def schedule(self, now, state):
                state.blocks.num_free += 5  # mints blocks
                decodes = self.decode_step(state, self.token_budget)
                prefills = []
                self.admit_waiting(now, state, self.token_budget - len(decodes), prefills)
                return self.make_batch(state, prefills, decodes)
        """,
}
EXPECTED = {
    "token-budget": "batch of 200 tokens exceeds the token budget 128",
    "max-num-seqs": "batch of 3 sequences exceeds max_num_seqs 2",
    "duplicate-sequence": "decodes twice",
    "decode-kv": "decodes need 1 new KV blocks but 0 were allocated",
    "kv-capacity": "asked for 1,001 KV blocks with 1,000 available",
    "batch-type": "schedule returned 42, not a Batch or None",
    "decode-state": "is not a decoding sequence",
    "state-mutation": "running != ",
    "kv-accounting": "KV pool books broken: 996 free + 9 used + 0 cached != 1,000 blocks",
}


def _plugin(tmp_path: Path, rule: str) -> str:
    body = textwrap.dedent(PLUGINS[rule])
    path = tmp_path / f"{rule.replace('-', '_')}.py"
    path.write_text(HEADER + body)
    cls = body.split("class ", 1)[1].split("(", 1)[0]
    return f"{path}:{cls}"


def _run(spec: str) -> None:
    cfg = CustomSchedulerConfig(path=spec, max_num_batched_tokens=128, max_num_seqs=2)
    # three 100-token prompts arriving together, 20 output tokens each
    requests = [req(i, 0.0, 100, 20) for i in range(3)]
    run_simulation(requests, [setup(cfg)], ConstantPerf(0.01), check_invariants=False)


@pytest.mark.parametrize("rule", sorted(PLUGINS))
def test_each_broken_rule_names_policy_rule_value_and_limit(tmp_path: Path, rule: str) -> None:
    spec = _plugin(tmp_path, rule)
    with pytest.raises(ContractError) as info:
        _run(spec)
    err = info.value
    assert err.rule == rule
    assert err.policy == f"scheduler {spec}"
    message = str(err)
    assert message.startswith(f"scheduler {spec}: ")
    assert EXPECTED[rule] in message, message
    assert " at t=" in message and message.endswith(" s")
    assert "\n" not in message


def test_contracts_hold_under_python_O(tmp_path: Path) -> None:
    # checks are raises, not asserts: the same errors with assertions stripped
    specs = {rule: _plugin(tmp_path, rule) for rule in PLUGINS}
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from servesim.engine.contracts import ContractError
        from tests.engine.test_contracts import _run
        specs = {specs!r}
        for rule, spec in specs.items():
            try:
                _run(spec)
            except ContractError as exc:
                assert exc.rule == rule  # stripped under -O; the print is the check
                print(exc.rule)
            else:
                print("no error", rule)
        """
    )
    out = subprocess.run(
        [sys.executable, "-O", "-c", script], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == list(specs), out.stdout + out.stderr


def test_built_in_schedulers_keep_every_contract() -> None:
    # a busy run of each built-in kind: checks are on for them too, and nothing trips
    from servesim.engine import (
        FairSchedulerConfig,
        OrcaSchedulerConfig,
        PrioritySchedulerConfig,
        SarathiSchedulerConfig,
        VLLMSchedulerConfig,
    )
    from tests.engine.fakes import poisson_requests

    requests = poisson_requests(300, 60.0, (16, 900), (1, 120), seed=3)
    for cfg in (
        VLLMSchedulerConfig(),
        VLLMSchedulerConfig(version="v1", max_num_batched_tokens=256),
        SarathiSchedulerConfig(chunk_size=256),
        OrcaSchedulerConfig(),
        PrioritySchedulerConfig(),
        FairSchedulerConfig(chunk_size=256),
    ):
        recs = run_simulation(
            requests, [setup(cfg, num_kv_blocks=200)], LinearPerf(), check_invariants=False
        )
        assert np.isfinite(recs.requests.column("completion_s")[: len(requests)]).all()


@pytest.mark.parametrize(
    ("index", "detail"),
    [
        (5, "route returned 5, outside 0..2"),
        (-1, "route returned -1, outside 0..2"),
        ("zero", "route returned 'zero', not a replica index"),
        (True, "route returned True, not a replica index"),
        (1.0, "route returned 1.0, not a replica index"),
    ],
)
def test_router_index_contract(index: object, detail: str) -> None:
    with pytest.raises(ContractError) as info:
        check_route("router my.py:R", index, 3, 1.5)
    assert info.value.rule == "router-index"
    assert str(info.value) == f"router my.py:R: {detail} at t=1.500 s"
    assert check_route("router r", np.int64(2), 3, 0.0) == 2


def test_dispatch_out_of_range_stops_the_run() -> None:
    from servesim.engine import VLLMSchedulerConfig

    two = [setup(VLLMSchedulerConfig()), setup(VLLMSchedulerConfig())]
    with pytest.raises(ContractError, match=r"dispatch: route returned 2, outside 0\.\.1"):
        run_simulation([req(0, 0.0, 8, 2)], two, ConstantPerf(0.01), dispatch=lambda r, v: 2)
