"""Data-parallel attention with experts shared over the ranks (engine/dp_group.py,
perf/dp_cost.py): lockstep steps, the MoE priced for the summed tokens, per-GPU expert
weights, and the checks of a DP-attention plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from servesim.core.errors import ConfigError
from servesim.engine.dp_group import DUMMY_SHAPE, DPGroupSpec
from servesim.engine.setup import ReplicaSetup
from servesim.engine.simulation import ReplicaView, run_simulation
from servesim.perf.dp_cost import DPGroupCost, GroupSpan
from servesim.perf.memory import check_dp_attention, stage_weight_bytes
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.specs.gpu import LinkSpec
from servesim.workload.request import Request

PERF = RooflinePerfModel()
MOE = resolve_model("qwen3-30b-a3b")  # 128 experts, 48 MoE layers, h 2048, expert FFN 768
RANK = ReplicaPlan(model=MOE, gpu=get_gpu("h100-sxm"), tp=1)


def _prefill(tokens: int) -> BatchShape:
    return BatchShape.from_lists(prefill=[(tokens, 0)])


def _own_s(cost: DPGroupCost, shape: BatchShape) -> float:
    times = cost.iteration_time(RANK, shape)
    return times.overhead_s + times.stage_s[0]


def _run(requests: list[Request], ranks: Sequence[int], dp: int = 2):
    """Requests routed to the given ranks of one dp-rank group."""
    route = dict(zip((r.request_id for r in requests), ranks, strict=True))

    def dispatch(request: Request, views: Sequence[ReplicaView]) -> int:
        return route[request.request_id]

    setups = [ReplicaSetup(plan=RANK)] * dp
    return run_simulation(
        requests,
        setups,
        PERF,
        dispatch=dispatch,
        dp_groups=[DPGroupSpec(0, dp)],
        check_invariants=True,
    )


def test_idle_rank_steps_with_the_busy_rank() -> None:
    # rank 0 prefills 100 tokens from t=0; rank 1 is idle (a dummy step) and gets a request
    # mid-step: it joins the group's next step, which starts when rank 0's first step ends
    recs = _run([Request(0, 0.0, 100, 3), Request(1, 0.001, 40, 2)], ranks=[0, 1])
    cost = DPGroupCost(RANK, 2, PERF.calibration)
    span = max(_own_s(cost, _prefill(100)), _own_s(cost, DUMMY_SHAPE))
    span += cost.experts(100 + DUMMY_SHAPE.num_tokens).stage_s[0]
    it = recs.iterations.view()
    first = it["duration_s"][0]
    assert it["replica_id"][0] == 0
    assert first == pytest.approx(span, rel=1e-12)
    scheduled = recs.requests.column("first_scheduled_s")
    assert scheduled[1] == pytest.approx(span, rel=1e-12)
    # from then on both ranks start and end every step together
    starts = it["start_s"][1:3]
    durations = it["duration_s"][1:3]
    assert sorted(it["replica_id"][1:3]) == [0, 1]
    assert starts[0] == starts[1] and durations[0] == durations[1]


def test_moe_time_is_priced_for_the_summed_tokens() -> None:
    recs = _run([Request(0, 0.0, 100, 2), Request(1, 0.0, 60, 2)], ranks=[0, 1])
    cost = DPGroupCost(RANK, 2, PERF.calibration)
    own = max(_own_s(cost, _prefill(100)), _own_s(cost, _prefill(60)))
    span = own + cost.experts(160).stage_s[0]
    durations = recs.iterations.view()["duration_s"][:2]
    assert durations[0] == durations[1] == pytest.approx(span, rel=1e-12)
    # the shared experts are not the sum of two separate expert steps (weights read once)
    assert cost.experts(160).stage_s[0] < cost.experts(100).stage_s[0] + cost.experts(60).stage_s[0]


def test_group_goes_idle_when_no_rank_has_work() -> None:
    recs = _run([Request(0, 0.0, 20, 2), Request(1, 5.0, 20, 2)], ranks=[0, 1])
    starts = recs.iterations.view()["start_s"]
    # two steps per request (prefill + one decode), no dummy steps recorded, none in between
    assert len(starts) == 4
    assert starts[2] == 5.0
    # the filled rows (column() is the whole backing array, its tail uninitialised)
    completion = recs.requests.view()["completion_s"]
    assert len(completion) == 2 and np.all(np.isfinite(completion))


def test_rank_price_leaves_out_only_the_routed_experts() -> None:
    cost = DPGroupCost(RANK, 8, PERF.calibration)
    shape = BatchShape(
        num_decode_seqs=32, decode_context_tokens=32_000, max_decode_context_tokens=1_000
    )
    rank_ops = {op.name for op in cost.rank_cost.graph.token_ops(32)}
    full_ops = {op.name for op in PERF._cache(RANK).graph.token_ops(32)}
    assert full_ops - rank_ops == {"moe_experts"}
    # fast and general paths agree bit for bit on the rank's graph
    general = DPGroupCost(RANK, 8, PERF.calibration, fast_path=False)
    assert cost.iteration_time(RANK, shape) == general.iteration_time(RANK, shape)
    assert cost.iteration_time(RANK, shape).stage_s[0] < PERF.iteration_time(RANK, shape).stage_s[0]


def test_expert_weights_per_gpu_shrink_by_tp_x_dp() -> None:
    # tp=1 holds all 128 experts; with dp_attention=8 (EP 8) a GPU holds 16 whole experts
    full = stage_weight_bytes(RANK, 0)
    wide = stage_weight_bytes(RANK, 0, expert_ep=8)
    per_expert = 3 * 2048 * 768 * 2  # gate, up, down in bf16
    assert full - wide == 48 * (128 - 16) * per_expert
    # the same expert bytes per GPU as TP8 x EP8 (experts whole there too)
    tp2 = ReplicaPlan(model=MOE, gpu=RANK.gpu, tp=2)
    assert (
        stage_weight_bytes(tp2, 0, expert_ep=16)
        == stage_weight_bytes(tp2, 0) - 48 * (64 - 8) * per_expert
    )


@pytest.mark.parametrize(
    ("plan", "dp", "message"),
    [
        (ReplicaPlan(model=resolve_model("llama-3.1-8b"), gpu=RANK.gpu), 2, "has no experts"),
        (ReplicaPlan(model=MOE, gpu=RANK.gpu, pp=2), 2, "needs pp=1"),
        (ReplicaPlan(model=MOE, gpu=RANK.gpu, tp=2), 3, "EP = tp x dp_attention = 6"),
        (ReplicaPlan(model=MOE, gpu=RANK.gpu), 0, "must be >= 1"),
    ],
)
def test_check_dp_attention_names_value_and_limit(plan: ReplicaPlan, dp: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_dp_attention(plan, dp)


def test_all2all_backends_move_the_tokens_as_vllm_does() -> None:
    # vLLM's default gathers every rank's hidden states to every GPU and reduce-scatters the
    # outputs (T x hidden x 2 bytes each way); deepep/pplx all-to-all the token-expert pairs
    gather = DPGroupCost(RANK, 8, PERF.calibration)
    deepep = DPGroupCost(RANK, 8, PERF.calibration, all2all="deepep_high_throughput")
    view, tokens = gather.expert_view, 256
    nbytes = tokens * 2048 * 2.0
    comm = [
        view.comm("g", "all_gather", 0, 48, 8, nbytes),
        view.comm("rs", "reduce_scatter", 0, 48, 8, nbytes),
    ]
    assert gather.experts(tokens).comm_s == comm[0].time_s + comm[1].time_s
    experts_s = gather.experts(tokens).stage_s[0] - gather.experts(tokens).comm_s
    assert deepep.experts(tokens).stage_s[0] - deepep.experts(tokens).comm_s == pytest.approx(
        experts_s, rel=1e-12
    )
    assert deepep.experts(tokens).comm_s != gather.experts(tokens).comm_s
    with pytest.raises(ConfigError, match="all2all_backend"):
        DPGroupCost(RANK, 8, PERF.calibration, all2all="nccl")


# ib-ndr-400: one 400 Gb/s NIC per GPU = 50 GB/s, 5 us (specs/catalog/networks.yaml)
IB = LinkSpec(name="ib-ndr-400", bandwidth_bytes_per_s=50e9, latency_s=5e-6)
TWO_SERVERS = GroupSpan(network=IB, local_gpus=8)  # 16 ranks of tp=1, 8 on each server


def test_a_group_over_two_servers_rings_its_tokens_over_the_network() -> None:
    # all-gather and reduce-scatter of 100 tokens x 2048 x 2 B over 16 GPUs across the NICs
    # (no H100 table on InfiniBand: the ring's alpha-beta), per layer each:
    # 15 x 5 us + 15/16 x 409,600 B / 50 GB/s = 75 + 7.68 = 82.68 us; 48 layers, two of them
    cost = DPGroupCost(RANK, 16, PERF.calibration, span=TWO_SERVERS)
    assert cost.experts(100).comm_s == pytest.approx(48 * 2 * 82.68e-6, rel=1e-12)
    one_server = DPGroupCost(RANK, 16, PERF.calibration)
    assert one_server.experts(100).comm_s < cost.experts(100).comm_s / 4
    # the experts' own work is where it was
    compute = one_server.experts(100).stage_s[0] - one_server.experts(100).comm_s
    assert cost.experts(100).stage_s[0] - cost.experts(100).comm_s == pytest.approx(compute)


def test_deepep_over_two_servers_sends_the_off_node_half_through_the_nic() -> None:
    # 4096 tokens x top-8 x 2048 x 2 B / 16 GPUs = 8,388,608 B per GPU per all-to-all; half
    # of it (8 of the 16 GPUs are on the other server) crosses the NIC:
    # 5 us + 4,194,304 B / 50 GB/s = 88.88608 us, longer than the NVLink half; x 48 layers x 2
    cost = DPGroupCost(RANK, 16, PERF.calibration, all2all="deepep_low_latency", span=TWO_SERVERS)
    off_s = 5e-6 + 4_194_304 / 50e9
    on = cost.expert_view.comm("on", "all_to_all", 0, 1, 8, 8_388_608 * 8 / 16)
    assert on.time_s < off_s
    assert cost.experts(4096).comm_s == pytest.approx(48 * 2 * off_s, rel=1e-12)
    with pytest.raises(ConfigError, match="local_gpus"):
        DPGroupCost(RANK, 16, PERF.calibration, span=GroupSpan(network=IB, local_gpus=16))


DSV3 = resolve_model("deepseek-v3")  # 3 dense layers of FFN 18432 before 58 MoE, h 7168
DSV3_RANK = ReplicaPlan(model=DSV3, gpu=RANK.gpu, tp=1)


def test_sglang_s_dense_layers_run_over_the_whole_group() -> None:
    # dense_mlp="group": the rank drops its dense MLP; the group runs it at TP 8 on the 100
    # gathered tokens: per GPU 2 x 100 x 7168 x (2 x 2304) (up+gate) + 2 x 100 x 2304 x 7168
    # (down) FLOPs per layer, 3 layers
    group = DPGroupCost(DSV3_RANK, 8, PERF.calibration, dense_mlp="group")
    rank = DPGroupCost(DSV3_RANK, 8, PERF.calibration)
    names = {op.name for op in group.rank_cost.graph.token_ops(100)}
    assert not names & {"mlp_up_gate", "mlp_down", "all_reduce_mlp"}
    assert {"mlp_up_gate", "mlp_down"} <= {op.name for op in rank.rank_cost.graph.token_ops(100)}
    extra = group.experts(100).flops - rank.experts(100).flops
    assert extra == pytest.approx(3 * 2 * 100 * 7168 * 2304 * 3, rel=1e-12)


def test_moe_dense_tp_size_1_keeps_the_whole_mlp_on_each_gpu() -> None:
    # replicated at tp=2: each GPU runs the whole FFN (no all-reduce) on ceil(101 / 2) = 51
    # tokens: up+gate 2 x 51 x 7168 x 36864 FLOPs per layer, 3 layers
    plan = replace(DSV3_RANK, tp=2)
    cost = DPGroupCost(plan, 4, PERF.calibration, dense_mlp="replicated")
    ops = {op.name: op for op in cost.rank_cost.graph.token_ops(101)}
    assert "all_reduce_mlp" not in ops
    assert ops["mlp_up_gate"].flops == 2 * 51 * 7168 * 36864 * 3
    with pytest.raises(ConfigError, match="dense_mlp"):
        DPGroupCost(plan, 4, PERF.calibration, dense_mlp="tp")


def test_dense_weights_per_gpu_follow_the_mode() -> None:
    # bf16, 3 dense layers x 3 matrices x 7168 x 18432: split 8 ways ("group") instead of
    # the rank's 1, or whole ("replicated") instead of the rank's 2
    dense = 3 * 3 * 7168 * 18432 * 2
    wide = stage_weight_bytes(DSV3_RANK, 0, expert_ep=8)
    assert wide - stage_weight_bytes(DSV3_RANK, 0, expert_ep=8, dense_tp=8) == dense * 7 // 8
    tp2 = replace(DSV3_RANK, tp=2)
    whole = stage_weight_bytes(tp2, 0, expert_ep=8, dense_tp=1)
    assert whole - stage_weight_bytes(tp2, 0, expert_ep=8) == dense // 2
