"""Scheduler behaviour on small, hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servesim.core.errors import UnknownNameError
from servesim.engine import (
    SCHEDULERS,
    CustomSchedulerConfig,
    FairSchedulerConfig,
    OrcaSchedulerConfig,
    PrioritySchedulerConfig,
    SarathiSchedulerConfig,
    StaticSchedulerConfig,
    VLLMSchedulerConfig,
)
from servesim.engine.schedulers.vllm import VLLMScheduler, prefix_caching_default
from tests.engine.fakes import (
    ConstantPerf,
    LinearPerf,
    assert_all_served,
    poisson_requests,
    req,
    rows,
    run,
    setup,
)


def _stall_workload() -> list:
    # four long decodes, then a 4000-token prompt arrives while they run
    return [req(i, 0.0, 20, 60) for i in range(4)] + [req(4, 0.1, 4000, 2)]


def test_long_prompt_stalls_decodes_under_vllm_not_sarathi() -> None:
    perf = LinearPerf(a=0.01, b=1e-4, c=0.0)
    unchunked = VLLMSchedulerConfig(enable_chunked_prefill=False)
    vllm = rows(run(_stall_workload(), perf, setup(unchunked, num_kv_blocks=2000)))
    sarathi = rows(
        run(
            _stall_workload(),
            perf,
            setup(SarathiSchedulerConfig(chunk_size=512), num_kv_blocks=2000),
        )
    )
    prefill_s = 0.01 + 4000 * 1e-4  # the whole prompt in one iteration
    # vLLM (chunked prefill off): the decodes wait for the whole prefill iteration
    assert vllm["max_tbt_s"][:4].min() >= prefill_s
    # Sarathi: each gap is one mixed iteration of at most 512 tokens
    assert sarathi["max_tbt_s"][:4].max() <= 0.01 + 512 * 1e-4 + 1e-9
    # ...and the long prompt still finishes (later TTFT is the price)
    assert sarathi["first_token_s"][4] > vllm["first_token_s"][4]


def test_vllm_prefill_first_hand_computed() -> None:
    # constant 0.1 s iterations: both prompts in one prefill step, then decode steps
    requests = [req(0, 0.0, 10, 3), req(1, 0.0, 10, 2), req(2, 0.15, 10, 1)]
    unchunked = setup(VLLMSchedulerConfig(enable_chunked_prefill=False))
    recs = run(requests, ConstantPerf(0.1), unchunked)
    cols = rows(recs)
    # t=0-0.1 prefill r0,r1; 0.1-0.2 decode (r1 done); r2 arrived: 0.2-0.3 prefill r2 (done);
    # 0.3-0.4 decode r0 (done)
    np.testing.assert_allclose(cols["first_token_s"], [0.1, 0.1, 0.3])
    np.testing.assert_allclose(cols["completion_s"], [0.4, 0.2, 0.3])
    np.testing.assert_allclose(cols["max_tbt_s"], [0.2, 0.1, 0.0])
    np.testing.assert_allclose(cols["sum_tbt_s"], [0.3, 0.1, 0.0])
    values, weights = recs.token_gaps.arrays()
    assert weights.sum() == 2 + 1  # r0's two gaps, r1's one
    np.testing.assert_allclose(np.dot(values, weights), 0.4)


def test_vllm_chunked_prefill_budget_and_v1() -> None:
    for cfg in (
        VLLMSchedulerConfig(enable_chunked_prefill=True),
        VLLMSchedulerConfig(version="v1", max_num_batched_tokens=512),
    ):
        recs = run([req(0, 0.0, 1200, 2)], ConstantPerf(0.1), setup(cfg))
        cols = rows(recs)
        # 1200 tokens in chunks of 512: three iterations to the first token
        np.testing.assert_allclose(cols["first_token_s"], [0.3])
        it = recs.iterations.view()
        assert list(it["num_prefill_tokens"][:3]) == [512, 512, 176]
    assert VLLMSchedulerConfig(version="v1").kind == "vllm"


def test_vllm_preempts_under_memory_pressure() -> None:
    requests = [req(i, 0.0, 50, 100) for i in range(4)]  # peak 149 tokens = 10 blocks each
    recs = run(requests, LinearPerf(), setup(num_kv_blocks=24))
    assert_all_served(recs)
    cols = rows(recs)
    assert recs.counters["num_preemptions"] > 0
    assert cols["num_preemptions"].sum() == recs.counters["num_preemptions"]
    assert recs.counters["num_recompute_preemptions"] == recs.counters["num_preemptions"]
    # vLLM preempts the most recently admitted request first
    assert cols["num_preemptions"][3] >= 1 and cols["num_preemptions"][0] == 0


def test_static_hand_computed() -> None:
    requests = [req(0, 0.0, 10, 2), req(1, 0.0, 10, 4), req(2, 0.05, 10, 1)]
    cols = rows(run(requests, ConstantPerf(0.1), setup(StaticSchedulerConfig(max_num_seqs=2))))
    # batch {r0, r1}: prefill 0-0.1, decodes to 0.4 (r1's 4th token); r2 waits for the batch
    np.testing.assert_allclose(cols["completion_s"], [0.2, 0.4, 0.5])
    np.testing.assert_allclose(cols["first_scheduled_s"], [0.0, 0.0, 0.4])


def test_orca_hand_computed_and_reservation() -> None:
    requests = [req(0, 0.0, 10, 2), req(1, 0.0, 10, 4), req(2, 0.05, 10, 1)]
    cols = rows(run(requests, ConstantPerf(0.1), setup(OrcaSchedulerConfig())))
    # iteration-level: r2's prompt joins the decodes in the 0.1-0.2 iteration
    np.testing.assert_allclose(cols["completion_s"], [0.2, 0.4, 0.2])
    # whole-request reservation: 30 + 30 tokens = 4 blocks of 16, the replica has 4
    pair = [req(0, 0.0, 30, 30), req(1, 0.0, 30, 30)]
    orca = rows(run(pair, ConstantPerf(0.1), setup(OrcaSchedulerConfig(), num_kv_blocks=4)))
    assert orca["first_scheduled_s"][1] == pytest.approx(orca["completion_s"][0])
    paged = rows(run(pair, ConstantPerf(0.1), setup(num_kv_blocks=5)))
    assert paged["first_scheduled_s"][1] == 0.0  # vLLM pages: both start at once


def test_priority_preempts_lower_priority() -> None:
    requests = [req(0, 0.0, 10, 50, priority=0), req(1, 0.5, 10, 5, priority=5)]
    cfg = PrioritySchedulerConfig(max_num_seqs=1)
    cols = rows(run(requests, ConstantPerf(0.1), setup(cfg)))
    assert cols["num_preemptions"][0] == 1 and cols["num_preemptions"][1] == 0
    assert cols["completion_s"][1] < cols["completion_s"][0]
    assert cols["first_scheduled_s"][1] == pytest.approx(0.5, abs=0.11)
    # under FCFS the urgent request waits for the long one
    fcfs = rows(run(requests, ConstantPerf(0.1), setup(VLLMSchedulerConfig(max_num_seqs=1))))
    assert fcfs["completion_s"][1] > fcfs["completion_s"][0]


def test_priority_swap_charges_time() -> None:
    requests = [req(0, 0.0, 100, 50), req(1, 0.55, 10, 5, priority=5)]
    cfg = PrioritySchedulerConfig(max_num_seqs=1)
    recs = run(requests, ConstantPerf(0.1), setup(cfg, preemption_mode="swap"))
    assert recs.counters["num_swap_outs"] == 1 and recs.counters["num_swap_ins"] == 1
    assert recs.counters["swap_out_blocks"] == 7  # 100 + 5 generated tokens, 16 per block
    it = recs.iterations.view()
    extra = float((it["duration_s"] - 0.1 * it["repeat"]).sum())
    per_block = 16 * 131072 / 63e9  # block bytes over H100 PCIe 5 host link
    assert extra == pytest.approx(14 * per_block + 2 * 5e-6, rel=1e-6)


def test_fair_balances_two_users() -> None:
    # user 0 floods the queue first; user 1's requests arrive just after
    requests = [req(i, 0.0, 50, 20, user_id=0) for i in range(30)]
    requests += [req(30 + i, 0.001, 50, 20, user_id=1) for i in range(10)]
    fair = rows(run(requests, ConstantPerf(0.1), setup(FairSchedulerConfig(max_num_seqs=4))))
    fcfs = rows(run(requests, ConstantPerf(0.1), setup(VLLMSchedulerConfig(max_num_seqs=4))))
    user1 = np.arange(40) >= 30
    assert fair["first_scheduled_s"][user1].mean() < 0.5 * fcfs["first_scheduled_s"][user1].mean()
    # while both are backlogged, admissions alternate between the users
    order = np.argsort(fair["first_scheduled_s"], kind="stable")[:20]
    assert 8 <= user1[order].sum() <= 12


def test_unknown_scheduler_and_user_scheduler_from_path(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="did you mean"):
        SCHEDULERS.get("vllmm")
    plugin = tmp_path / "my_sched.py"
    plugin.write_text(
        "from servesim.engine import ReplicaScheduler\n"
        "class OneAtATime(ReplicaScheduler):\n"
        "    '''Runs one request to completion at a time.'''\n"
        "    def schedule(self, now, state):\n"
        "        if state.num_decoding:\n"
        "            seq = state.decoding()[0]\n"
        "            state.allocate_decode(seq)\n"
        "            return self.make_batch(state, [], [seq])\n"
        "        prefills = []\n"
        "        if not state.running:\n"
        "            self.admit_waiting(now, state, 10**9, prefills)\n"
        "        return self.make_batch(state, prefills, [])\n"
    )
    cfg = CustomSchedulerConfig(path=f"{plugin}:OneAtATime")
    requests = [req(0, 0.0, 10, 3), req(1, 0.0, 10, 2)]
    cols = rows(run(requests, ConstantPerf(0.1), setup(cfg)))
    # both prompts prefilled together; r1 decodes only once r0 is done
    np.testing.assert_allclose(cols["completion_s"], [0.3, 0.4])
    np.testing.assert_allclose(cols["max_tbt_s"], [0.1, 0.3])


def test_docstring_example_scheduler_runs(tmp_path: Path) -> None:
    import ast
    import textwrap

    from servesim.engine.schedulers import base

    # from the source: a compiled module (mypyc) keeps no module docstring
    source = Path(base.__file__).with_name("base.py").read_text()
    doc = ast.get_docstring(ast.parse(source))
    assert doc is not None
    example = doc.split("::\n\n", 1)[1]
    plugin = tmp_path / "my_sched.py"
    plugin.write_text("from servesim.engine import ReplicaScheduler\n" + textwrap.dedent(example))
    cfg = CustomSchedulerConfig(path=f"{plugin}:MyScheduler", max_num_batched_tokens=256)
    requests = poisson_requests(60, 20.0, (10, 1500), (1, 40), seed=4)
    assert_all_served(run(requests, LinearPerf(), setup(cfg, num_kv_blocks=300)))


@pytest.mark.parametrize(
    ("context", "chunked", "budget"),
    [(131_072, True, 512), (32_768, False, 32_768), (8_192, False, 8_192), (1_024, False, 2048)],
)
def test_v0_chunked_prefill_defaults_to_vllm_06_rule(
    context: int, chunked: bool, budget: int
) -> None:
    # vLLM 0.6: unset --enable-chunked-prefill turns it on above a 32K context, budget 512;
    # otherwise the budget is max(max_model_len, 2048).
    scheduler = VLLMScheduler(
        VLLMSchedulerConfig(enable_chunked_prefill=None), max_model_len=context
    )
    assert scheduler.is_chunked is chunked
    assert scheduler.token_budget == budget


def test_explicit_chunked_prefill_and_budget_win_over_the_rule() -> None:
    off = VLLMScheduler(VLLMSchedulerConfig(enable_chunked_prefill=False), max_model_len=131_072)
    assert not off.is_chunked and off.token_budget == 131_072
    on = VLLMSchedulerConfig(enable_chunked_prefill=True, max_num_batched_tokens=2048)
    assert VLLMScheduler(on, max_model_len=4096).token_budget == 2048
    v1 = VLLMScheduler(VLLMSchedulerConfig(version="v1"), max_model_len=4096)
    assert v1.is_chunked and v1.token_budget == 8192


def test_prefix_caching_defaults_on_for_v1_only() -> None:
    # vLLM V1 (>= 0.8) caches prefixes unless told not to; V0 (0.6) only when asked.
    hashes = tuple(range(4))
    requests = [
        req(i, float(i), 64, 2, prefix_block_hashes=hashes, prefix_block_size=16) for i in range(2)
    ]

    def hits(config: VLLMSchedulerConfig, **cache: object) -> int:
        return int(
            rows(run(requests, LinearPerf(), setup(config, **cache)))["num_prefix_hit_tokens"].sum()
        )

    assert hits(VLLMSchedulerConfig(version="v1")) == 48
    assert hits(VLLMSchedulerConfig()) == 0
    assert hits(VLLMSchedulerConfig(version="v1"), enable_prefix_caching=False) == 0
    assert hits(VLLMSchedulerConfig(), enable_prefix_caching=True) == 48
    assert not prefix_caching_default(SarathiSchedulerConfig())
