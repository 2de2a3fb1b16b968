"""Search dimensions of disaggregated plans: the prefill pool's own PP, weight format and
scheduler knobs, and where the replicas sit (shared server and NVLink, or the network)."""

from __future__ import annotations

import dataclasses

import pytest
from tests.planner.test_cli_plan import SMALL
from typer.testing import CliRunner

from conftest import fixed_workload
from servesim.api import plan_config
from servesim.cli import app
from servesim.cluster import build_deployment
from servesim.core.errors import ConfigError, UnknownNameError
from servesim.perf import default_perf_model
from servesim.planner.analytic import Prefilter
from servesim.planner.deploy import launch_args
from servesim.planner.plan import PlanSpec, SchedulerVariant
from servesim.planner.scenario import Scenario, SLOCriterion, deployment_config, simulate_plan
from servesim.planner.space import SearchSpace, enumerate_plans
from servesim.specs.catalog import resolve_model
from servesim.specs.cluster import get_network

runner = CliRunner()
H100 = "h100-sxm"
FAST = SchedulerVariant(max_num_seqs=64)
KNOB_SPACE = SearchSpace(
    gpus=((H100, 4),),
    tp_options=(1, 2),
    pp_options=(1, 2),
    dtypes=("bf16", "fp8"),
    schedulers=(SchedulerVariant(), FAST),
    disaggregated=True,
    per_phase_knobs=True,
)


def _disagg(space: SearchSpace) -> list[PlanSpec]:
    plans = list(enumerate_plans(space, resolve_model("llama-3.1-8b")))
    assert len({p.key() for p in plans}) == len(plans)  # one key per plan
    return [p for p in plans if p.mode == "disaggregated"]


def test_prefill_pool_takes_its_own_pp_dtype_and_scheduler() -> None:
    plans = _disagg(KNOB_SPACE)
    assert all(n <= 4 for p in plans for n in p.gpus_by_type().values())
    assert {p.prefill_pp for p in plans} == {None, 1, 2}
    assert {p.prefill_dtype for p in plans} == {None, "bf16", "fp8"}
    assert {p.prefill_scheduler for p in plans} == {None, SchedulerVariant(), FAST}
    # A prefill value equal to the decode pool's is written None (no duplicate plans).
    assert not any(p.prefill_pp == p.pp or p.prefill_dtype == p.dtype for p in plans)
    assert not any(p.prefill_scheduler == p.scheduler for p in plans)
    # 1P tp1 pp2 (fp8, 64 seqs) : 1D tp1 pp1 (bf16, 256 seqs) is one of them.
    want = PlanSpec(H100, mode="disaggregated", prefill_replicas=1, prefill_pp=2,
                    prefill_dtype="fp8", prefill_scheduler=FAST)  # fmt: skip
    assert want in plans
    shared = _disagg(dataclasses.replace(KNOB_SPACE, per_phase_knobs=False))
    assert not any(p.prefill_pp or p.prefill_dtype or p.prefill_scheduler for p in shared)
    assert len(plans) > len(shared)


def test_phase_gpus_key_label_and_round_trip_of_prefill_knobs() -> None:
    plan = PlanSpec(H100, tp=2, replicas=2, mode="disaggregated", prefill_replicas=3,
                    prefill_pp=2, prefill_dtype="fp8", prefill_scheduler=FAST)  # fmt: skip
    assert plan.num_gpus == 2 * 2 + 3 * 2 * 2 and plan.gpus_by_type() == {H100: 16}
    pre, dec = plan.phase("prefill"), plan.phase("decode")
    assert (pre.tp, pre.pp, pre.dtype, pre.scheduler, pre.replicas) == (2, 2, "fp8", FAST, 3)
    assert (dec.tp, dec.pp, dec.dtype, dec.scheduler, dec.replicas) == (
        2,
        1,
        "bf16",
        SchedulerVariant(),
        2,
    )
    assert plan.per_phase and "pre-pp2" in plan.key() and "pp2 fp8 seqs=64" in plan.label()
    assert PlanSpec.from_dict(plan.to_dict()) == plan
    # Each pool's launch line carries its own knobs.
    pre_args = launch_args(Scenario("llama-3.1-8b"), plan, "prefill")
    assert "--pipeline-parallel-size" in pre_args and "64" in pre_args
    with pytest.raises(ConfigError):
        PlanSpec(H100, prefill_pp=2)  # colocated plans have no prefill pool


def test_each_pool_is_built_with_its_own_knobs() -> None:
    scenario = Scenario("llama-3.1-8b")
    plan = PlanSpec(H100, mode="disaggregated", prefill_replicas=1, prefill_pp=2,
                    prefill_dtype="fp8", prefill_scheduler=FAST)  # fmt: skip
    deployment = build_deployment(
        deployment_config(scenario, plan), scenario.model, default_perf_model()
    )
    prefill, decode = deployment.pools
    assert (prefill.plan.pp, prefill.plan.weight_dtype.value, prefill.scheduler.max_num_seqs) == (
        2, "fp8", 64,
    )  # fmt: skip
    assert (decode.plan.pp, decode.plan.weight_dtype.value, decode.scheduler.max_num_seqs) == (
        1, "bf16", 256,
    )  # fmt: skip
    # The pre-filter prices the prefill pool with the same replica (one builder).
    pre = Prefilter(scenario, default_perf_model(), scenario.shape())
    assert pre.replica_plan(plan, "prefill") == prefill.plan
    # And the winner's YAML builds the same pools.
    cfg = plan_config(scenario, plan, 1.0)
    again = build_deployment(cfg.effective_deployment(), cfg.model, default_perf_model())
    assert [p.plan for p in again.pools] == [prefill.plan, decode.plan]


