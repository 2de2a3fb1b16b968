"""Eager custom all-reduce: the input's copy into the registered IPC buffer (``eager_copy_s``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servesim.perf.calibration import load_calibration
from servesim.perf.comm import custom_all_reduce_runs, eager_all_reduce_copy_s
from servesim.perf.graph import PlanGraph
from servesim.perf.kernel_set import KernelSet
from servesim.perf.opmodels.collectives import eager_copy_s, volume_factor
from servesim.perf.types import ReplicaPlan
from servesim.specs import resolve_model
from servesim.specs.catalog.gpus import get_gpu
from servesim.specs.gpu import LinkSpec

H100, A100 = get_gpu("h100-sxm"), get_gpu("a100-80gb")


def test_eager_copy_reads_and_writes_the_input_once_at_hbm_bandwidth() -> None:
    # 8 MB on H100: 2 x 8e6 B / 3.35e12 B/s = 4.776 us; on A100 (2.039 TB/s) 7.847 us
    assert eager_copy_s(H100, 8e6) == pytest.approx(2 * 8e6 / 3.35e12)
    assert eager_copy_s(H100, 8e6) == pytest.approx(4.776e-6, rel=1e-3)
    assert eager_copy_s(A100, 8e6) == pytest.approx(7.847e-6, rel=1e-3)
    assert eager_copy_s(H100, 0.0) == 0.0


@pytest.mark.parametrize("key, gpu", [("h100", H100), ("a100", A100)])
@pytest.mark.parametrize("num_gpus", [2, 4, 8])
def test_eager_tables_bulk_slope_is_the_graph_slope_plus_the_copy(key, gpu, num_gpus) -> None:
    """Fitted bulk seconds per bus byte, eager minus graph, against the copy's 2 / HBM per byte
    of the tensor (H100 0.27 / 0.19 / 0.17 fitted against 0.27 / 0.18 / 0.15 at 2 / 4 / 8)."""
    stacks = json.loads(Path(load_calibration().path).read_text()).get("kernel_stacks", {})
    custom = stacks.get("vllm-0.24", {}).get(key, {}).get("collectives", {}).get("custom")
    # both GPUs' fits ship: a calibration without one is a regression, not a skip
    assert custom, f"the shipped calibration lost its vLLM custom all-reduce fit for {key}"
    bulk = {
        f["implementation"]: f["segments"][-1][1]
        for f in custom["fits"]
        if f["num_gpus"] == num_gpus
    }
    link = gpu.intra_node_link.bandwidth_bytes_per_s
    # link_over_bus of the copy: (2 / HBM) seconds per tensor byte, in bus bytes over the link
    copy = eager_copy_s(gpu, 1.0) * link / volume_factor("all_reduce", num_gpus)
    assert bulk["custom_eager"] - bulk["custom_graph"] == pytest.approx(copy, rel=0.35)


# ---- the runtime prices the eager path ------------------------------------------------------
def _kernels(gpu: str = "h100-sxm") -> KernelSet:
    return KernelSet(load_calibration(), "vllm-0.24", get_gpu(gpu))


def test_an_eager_custom_all_reduce_adds_the_input_copy_to_the_graph_time() -> None:
    kernels = _kernels()
    link = H100.intra_node_link
    # 1 MiB over 4 H100s: the custom kernel runs (< 8 MiB, NVSwitch); eager adds
    # 2 x 1,048,576 B / 3.35e12 B/s = 0.6260 us
    graph, ok = kernels.collective_s(link, "all_reduce", 4, 2**20, True, graph=True)
    eager, _ = kernels.collective_s(link, "all_reduce", 4, 2**20, True, graph=False)
    assert ok and graph > 0
    assert eager - graph == pytest.approx(0.6260e-6, rel=1e-3)
    # at the 8 MiB limit vLLM hands the tensor to NCCL (``inp_size < max_size``): no copy
    big = 8 * 2**20
    assert kernels.collective_s(link, "all_reduce", 4, big, True, graph=False) == (
        kernels.collective_s(link, "all_reduce", 4, big, True, graph=True)
    )
    # NCCL all-reduce (custom all-reduce off) and other collectives copy nothing
    for collective, custom in (("all_reduce", False), ("all_gather", True)):
        assert kernels.collective_s(link, collective, 4, 2**20, custom, graph=False) == (
            kernels.collective_s(link, collective, 4, 2**20, custom, graph=True)
        )


def test_custom_all_reduce_runs_where_vllm_enables_it() -> None:
    pcie = get_gpu("l40s").intra_node_link
    assert custom_all_reduce_runs(H100.intra_node_link, 8, 2**20)
    assert custom_all_reduce_runs(pcie, 2, 2**20)  # a PCIe pair: world_size == 2
    assert not custom_all_reduce_runs(pcie, 4, 2**20)  # > 2 PCIe-only GPUs: disabled
    assert not custom_all_reduce_runs(H100.intra_node_link, 3, 2**20)  # unsupported size
    assert not custom_all_reduce_runs(H100.intra_node_link, 8, 8 * 2**20)
    # a TP group across nodes runs NCCL: no copy on a link other than the node's own
    ib = LinkSpec("ib-ndr-400", 50e9, 5e-6)
    assert eager_all_reduce_copy_s(H100, ib, 8, 2**20) == 0.0
    assert eager_all_reduce_copy_s(H100, H100.intra_node_link, 8, 2**20) == pytest.approx(
        2 * 2**20 / 3.35e12
    )


def _all_reduce_s(tokens: int, **kw: object) -> float:
    plan = ReplicaPlan(
        resolve_model("llama-3.1-8b"),
        H100,
        tp=2,
        host_profile="vllm-v1",
        kernel_stack="vllm-0.24",
        **kw,
    )
    ops = PlanGraph(plan, load_calibration()).token_ops(tokens)
    return sum(op.time_s for op in ops if op.name == "all_reduce_attn")


def test_steps_beyond_the_captured_graph_sizes_price_the_eager_copy() -> None:
    # llama-3.1-8b (hidden 4096, 32 layers), TP 2 on H100 under vllm-v1 (graphs <= 512 tokens):
    # the attention all-reduce of 1024 tokens is 1024 x 4096 x 2 B = 8 MiB: NCCL, no copy;
    # of 512 tokens 4 MiB: graph-captured, no copy; enforce-eager copies 32 x 2 x 4 MiB / 3.35e12
    per_layer_copy = 2 * 512 * 4096 * 2 / 3.35e12  # 2.504 us
    graph = _all_reduce_s(512)
    eager = _all_reduce_s(512, use_cuda_graphs=False)
    assert eager - graph == pytest.approx(32 * per_layer_copy, rel=1e-6)
    assert _all_reduce_s(1024, use_cuda_graphs=False) == _all_reduce_s(1024)
    # 768 tokens (6 MiB, above the 512 captured) run eagerly even with graphs on
    copy_768 = 32 * 2 * 768 * 4096 * 2 / 3.35e12
    assert _all_reduce_s(768) - _all_reduce_s(768, use_cuda_graphs=False) == 0.0
    link = H100.intra_node_link
    graph_768 = 32 * _kernels().collective_s(link, "all_reduce", 2, 768 * 8192, True)[0]
    assert _all_reduce_s(768) == pytest.approx(graph_768 + copy_768, rel=1e-9)


def test_the_op_query_prices_an_eager_all_reduce() -> None:
    from servesim.perf import op_time_s

    shape = {"num_gpus": 4, "num_bytes": 2**20}
    graph = op_time_s("h100-sxm", "all-reduce", **shape).time_s
    eager = op_time_s("h100-sxm", "all-reduce", eager=True, **shape).time_s
    assert eager - graph == pytest.approx(2 * 2**20 / 3.35e12, rel=1e-6)  # 0.626 us
