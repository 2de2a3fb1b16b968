"""The host-CPU catalog (``specs/catalog/cpus.yaml``), the CPU's decode-attention and
host-link costs (``perf.cpu``), and ``hybrid:`` reaching replicas through ``simulate``."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from servesim.api import simulate
from servesim.cli import main
from servesim.core.errors import UnknownNameError
from servesim.perf.cpu import cpu_decode_attention, host_link_transfer_s
from servesim.specs import get_gpu, resolve_model
from servesim.specs.catalog.cpus import cpu_names, get_cpu
from servesim.specs.dtypes import DType


def test_catalog_figures_follow_their_derivations() -> None:
    # channels x MT/s x 8 B, cores x clock x FLOP/cycle (the sources' arithmetic)
    spr = get_cpu("xeon-8480+")
    assert spr.memory_bandwidth_bytes_per_s == pytest.approx(8 * 4800e6 * 8)
    assert spr.flops_per_s("fp32") == pytest.approx(56 * 2.0e9 * 64, rel=1e-3)
    assert spr.flops_per_s("bf16") == pytest.approx(56 * 2.0e9 * 1024, rel=1e-3)
    genoa = get_cpu("EPYC-9654")
    assert genoa.num_cores == 96
    assert genoa.memory_bandwidth_bytes_per_s == pytest.approx(12 * 4800e6 * 8)
    # DDR4-2933 is 2933.3 MT/s
    assert get_cpu("t4-host").memory_bandwidth_bytes_per_s == pytest.approx(6 * 8800e6 / 3 * 8)
    assert get_cpu("a10-host").memory_bandwidth_bytes_per_s == pytest.approx(8 * 3200e6 * 8)
    assert get_cpu("a10-host").flops_per_s("fp16") == get_cpu("a10-host").flops_per_s("fp32")
    assert set(cpu_names()) == {"xeon-8480+", "epyc-9654", "xeon-8259cl", "epyc-7r32"}
    assert all(get_cpu(n).source for n in cpu_names())


def test_unknown_cpu_names_the_catalog() -> None:
    with pytest.raises(UnknownNameError, match="epyc-9654"):
        get_cpu("epyc-9655")


def test_cpu_decode_attention_hand_computed() -> None:
    model = resolve_model("llama-3.1-8b")  # 32 layers, 8 KV heads x 128: 128 KiB/token bf16
    cost = cpu_decode_attention(
        get_cpu("epyc-9654"), model, DType.BF16, 10_000,
        bandwidth_efficiency=0.5, flop_efficiency=0.5,
    )  # fmt: skip
    kv_bytes = 10_000 * 2 * 32 * 8 * 128 * 2
    assert cost.kv_bytes == kv_bytes
    assert cost.flops == 4 * 10_000 * 32 * 128 * 32
    assert cost.time_s == pytest.approx(kv_bytes / (460.8e9 * 0.5))  # bandwidth-bound
    # a FLOP-starved CPU turns compute-bound
    slow = cpu_decode_attention(
        get_cpu("epyc-9654"), model, DType.BF16, 10_000,
        bandwidth_efficiency=0.5, flop_efficiency=1e-3,
    )  # fmt: skip
    assert slow.time_s == pytest.approx(cost.flops / (7.37e12 * 1e-3))
    zero = cpu_decode_attention(
        get_cpu("epyc-9654"), model, DType.BF16, 0, bandwidth_efficiency=0.5, flop_efficiency=0.5
    )
    assert zero.time_s == 0.0


def test_host_link_transfer_hand_computed() -> None:
    model = resolve_model("llama-3.1-8b")  # q 32 x 128, k and v 8 x 128, output 32 x 128
    link = get_gpu("a10").host_link
    per_layer = 5 * (2 * 32 + 2 * 8) * 128 * 2
    expected = 32 * (per_layer / link.bandwidth_bytes_per_s + 2 * link.latency_s)
    assert host_link_transfer_s(model, DType.BF16, 5, link) == pytest.approx(expected)
    assert host_link_transfer_s(model, DType.BF16, 0, link) == 0.0


def _config(hybrid: dict[str, object] | None) -> dict[str, object]:
    lengths = {
        "kind": "independent",
        "prompt": {"kind": "fixed", "tokens": 256},
        "output": {"kind": "fixed", "tokens": 512},
    }
    config: dict[str, object] = {
        "model": "llama-2-7b",
        "hardware": {"gpu": "t4", "dtype": "fp16"},
        "workload": {"arrival": {"kind": "poisson", "rate_per_s": 0.5}, "lengths": lengths},
        "num_requests": 12,
        "seed": 0,
    }
    if hybrid is not None:
        config["hybrid"] = hybrid
    return config


def test_simulate_reads_the_hybrid_section_and_serves_more_on_a_t4() -> None:
    gpu_only = simulate(_config(None)).summary
    hybrid = simulate(_config({"host_kv_bytes": 8 * 2**30})).summary
    assert hybrid.counters["hybrid_cpu_decodes"] > 0
    assert hybrid.output_throughput_tokens_per_s > 1.5 * gpu_only.output_throughput_tokens_per_s
    again = simulate(_config({"host_kv_bytes": 8 * 2**30})).summary
    assert again == hybrid  # deterministic


def test_bad_hybrid_sections_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        simulate(_config({"policy": "greedy"}))
    with pytest.raises(pydantic.ValidationError, match="unknown cpu 'pentium'"):
        simulate(_config({"cpu": "pentium"}))


_YAML = """model: llama-2-7b
hardware: {gpu: t4, dtype: fp16}
workload:
  arrival: {kind: poisson, rate_per_s: 0.5}
  lengths: {kind: independent, prompt: {kind: fixed, tokens: 64}, output: {kind: fixed, tokens: 32}}
num_requests: 4
hybrid: {cpu: CPU, host_kv_bytes: 1073741824}
"""


def _cli(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_reads_the_hybrid_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(_YAML.replace("CPU", "t4-host"))
    assert _cli(["simulate", "--config", str(path)]) == 0
    assert "4 completed of 4" in capsys.readouterr().out
    path.write_text(_YAML.replace("CPU", "pentium"))
    assert _cli(["simulate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown cpu 'pentium'" in err
    assert len(err.strip().splitlines()) == 1
