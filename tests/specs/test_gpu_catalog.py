"""The GPU catalog: lookup, aliases, sources and sane values."""

from __future__ import annotations

import pytest

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.specs.catalog import get_gpu, list_gpus
from servesim.specs.catalog.gpus import ARCHITECTURES
from servesim.specs.dtypes import DType

GPUS = [g.name for g in list_gpus()]


def test_catalog_has_the_listed_gpus() -> None:
    expected = {
        "a100-40gb",
        "a100-80gb",
        "a100-pcie-80gb",
        "h100-sxm",
        "h100-pcie",
        "h200",
        "b200",
        "gh200",
        "l4",
        "l40s",
        "a10g",
        "a40",
        "rtx-4090",
        "mi300x",
        "mi325x",
        "a10",
        "t4",
        "b300",
        "gb200",
        "mi355x",
    }
    assert expected <= set(GPUS)


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("h100", "h100-sxm"),
        ("H100-SXM-80GB", "h100-sxm"),
        ("a100", "a100-80gb"),
        ("A40", "a40"),
        ("h100_sxm", "h100-sxm"),
        ("MI300X", "mi300x"),
        ("A10", "a10"),
        ("aws-a10g", "a10g"),
        ("Tesla-T4", "t4"),
        ("hgx-b300", "b300"),
        ("GB200-NVL72", "gb200"),
        ("instinct-mi355x", "mi355x"),
    ],
)
def test_aliases(alias: str, name: str) -> None:
    assert get_gpu(alias).name == name


def test_unknown_gpu_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match="did you mean h100-sxm"):
        get_gpu("h100-smx")


def test_h100_sxm_figures() -> None:
    gpu = get_gpu("h100-sxm")
    assert gpu.memory_bytes == 80 * 2**30
    assert gpu.hbm_bandwidth_bytes_per_s == 3.35e12
    assert gpu.peak_flops(DType.BF16) == 989.5e12
    assert gpu.intra_node_link.bandwidth_bytes_per_s == 450e9


def test_unsupported_dtype_is_an_error() -> None:
    gpu = get_gpu("a100-80gb")
    assert not gpu.supports("fp8")
    with pytest.raises(ConfigError, match="a100-80gb supports only"):
        gpu.peak_flops("fp8")


@pytest.mark.parametrize("name", GPUS)
def test_every_number_has_a_source(name: str) -> None:
    gpu = get_gpu(name)
    needed = [
        "memory_bytes",
        "hbm_bandwidth_bytes_per_s",
        "tdp_w",
        "idle_w",
        "price_per_hour_usd",
        "intra_node_link",
        "host_link",
    ]
    needed += ["architecture", "l2_cache_bytes", "num_sms"]
    needed += [f"peak_flops_per_s.{d.value}" for d in gpu.peak_flops_per_s]
    if gpu.pair_link is not None:
        needed.append("pair_link")
    for key in needed:
        assert len(gpu.sources.get(key, "")) > 10, f"{name}: no source for {key}"


@pytest.mark.parametrize("name", GPUS)
def test_values_are_sane(name: str) -> None:
    gpu = get_gpu(name)
    peak = gpu.peak_flops_per_s
    assert gpu.memory_bytes >= 16 * 2**30
    assert 1e11 < gpu.hbm_bandwidth_bytes_per_s < 2e13
    # Turing (T4) has fp16 tensor cores but no bf16 path.
    assert peak[DType.FP16] > peak[DType.FP32]
    if DType.BF16 in peak:
        assert peak[DType.FP16] == peak[DType.BF16]
    else:
        assert gpu.architecture == "turing"
    if DType.FP8 in peak:
        assert peak[DType.FP8] >= peak[DType.BF16]
    if DType.INT4 in peak:
        assert peak[DType.INT4] >= peak[DType.INT8]
    assert 0 < gpu.idle_w < gpu.tdp_w
    assert gpu.price_per_hour_usd > 0
    for link in (gpu.intra_node_link, gpu.host_link):
        assert link.bandwidth_bytes_per_s > 0
        assert 0 < link.latency_s < 1e-4
    assert gpu.vendor in ("nvidia", "amd")
    assert gpu.architecture in ARCHITECTURES
    assert gpu.architecture.startswith("cdna") == (gpu.vendor == "amd")
    # Data-sheet range of 2018-2026 parts: 40 (T4) to 304 (MI300X) SMs / CUs, 4-128 MiB L2.
    assert 40 <= gpu.num_sms <= 304
    assert 4 * 2**20 <= gpu.l2_cache_bytes <= 128 * 2**20


def test_spec_passes_through() -> None:
    gpu = get_gpu("h200")
    assert get_gpu(gpu) is gpu
