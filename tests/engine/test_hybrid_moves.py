"""KV moves of the CPU-GPU hybrid split (``engine.hybrid``): a sequence that changes side
pays its KV bytes over the host link, hand-computed; the CPU set is kept across steps so
sequences move only when the count changes, and the cheapest move."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig
from servesim.engine.config import HybridConfig
from servesim.engine.hybrid import HybridExecutor
from servesim.perf.cpu import kv_move_s
from servesim.perf.types import BatchShape, ReplicaPlan, StageTimes
from servesim.specs import get_gpu, resolve_model
from servesim.specs.dtypes import DType
from tests.engine.fakes import LinearPerf, poisson_requests, run

# Llama-2-7B fp16 on a T4: K and V of 32 layers x 32 heads x 128 in fp16 per token; the T4's
# host link is PCIe 3.0 x16 (15.75 GB/s per direction, 5 us per message, gpus.yaml)
KV_BYTES_PER_TOKEN = 2 * 32 * 32 * 128 * 2  # 524,288 B
PCIE3_BYTES_PER_S, PCIE3_LATENCY_S = 15.75e9, 5e-6
BLOCK = 16


def _executor(**cfg: object) -> HybridExecutor:
    plan = ReplicaPlan(
        model=resolve_model("llama-2-7b"),
        gpu=get_gpu("t4"),
        weight_dtype=DType.FP16,
        activation_dtype=DType.FP16,
        kv_dtype=DType.FP16,
    )
    ex = HybridExecutor(HybridConfig(**cfg), plan, block_size=BLOCK)  # type: ignore[arg-type]
    ex.num_gpu_blocks = 10_000
    return ex


def _gpu(a: float) -> Callable[[BatchShape], StageTimes]:
    return lambda shape: StageTimes(stage_s=(a,))


def _step(ex: HybridExecutor, contexts: list[int], ids: list[int], used: int = 0):
    shape = BatchShape.from_lists(decode_contexts=contexts)
    return ex.step(shape, contexts, used, _gpu(0.05), ids)


def test_a_sequence_moved_to_the_cpu_pays_its_kv_over_the_host_link() -> None:
    ex = _executor(policy="fixed", cpu_fraction=0.5)
    step = _step(ex, [1024, 1024], [1, 2])  # the CPU takes the last decode (id 2)
    kv_bytes = 1024 * KV_BYTES_PER_TOKEN  # 0.5 GiB = 64 blocks of 16 tokens
    move_s = kv_bytes / PCIE3_BYTES_PER_S + PCIE3_LATENCY_S  # 34.09 ms
    assert move_s == pytest.approx(34.092e-3, rel=1e-4)
    assert (step.num_cpu_decodes, step.num_moved) == (1, 1)
    assert step.move_s == pytest.approx(move_s, rel=1e-12)
    parts = max(step.gpu.stage_s[0], step.cpu_s) + step.transfer_s
    assert step.times.stage_s[0] == pytest.approx(parts + move_s, rel=1e-12)
    assert ex.cpu_side == frozenset({2})
    # the next step keeps the split: nothing moves, nothing is charged
    again = _step(ex, [1025, 1025], [1, 2])
    assert (again.num_moved, again.move_s) == (0, 0.0)
    assert again.times.stage_s[0] == pytest.approx(
        max(again.gpu.stage_s[0], again.cpu_s) + again.transfer_s, rel=1e-12
    )


def test_the_cpu_keeps_its_sequences_when_a_new_decode_joins() -> None:
    ex = _executor(policy="fixed", cpu_fraction=0.34)
    _step(ex, [800, 800, 800], [1, 2, 3])  # floor(0.34 x 3) = 1: id 3 to the CPU
    assert ex.cpu_side == frozenset({3})
    # a fourth decode joins at the end; floor(0.34 x 4) = 1 still: id 3 stays, 4 stays put
    step = _step(ex, [801, 801, 801, 100], [1, 2, 3, 4])
    assert (step.num_cpu_decodes, step.num_moved, step.move_s) == (1, 0, 0.0)
    assert ex.cpu_side == frozenset({3})


def test_the_shortest_host_kv_goes_back_first_hand_computed() -> None:
    ex = _executor(policy="fixed", cpu_fraction=1.0)
    _step(ex, [2000, 500], [1, 2])
    assert ex.cpu_side == frozenset({1, 2})
    ex.config = HybridConfig(policy="fixed", cpu_fraction=0.5)
    step = _step(ex, [2001, 501], [1, 2])
    assert ex.cpu_side == frozenset({1})  # the 2,001-token KV stays on the host
    blocks = -(-501 // BLOCK)  # 32 blocks of id 2 back to the GPU
    hand = blocks * BLOCK * KV_BYTES_PER_TOKEN / PCIE3_BYTES_PER_S + PCIE3_LATENCY_S
    assert (step.num_moved, step.move_s) == (1, pytest.approx(hand, rel=1e-12))


def test_finished_sequences_leave_the_set_and_prefill_only_steps_change_nothing() -> None:
    ex = _executor(policy="fixed", cpu_fraction=0.5)
    _step(ex, [640, 640], [1, 2])
    shape = BatchShape.from_lists(prefill=[(512, 0)])
    step = ex.step(shape, [], 0, _gpu(0.05), [])  # a prefill-only step (vLLM v0)
    assert (step.num_moved, ex.cpu_side) == (0, frozenset({2}))
    _step(ex, [641, 100], [1, 3])  # id 2 finished; id 3 is new and goes to the CPU
    assert ex.cpu_side == frozenset({3})


def test_without_ids_every_step_splits_afresh_and_moves_are_free() -> None:
    ex = _executor(policy="fixed", cpu_fraction=0.5)
    contexts = [1024, 1024]
    step = ex.step(BatchShape.from_lists(decode_contexts=contexts), contexts, 0, _gpu(0.05))
    assert (step.num_moved, step.move_s) == (0, 0.0)


def test_the_two_directions_copy_at_once() -> None:
    link = get_gpu("t4").host_link
    to_host, to_gpu = 2e9, 1e9
    assert kv_move_s(to_host, to_gpu, link) == pytest.approx(
        to_host / PCIE3_BYTES_PER_S + PCIE3_LATENCY_S, rel=1e-12
    )
    assert kv_move_s(0.0, to_gpu, link) == pytest.approx(to_gpu / PCIE3_BYTES_PER_S + 5e-6)
    assert kv_move_s(0.0, 0.0, link) == 0.0


CPU_S_PER_TOKEN = KV_BYTES_PER_TOKEN / (140.8e9 * 0.5)  # g4dn host at 50%: 7.447 us


def test_apex_sizes_the_host_set_against_the_decode_part() -> None:
    # GPU part 10 ms + 0.1 ms a token: 61.6 ms with a 512-token prefill chunk, 10.4 ms without
    ex = _executor(policy="apex")
    shape = BatchShape.from_lists(prefill=[(512, 0)], decode_contexts=[1000] * 4)
    step = ex.step(
        shape,
        [1000] * 4,
        0,
        lambda s: StageTimes(stage_s=(0.01 + 1e-4 * s.num_tokens,)),
        [1, 2, 3, 4],
    )
    # one decode's CPU part, 7.4 ms, fits under 10.4 ms; two (14.9 ms) do not. Against the
    # whole step all four (29.8 ms) would, and the next decode-only step would send three back
    cpu_one_s = 1000 * CPU_S_PER_TOKEN
    assert cpu_one_s == pytest.approx(7.447e-3, rel=1e-3)
    assert step.num_cpu_decodes == 1 and ex.cpu_side == frozenset({4})


def test_apex_keeps_the_host_set_until_its_overrun_pays_for_the_copy() -> None:
    ex = _executor(policy="apex")  # GPU part a flat 50 ms
    _step(ex, [3000, 3000], [1, 2])  # 2 x 22.3 ms of CPU fit under 50 ms: both to the host
    assert ex.cpu_side == frozenset({1, 2})
    step = _step(ex, [3400, 3400], [1, 2])  # 2 x 25.3 = 50.6 ms > 50: the rule says n = 1
    per_decode_transfer = 32 * 4 * 4096 * 2 / PCIE3_BYTES_PER_S  # q, k, v, out per layer
    overrun = (2 * 3400 * CPU_S_PER_TOKEN - 0.05) + per_decode_transfer  # 0.65 ms
    back = -(-3400 // BLOCK) * BLOCK * KV_BYTES_PER_TOKEN / PCIE3_BYTES_PER_S + 5e-6  # 113 ms
    assert overrun < back
    assert (step.num_cpu_decodes, step.num_moved) == (2, 0)  # kept: renting is cheaper
    assert ex.overrun_s == pytest.approx(overrun, rel=1e-9)
    ex.overrun_s = back  # the rent paid so far reaches the copy: the next overrun shrinks
    step = _step(ex, [3401, 3401], [1, 2])
    assert (step.num_cpu_decodes, step.num_moved, ex.overrun_s) == (1, 1, 0.0)
    assert step.move_s == pytest.approx(
        -(-3401 // BLOCK) * BLOCK * KV_BYTES_PER_TOKEN / PCIE3_BYTES_PER_S + 5e-6, rel=1e-12
    )


def test_the_engine_charges_a_new_decode_its_copy_to_the_host() -> None:
    # one request, prompt 64, every decode on the CPU: the prefill runs on the GPU, then the
    # first decode step copies the KV's 5 blocks (65 tokens after the first output token)
    plan = _executor().plan
    setup = ReplicaSetup(
        plan=plan,
        scheduler=VLLMSchedulerConfig(),
        cache=CacheConfig(),
        hybrid=HybridConfig(policy="fixed", cpu_fraction=1.0),
    )
    perf = LinearPerf(a=0.02, b=1e-5, c=1e-8, num_kv_blocks=200)
    perf.kv_bytes_per_token = KV_BYTES_PER_TOKEN
    records = run(poisson_requests(1, 1.0, 64, 4), perf, setup)
    steps = records.iterations.view()
    assert list(steps["num_decode_seqs"]) == [0, 1, 1, 1]
    move_s = 5 * BLOCK * KV_BYTES_PER_TOKEN / PCIE3_BYTES_PER_S + PCIE3_LATENCY_S  # 2.668 ms
    # GPU part 20.01 ms (the CPU's 0.5 ms hidden) + q/k/v copies; the same in later steps
    later = steps["duration_s"][2]
    assert later == pytest.approx(0.02001 + 32 * (4 * 4096 * 2 / PCIE3_BYTES_PER_S + 1e-5))
    assert steps["duration_s"][1] == pytest.approx(later + move_s, rel=1e-9)
    assert records.counters["hybrid_kv_moves"] == 1
