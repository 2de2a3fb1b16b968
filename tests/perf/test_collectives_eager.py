"""Eager custom all-reduce: the input's copy into the registered IPC buffer (``eager_copy_s``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servesim.perf.calibration import load_calibration
from servesim.perf.opmodels.collectives import eager_copy_s, volume_factor
from servesim.specs.catalog.gpus import get_gpu

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
    if not custom:
        pytest.skip("the shipped calibration has no vLLM custom all-reduce fit for this GPU")
    bulk = {
        f["implementation"]: f["segments"][-1][1]
        for f in custom["fits"]
        if f["num_gpus"] == num_gpus
    }
    link = gpu.intra_node_link.bandwidth_bytes_per_s
    # link_over_bus of the copy: (2 / HBM) seconds per tensor byte, in bus bytes over the link
    copy = eager_copy_s(gpu, 1.0) * link / volume_factor("all_reduce", num_gpus)
    assert bulk["custom_eager"] - bulk["custom_graph"] == pytest.approx(copy, rel=0.35)
