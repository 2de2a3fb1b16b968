"""CPU-GPU hybrid execution (``engine.hybrid``): hand-computed iteration times, the two split
policies, the KV pool growing by host memory, and GPU-only results untouched."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.core.errors import ConfigError
from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig
from servesim.engine.config import HybridConfig
from servesim.engine.hybrid import HybridExecutor
from servesim.perf.types import BatchShape, ReplicaPlan, StageTimes
from servesim.specs import get_gpu, resolve_model
from servesim.specs.dtypes import DType
from tests.engine.fakes import LinearPerf, poisson_requests, rows, run

# Llama-2-7B fp16 on a T4 (PCIe 3.0 host link: 15.75 GB/s, 5 us) with the g4dn host CPU
# (Xeon 8259CL: 140.8 GB/s, fp32 3.84 TFLOP/s), efficiencies 0.5:
KV_BYTES_PER_TOKEN = 2 * 32 * 32 * 128 * 2  # K and V, 32 layers, 32 heads x 128, fp16
CPU_BYTES_PER_S = 140.8e9 * 0.5


def _transfer_s(num_cpu_decodes: int) -> float:
    """Per layer: q, k, v out and the output back (4 x 4096 fp16 values a decode) in two
    messages of 5 us latency each."""
    return 32 * (num_cpu_decodes * 4 * 4096 * 2 / 15.75e9 + 2 * 5e-6)


def _plan() -> ReplicaPlan:
    return ReplicaPlan(
        model=resolve_model("llama-2-7b"),
        gpu=get_gpu("t4"),
        weight_dtype=DType.FP16,
        activation_dtype=DType.FP16,
        kv_dtype=DType.FP16,
    )


def _executor(num_gpu_blocks: int = 10_000, **cfg: object) -> HybridExecutor:
    ex = HybridExecutor(HybridConfig(**cfg), _plan(), block_size=16)  # type: ignore[arg-type]
    ex.num_gpu_blocks = num_gpu_blocks
    return ex


def _gpu(a: float, c: float) -> Callable[[BatchShape], StageTimes]:
    """GPU part = a + c x (keys the GPU attends)."""
    return lambda shape: StageTimes(stage_s=(a + c * shape.decode_context_tokens,))


def _shape(contexts: list[int]) -> BatchShape:
    return BatchShape.from_lists(decode_contexts=contexts)


def test_cpu_part_hidden_under_gpu_part_hand_computed() -> None:
    # fixed 0.5 of 4 decodes: the CPU takes the last two (4,000 keys)
    contexts = [1000, 1000, 2000, 2000]
    ex = _executor(policy="fixed", cpu_fraction=0.5)
    step = ex.step(_shape(contexts), contexts, 0, _gpu(0.05, 1e-6))
    cpu_s = 4000 * KV_BYTES_PER_TOKEN / CPU_BYTES_PER_S  # 29.8 ms, bandwidth-bound
    gpu_s = 0.05 + 1e-6 * 2000  # the GPU attends the first two only
    assert step.num_cpu_decodes == 2
    assert step.cpu_s == pytest.approx(cpu_s, rel=1e-12)
    assert step.transfer_s == pytest.approx(_transfer_s(2), rel=1e-12)
    assert step.times.stage_s[0] == pytest.approx(gpu_s + _transfer_s(2))


def test_gpu_waits_for_a_slower_cpu_hand_computed() -> None:
    contexts = [4000] * 4
    ex = _executor(policy="fixed", cpu_fraction=0.75)
    step = ex.step(_shape(contexts), contexts, 0, _gpu(0.02, 0.0))
    cpu_s = 3 * 4000 * KV_BYTES_PER_TOKEN / CPU_BYTES_PER_S  # 89.4 ms > 20 ms
    assert step.num_cpu_decodes == 3
    assert step.times.stage_s[0] == pytest.approx(cpu_s + _transfer_s(3))
    assert step.times.stage_s[0] == pytest.approx(
        max(step.gpu.stage_s[0], step.cpu_s) + step.transfer_s, rel=1e-15
    )


def test_apex_offloads_while_the_cpu_part_fits_under_the_gpu_part() -> None:
    # 1,000 keys cost the CPU 7.45 ms; a constant 50 ms GPU part hides 6 of them, not 7
    contexts = [1000] * 10
    step = _executor().step(_shape(contexts), contexts, 0, _gpu(0.05, 0.0))
    assert step.num_cpu_decodes == 6
    assert step.cpu_s <= step.gpu.stage_s[0]
    assert 7 * 1000 * KV_BYTES_PER_TOKEN / CPU_BYTES_PER_S > 0.05


def test_apex_never_offloads_when_nothing_is_hidden() -> None:
    contexts = [1000] * 4
    step = _executor().step(_shape(contexts), contexts, 0, _gpu(0.001, 0.0))
    assert step.num_cpu_decodes == 0
    assert step.times == StageTimes(stage_s=(0.001,))


def test_kv_beyond_the_gpu_goes_to_the_cpu_whatever_the_policy() -> None:
    # 100 GPU blocks, 163 used: the excess 63 blocks need the last two decodes (32 + 63 > 63)
    contexts = [512, 512, 1000, 512]  # 32, 32, 63, 32 blocks of 16
    ex = _executor(num_gpu_blocks=100, policy="fixed", cpu_fraction=0.0)
    step = ex.step(_shape(contexts), contexts, 163, _gpu(0.001, 0.0))
    assert step.num_cpu_decodes == 2
    assert step.cpu_s == pytest.approx(1512 * KV_BYTES_PER_TOKEN / CPU_BYTES_PER_S)


def test_more_sockets_share_the_attention() -> None:
    contexts = [1000] * 4
    one = _executor(policy="fixed", cpu_fraction=1.0).step(
        _shape(contexts), contexts, 0, _gpu(0.05, 0.0)
    )
    two = _executor(policy="fixed", cpu_fraction=1.0, num_sockets=2).step(
        _shape(contexts), contexts, 0, _gpu(0.05, 0.0)
    )
    assert two.cpu_s == pytest.approx(one.cpu_s / 2)


def test_multi_gpu_replicas_are_refused() -> None:
    with pytest.raises(ConfigError, match="single-GPU"):
        HybridExecutor(HybridConfig(), dataclasses.replace(_plan(), tp=2), 16)


# ---- in the engine ------------------------------------------------------------------------
def _setup(hybrid: HybridConfig | None) -> ReplicaSetup:
    return ReplicaSetup(
        plan=_plan(), scheduler=VLLMSchedulerConfig(), cache=CacheConfig(), hybrid=hybrid
    )


def test_host_memory_grows_the_kv_pool() -> None:
    perf = LinearPerf(num_kv_blocks=200, kv_bytes_per_token=KV_BYTES_PER_TOKEN)
    reqs = poisson_requests(5, 1.0, 64, 8)
    gpu_only = run(reqs, perf, _setup(None))
    host = 2**30  # 1 GiB of 8 MiB blocks
    hybrid = run(reqs, perf, _setup(HybridConfig(host_kv_bytes=host)))
    assert gpu_only.replicas[0].num_kv_blocks == 200
    assert hybrid.replicas[0].num_kv_blocks == 200 + host // (16 * KV_BYTES_PER_TOKEN)


def test_no_offload_gives_the_gpu_only_results() -> None:
    perf = LinearPerf(num_kv_blocks=400, kv_bytes_per_token=KV_BYTES_PER_TOKEN)
    reqs = poisson_requests(40, 4.0, (16, 300), (4, 200), seed=3)
    base = rows(run(reqs, perf, _setup(None)))
    off = HybridConfig(host_kv_bytes=0, policy="fixed", cpu_fraction=0.0)
    same = rows(run(reqs, perf, _setup(off)))
    for key, col in base.items():
        np.testing.assert_array_equal(col, same[key], err_msg=key)


def test_hybrid_serves_more_under_memory_pressure() -> None:
    # GPU KV for ~2 long sequences; hybrid's host blocks let the batch grow
    perf = LinearPerf(a=0.04, b=1e-5, c=1e-8, num_kv_blocks=200)
    perf.kv_bytes_per_token = KV_BYTES_PER_TOKEN
    reqs = poisson_requests(30, 10.0, 200, 1000, seed=1)
    gpu_only = run(reqs, perf, _setup(None))
    hybrid = run(reqs, perf, _setup(HybridConfig(host_kv_bytes=8 * 2**30)))
    end_gpu = rows(gpu_only)["completion_s"].max()
    end_hybrid = rows(hybrid)["completion_s"].max()
    assert end_hybrid < 0.7 * end_gpu
    assert hybrid.counters["hybrid_cpu_decodes"] > 0
    assert "hybrid_cpu_decodes" not in gpu_only.counters


def test_overlap_admission_hand_computed() -> None:
    # a 16-token block of host KV costs the CPU 16 x 512 KiB / 70.4 GB/s = 0.119 ms: a 50 ms
    # GPU decode part hides 419 host blocks, not 420
    ex = _executor(num_gpu_blocks=100)
    ex.last_decode_gpu_s = 0.05
    assert ex.cpu_s_per_block == pytest.approx(16 * KV_BYTES_PER_TOKEN / CPU_BYTES_PER_S)
    assert ex.can_admit(100 + 419, num_running=3)
    assert not ex.can_admit(100 + 420, num_running=3)
    assert ex.can_admit(100 + 420, num_running=0)  # an idle engine always takes one
    assert _executor(num_gpu_blocks=100, admission="memory").can_admit(10**6, num_running=3)


def test_step_records_the_gpu_decode_part_without_prefills() -> None:
    ex = _executor(policy="fixed", cpu_fraction=0.0)
    shape = BatchShape.from_lists(prefill=[(512, 0)], decode_contexts=[1000, 1000])
    ex.step(shape, [1000, 1000], 0, lambda s: StageTimes(stage_s=(0.01 + 1e-4 * s.num_tokens,)))
    assert ex.last_decode_gpu_s == pytest.approx(0.01 + 1e-4 * 2)


def test_overlap_admission_keeps_the_cpu_hidden() -> None:
    # a 20 ms GPU part: overlap caps the batch at 26 of 40 (at 40 ms the cap, 39, barely bound
    # and KV moves over the host link tipped it to 40)
    perf = LinearPerf(a=0.02, b=1e-5, c=1e-8, num_kv_blocks=200)
    perf.kv_bytes_per_token = KV_BYTES_PER_TOKEN
    reqs = poisson_requests(40, 20.0, 200, 600, seed=2)
    by_memory = run(reqs, perf, _setup(HybridConfig(host_kv_bytes=8 * 2**30, admission="memory")))
    overlap = run(reqs, perf, _setup(HybridConfig(host_kv_bytes=8 * 2**30)))
    batch = {k: r.iterations.view()["num_decode_seqs"].max() for k, r in
             (("memory", by_memory), ("overlap", overlap))}  # fmt: skip
    assert batch["overlap"] < batch["memory"]
    gap = {k: float(np.mean(rows(r)["max_tbt_s"])) for k, r in
           (("memory", by_memory), ("overlap", overlap))}  # fmt: skip
    assert gap["overlap"] < gap["memory"]


@given(
    contexts=st.lists(st.integers(1, 4000), min_size=1, max_size=24),
    num_excess=st.integers(-50, 400),
    a=st.floats(1e-4, 0.2),
    policy=st.sampled_from(["apex", "fixed"]),
    fraction=st.floats(0.0, 1.0),
)
@settings(max_examples=60, deadline=None)
def test_split_properties(
    contexts: list[int], num_excess: int, a: float, policy: str, fraction: float
) -> None:
    ex = _executor(num_gpu_blocks=100, policy=policy, cpu_fraction=fraction)
    step = ex.step(_shape(contexts), contexts, 100 + num_excess, _gpu(a, 1e-6))
    n = step.num_cpu_decodes
    assert 0 <= n <= len(contexts)
    host_blocks = sum(-(-c // 16) for c in contexts[len(contexts) - n :])
    if n < len(contexts):  # the CPU holds what the GPU cannot, unless every decode is there
        assert host_blocks >= num_excess
    expected = max(step.gpu.stage_s[0], step.cpu_s) + step.transfer_s
    assert step.times.stage_s[0] == pytest.approx(expected, rel=1e-12)
    if policy == "apex" and n and host_blocks - -(-contexts[len(contexts) - n] // 16) >= num_excess:
        # offloaded beyond the memory minimum: only while hidden under the GPU part
        assert step.cpu_s <= step.gpu.stage_s[0]