def _placed(plan: PlanSpec):
    scenario = Scenario("llama-3.1-8b")
    return build_deployment(deployment_config(scenario, plan), scenario.model, default_perf_model())


def test_pack_shares_a_server_and_spread_crosses_the_network() -> None:
    base = PlanSpec(H100, tp=2, replicas=2, mode="disaggregated", prefill_replicas=1)
    packed = _placed(base)
    assert packed.replica_nodes() == [0, 0, 0] and len(packed.nodes) == 1
    nvlink = packed.link_between(0, 0)
    spread = _placed(dataclasses.replace(base, placement="spread", network="roce-200"))
    assert spread.replica_nodes() == [0, 1, 2]
    link = spread.link_between(0, 1)
    roce = get_network("roce-200")
    assert link.bandwidth_bytes_per_s == pytest.approx(roce.bandwidth_bytes_per_s)
    assert link.bandwidth_bytes_per_s < nvlink.bandwidth_bytes_per_s
    # pack with a network: the usual 8-GPU servers, as many as the GPUs need, on that network.
    big = _placed(dataclasses.replace(base, replicas=4, prefill_replicas=2, network="eth-25"))
    assert len(big.nodes) == 2 and big.nodes[0].network.name == "eth-25"
    # The winner's YAML keeps the servers.
    cfg = plan_config(Scenario("llama-3.1-8b"), dataclasses.replace(base, placement="spread"), 1.0)
    assert cfg.deployment is not None and [n.gpus_per_node for n in cfg.deployment.nodes] == [2, 2]


def test_placement_and_network_search_dimensions() -> None:
    space = SearchSpace(
        gpus=((H100, 32),),
        tp_options=(8,),
        pp_options=(1, 2),
        disaggregated=True,
        per_phase=False,
        placements=("pack", "spread"),
        networks=(None, "roce-200"),
    )
    plans = _disagg(space)
    pp1 = [p for p in plans if p.pp == 1]
    assert {(p.placement, p.network) for p in pp1} == {
        (pl, net) for pl in ("pack", "spread") for net in (None, "roce-200")
    }
    # A 16-GPU replica (tp8 pp2) spans servers whatever the placement: only pack is listed.
    assert {p.placement for p in plans if p.pp == 2} == {"pack"}
    with pytest.raises(UnknownNameError):
        dataclasses.replace(space, networks=("infiniband",))
    with pytest.raises(UnknownNameError):
        dataclasses.replace(space, placements=("scatter",))


def test_spread_over_a_slow_network_delays_the_decode_handoff() -> None:
    """Same plan, same requests: over 25 GbE each 2,048-token prompt's KV (256 MiB for
    Llama-3.1-8B in bf16) takes ~0.1 s more to reach the decode pool than over NVLink, so
    E2E grows by about that, and TTFT (streamed by the prefill pool) does not."""
    scenario = Scenario(
        "llama-3.1-8b",
        workload=fixed_workload(2048, 32),
        criterion=SLOCriterion(ttft_p99_s=10.0),
        requests_per_replica=40,
        min_requests=40,
    )
    base = PlanSpec(H100, mode="disaggregated", prefill_replicas=1)
    perf = default_perf_model()
    runs = {
        placement: simulate_plan(
            scenario, dataclasses.replace(base, placement=placement, network="eth-25"), 1.0, perf
        )
        for placement in ("pack", "spread")
    }
    pack, spread = runs["pack"], runs["spread"]
    kv_bytes = 2048 * resolve_model("llama-3.1-8b").kv_bytes_per_token()  # bf16 KV
    wire_s = kv_bytes / get_network("eth-25").bandwidth_bytes_per_s
    assert wire_s > 0.05
    assert spread.e2e.mean_s - pack.e2e.mean_s == pytest.approx(wire_s, rel=0.5)
    assert spread.ttft.mean_s == pytest.approx(pack.ttft.mean_s, rel=0.02)


def test_cli_searches_placements_and_refuses_an_unknown_network() -> None:
    args = ["plan", *SMALL[:2], "--gpus", "h100-sxm:2", "--tp", "1", "--pp", "1", "--disagg"]
    args += ["--slo-ttft-p99", "2", "--requests-per-replica", "80", "--inline", "--quiet"]
    bad = runner.invoke(app, [*args, "--networks", "infiniband"])
    assert isinstance(bad.exception, UnknownNameError)  # ``main`` prints one line, exits 2
    assert "unknown network 'infiniband'" in str(bad.exception)
    result = runner.invoke(app, [*args, "--placements", "spread", "--networks", "eth-25"])
    assert result.exit_code == 0, result.output
    assert "spread eth-25" in result.output  # the disaggregated plan's label
