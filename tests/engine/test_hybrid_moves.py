"""KV moves of the CPU-GPU hybrid split (``engine.hybrid``): a sequence that changes side
pays its KV bytes over the host link, hand-computed; the CPU set is kept across steps so
sequences move only when the count changes, and the cheapest move."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from servesim.engine.config import HybridConfig
from servesim.engine.hybrid import HybridExecutor
from servesim.perf.cpu import kv_move_s
from servesim.perf.types import BatchShape, ReplicaPlan, StageTimes
from servesim.specs import get_gpu, resolve_model
from servesim.specs.dtypes import DType

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
