"""Kernel stacks: resolution of each family's fit (measured / stand-in / borrowed / legacy), the
borrowing rule, the op query and the calibration file checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.perf.calibration import calibration_from_dict, load_calibration
from servesim.perf.kernel_set import KernelSet
from servesim.perf.op_query import op_time_s
from servesim.perf.stack_resolve import resolve_family, stack_chain
from servesim.perf.stacks import nearest_calibrated, resolve_kernel_stack
from servesim.specs.catalog import get_gpu

# A collectives fit that prices any all-reduce at 7 us: one flat regime (alpha only).
_FLAT_AR = {
    "nccl": {
        "fits": [
            {
                "collective": "all_reduce",
                "implementation": "nccl",
                "num_gpus": 2,
                "segments": [[7e-6, 0.0]],
                "edges_bytes": [],
                "ref_link_latency_s": 0.0,
            }
        ]
    }
}


def _entry(catalog: str, arch: str, bw: float, **families: object) -> dict:
    return {
        "catalog_gpu": catalog,
        "architecture": arch,
        "hbm_bytes_per_s": bw,
        "sources": {f: f"test {catalog}" for f in families},
        **families,
    }


def _calibration(**stacks: dict) -> object:
    base = json.loads(Path(load_calibration().path).read_text())
    base["kernel_stacks"] = stacks
    return calibration_from_dict(base)


def test_nearest_calibrated_rule() -> None:
    candidates = {"h100": ("hopper", 3.35e12), "a100": ("ampere", 2.0e12), "l40s": ("ada", 0.86e12)}
    # same architecture first, nearest bandwidth
    assert nearest_calibrated("hopper", 4.8e12, candidates) == "h100"
    # no Blackwell table: years + log2 bandwidth ratio: h100 1.5 + 1.26 < l40s 2 + 3.2
    assert nearest_calibrated("blackwell", 8e12, candidates) == "h100"
    # Turing (2018, 0.3 TB/s): a100 2 + 2.74 < l40s 4 + 1.52
    assert nearest_calibrated("turing", 0.3e12, candidates) == "a100"
    # without an Ampere table, A100 borrows H100 (2.5 + 0.72) over L40S (2 + 1.24)
    others = {k: v for k, v in candidates.items() if k != "a100"}
    assert nearest_calibrated("ampere", 2.039e12, others) == "h100"
    assert nearest_calibrated("", 1e12, candidates) is None
    assert nearest_calibrated("hopper", 1e12, {}) is None


def test_stack_chain_and_auto() -> None:
    assert stack_chain("sglang-0.5") == ["sglang-0.5", "vllm-0.24"]
    assert stack_chain("vllm-0.6") == []
    assert resolve_kernel_stack("auto", "vllm-v1") == "vllm-0.24"
    assert resolve_kernel_stack("auto", "vllm-v0") == "vllm-0.6"
    assert resolve_kernel_stack("sglang-0.5", "vllm-v0") == "sglang-0.5"
    with pytest.raises(UnknownNameError):
        resolve_kernel_stack("trt-9", "vllm-v0")


def test_family_resolution_measured_stand_in_borrowed() -> None:
    cal = _calibration(
        **{
            "vllm-0.24": {
                "h100": _entry("h100-sxm", "hopper", 3.35e12, collectives=_FLAT_AR),
                "a100": _entry("a100-80gb", "ampere", 2.039e12, collectives=_FLAT_AR),
            },
            "sglang-0.5": {"h100": _entry("h100-sxm", "hopper", 3.35e12, collectives=_FLAT_AR)},
        }
    )
    h100, a100, h200 = get_gpu("h100-sxm"), get_gpu("a100-80gb"), get_gpu("h200-sxm")
    found = resolve_family(cal, "sglang-0.5", h100, "collectives")
    assert (found.stack, found.how) == ("sglang-0.5", "measured")
    found = resolve_family(cal, "sglang-0.5", a100, "collectives")
    assert (found.stack, found.gpu_key, found.how) == ("vllm-0.24", "a100", "stand-in")
    found = resolve_family(cal, "vllm-0.24", h200, "collectives")
    assert (found.gpu_key, found.how, found.is_calibrated) == ("h100", "borrowed", False)
    assert resolve_family(cal, "vllm-0.24", h100, "gemm") is None  # no gemm fit: legacy
    assert resolve_family(cal, "vllm-0.6", h100, "collectives") is None


def test_fitted_collective_is_charged_on_the_intra_node_link_only() -> None:
    cal = _calibration(
        **{"vllm-0.24": {"h100": _entry("h100-sxm", "hopper", 3.35e12, collectives=_FLAT_AR)}}
    )
    gpu = get_gpu("h100-sxm")
    kernels = KernelSet(cal, "vllm-0.24", gpu)
    t, ok = kernels.collective_s(gpu.intra_node_link, "all_reduce", 2, 1e6, custom_ar=False)
    assert ok and t == pytest.approx(7e-6)
    # a TP group over another link (across nodes) keeps the legacy alpha-beta model
    legacy = KernelSet(cal, "vllm-0.6", gpu)
    other = gpu.host_link
    assert kernels.collective_s(other, "all_reduce", 2, 1e6, False) == legacy.collective_s(
        other, "all_reduce", 2, 1e6, False
    )


def test_op_query_names_its_source() -> None:
    result = op_time_s("h100-sxm", "gemm", stack="vllm-0.6", dtype="bf16", m=64, n=8192, k=8192)
    assert result.time_s > 0 and result.stack == "vllm-0.6"
    assert "vllm-0.6 legacy" in result.source and result.calibrated
    # a 64 x 8192 x 8192 bf16 GEMM must at least read its 128 MiB... of 134 MB weights at HBM
    assert result.time_s >= 8192 * 8192 * 2 / get_gpu("h100-sxm").hbm_bandwidth_bytes_per_s
    with pytest.raises(UnknownNameError):
        op_time_s("h100-sxm", "conv2d", m=1)
    with pytest.raises(ConfigError, match="n"):
        op_time_s("h100-sxm", "gemm", m=1, k=4)
    with pytest.raises(ConfigError, match="must be >= 1"):
        op_time_s("h100-sxm", "gemm", m=0, n=4, k=4)
    with pytest.raises(ConfigError, match="must divide"):
        op_time_s("h100-sxm", "moe", num_tokens=8, hidden=64, inter=64, topk=2, num_experts=6, ep=4)


def test_perf_op_cli_json() -> None:
    cmd = [sys.executable, "-m", "servesim.cli", "perf", "--op", "decode-attention", "--seqs", "8"]
    cmd += ["--context", "4096", "--num-heads", "8", "--num-kv-heads", "1", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["op"] == "decode-attention" and data["time_s"] > 0
    assert data["shape"]["context"] == 4096 and data["source"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "is not a file"), ("not json", "is not a calibration JSON"), ("{}", "holds no")],
)
def test_calibration_flag_refuses_bad_files(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "cal.json"
    if content is not None:
        path.write_text(content)
    cmd = [sys.executable, "-m", "servesim.cli", "simulate", "--calibration", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_shipped_calibration_loads_without_pyarrow_or_scipy() -> None:
    code = (
        "import sys\n"
        "sys.modules['pyarrow'] = None\n"
        "sys.modules['scipy'] = None\n"
        "from servesim.perf.op_query import op_time_s\n"
        "from servesim.perf.calibration import load_calibration\n"
        "cal = load_calibration()\n"
        "print(op_time_s('h100-sxm', 'gemm', m=16, n=4096, k=4096).time_s > 0)\n"
        "print(sorted(cal.kernel_stacks))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "True"
