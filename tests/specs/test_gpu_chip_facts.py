"""Architecture / L2 / SM facts and the 2025-26 GPUs, checked by hand against their data sheets."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from servesim.core.errors import ConfigError
from servesim.specs.catalog import get_gpu
from servesim.specs.catalog.gpus import GPUS_FILE, _build
from servesim.specs.dtypes import DType

MIB = 2**20
TERA = 1e12


@pytest.mark.parametrize(
    ("name", "architecture", "l2_mib", "num_sms"),
    [
        ("a100-80gb", "ampere", 40, 108),  # A100 whitepaper: 40960 KB L2, 108 SMs
        ("h100-sxm", "hopper", 50, 132),  # H100 whitepaper Table 3
        ("h100-pcie", "hopper", 50, 114),
        ("h200", "hopper", 50, 132),
        ("l40s", "ada", 96, 142),  # 18176 CUDA cores / 128 per SM
        ("l4", "ada", 48, 58),  # 7424 CUDA cores / 128 per SM
        ("a10", "ampere", 6, 72),  # 9216 CUDA cores / 128 per SM
        ("t4", "turing", 4, 40),  # 2560 CUDA cores / 64 per SM (Turing)
        ("b200", "blackwell", 126.5, 148),  # 129536 KiB device-reported L2
        ("mi300x", "cdna3", 32, 304),  # 8 XCDs x 38 CUs, 8 x 4 MB L2
        ("mi355x", "cdna4", 32, 256),  # 8 XCDs x 32 CUs
    ],
)
def test_chip_facts(name: str, architecture: str, l2_mib: float, num_sms: int) -> None:
    gpu = get_gpu(name)
    assert gpu.architecture == architecture
    assert gpu.l2_cache_bytes == int(l2_mib * MIB)
    assert gpu.num_sms == num_sms


def test_b300_figures() -> None:
    gpu = get_gpu("b300")
    # HGX B300: 36 PF sparse BF16 / 8 GPUs / 2; FP4 108 PF dense / 8.
    assert gpu.peak_flops(DType.BF16) == 2250 * TERA
    assert gpu.peak_flops(DType.FP8) == 4500 * TERA
    assert gpu.peak_flops(DType.FP4) == 13500 * TERA
    assert not gpu.supports(DType.INT8)  # Blackwell Ultra cut INT8 tensor throughput
    assert gpu.memory_bytes == 270 * 2**30
    assert gpu.hbm_bandwidth_bytes_per_s == 8e12
    assert gpu.intra_node_link.name == "nvlink5"
    assert gpu.intra_node_link.bandwidth_bytes_per_s == 900e9
    assert (gpu.num_sms, gpu.tdp_w) == (160, 1100)


def test_gb200_figures() -> None:
    gpu = get_gpu("gb200")
    # GB200 NVL72 rack / 72 GPUs / 2 (sparse -> dense): BF16 360 PF, FP4 1440 PF.
    assert gpu.peak_flops(DType.BF16) == pytest.approx(360e15 / 72 / 2)
    assert gpu.peak_flops(DType.FP4) == pytest.approx(1440e15 / 72 / 2)
    assert gpu.peak_flops(DType.INT8) == 5000 * TERA
    assert gpu.hbm_bandwidth_bytes_per_s == pytest.approx(576e12 / 72)
    assert gpu.memory_bytes == 186 * 2**30  # 13.4 TB / 72
    assert gpu.host_link.bandwidth_bytes_per_s == 225e9  # C2C 900 GB/s bidir over 2 GPUs


def test_mi355x_figures() -> None:
    gpu = get_gpu("mi355x")
    # 256 CUs x 4096 FP16 FLOP/clk x 2.4 GHz.
    assert gpu.peak_flops(DType.BF16) == pytest.approx(256 * 4096 * 2.4e9, rel=1e-4)
    assert gpu.peak_flops(DType.FP8) == pytest.approx(2 * gpu.peak_flops(DType.BF16), rel=1e-4)
    assert gpu.peak_flops(DType.FP4) == pytest.approx(4 * gpu.peak_flops(DType.BF16), rel=1e-4)
    assert gpu.memory_bytes == 288 * 2**30
    assert (gpu.hbm_bandwidth_bytes_per_s, gpu.tdp_w) == (8e12, 1400)
    assert gpu.intra_node_link.bandwidth_bytes_per_s == pytest.approx(7 * 153.6e9 / 2)


def test_t4_has_no_bf16() -> None:
    gpu = get_gpu("t4")
    assert gpu.peak_flops(DType.FP16) == 65 * TERA
    assert gpu.peak_flops(DType.INT8) == 130 * TERA
    assert gpu.memory_bytes == 16 * 2**30 and gpu.hbm_bandwidth_bytes_per_s == 320e9
    assert gpu.tdp_w == 70
    with pytest.raises(ConfigError, match="t4 supports only"):
        gpu.peak_flops(DType.BF16)


def test_a10_is_separate_from_a10g() -> None:
    a10, a10g = get_gpu("a10"), get_gpu("a10g")
    assert a10.name == "a10" and a10g.name == "a10g"
    assert (a10.num_sms, a10g.num_sms) == (72, 80)
    assert a10.tdp_w == 150 and a10.peak_flops(DType.BF16) == 125 * TERA


def test_summary_has_the_chip_facts() -> None:
    summary = get_gpu("h100").summary()
    assert summary["architecture"] == "hopper"
    assert summary["l2_cache_bytes"] == 50 * MIB
    assert summary["num_sms"] == 132


def _entry(**changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    data = yaml.safe_load(GPUS_FILE.read_text(encoding="utf-8"))
    entry = copy.deepcopy(data["gpus"]["h100-sxm"])
    entry.update(changes)
    return entry, data["links"]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"architecture": "kepler"}, "h100-sxm has architecture 'kepler'"),
        ({"architecture": None}, "h100-sxm has architecture None"),
        ({"num_sms": 0}, "h100-sxm needs a positive integer num_sms"),
        ({"num_sms": 13.5}, "h100-sxm needs a positive integer num_sms"),
        ({"num_sms": True}, "h100-sxm needs a positive integer num_sms"),
        ({"l2_cache_mib": -1}, "h100-sxm needs a positive l2_cache_mib"),
        ({"l2_cache_mib": "50"}, "h100-sxm needs a positive l2_cache_mib"),
    ],
)
def test_bad_chip_facts_name_the_gpu(changes: dict[str, Any], match: str) -> None:
    entry, links = _entry(**changes)
    with pytest.raises(ValueError, match=match):
        _build("h100-sxm", entry, links)


def test_chip_fact_without_source_names_the_gpu() -> None:
    entry, links = _entry()
    del entry["sources"]["num_sms"]
    with pytest.raises(ValueError, match="h100-sxm has no source for num_sms"):
        _build("h100-sxm", entry, links)


def test_l4_figures() -> None:
    gpu = get_gpu("l4")
    # L4 data sheet, sparse figures halved: BF16 242, FP8 485, INT8 485, TF32 120 (sparse).
    assert gpu.peak_flops(DType.BF16) == 121 * TERA
    assert gpu.peak_flops(DType.FP8) == 242.5 * TERA
    assert gpu.peak_flops(DType.INT8) == 242.5 * TERA
    assert gpu.peak_flops(DType.FP32) == 60 * TERA  # the TF32 tensor rate
    assert gpu.memory_bytes == 24 * 2**30 and gpu.hbm_bandwidth_bytes_per_s == 300e9
    assert (gpu.tdp_w, gpu.num_sms, gpu.l2_cache_bytes) == (72, 58, 48 * MIB)


# The figures of the GPUs added for issue 13, each re-read in a public source (2026-12).
CHECKED = ("b300", "gb200", "mi355x", "t4", "a10", "l4")
CHECKED_FIELDS = ("memory_bytes", "hbm_bandwidth_bytes_per_s", "peak_flops_per_s.fp16", "tdp_w")


@pytest.mark.parametrize("name", CHECKED)
def test_checked_figures_record_their_check(name: str) -> None:
    gpu = get_gpu(name)
    for field in CHECKED_FIELDS:
        assert "checked" in gpu.sources[field].lower(), (name, field)
    # GB200's SM count is an assumption (B200 silicon), recorded as such, not a checked figure
    assert "checked" in gpu.sources["num_sms"].lower() or name == "gb200", name


def test_b300_memory_source_states_the_conflicting_totals() -> None:
    # The old text derived 270 GB from "2.1 TB / 8" (which is 262.5): the source now names
    # both published totals and where the usable 270 GB comes from.
    text = get_gpu("b300").sources["memory_bytes"]
    assert "2.1 TB" in text and "2.3 TB" in text and "270 GB" in text
    assert "2.1 TB total HBM3E per 8-GPU board -> ~270 GB" not in text
