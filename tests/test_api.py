"""servesim.api.simulate end to end (small runs): results, tables, outputs, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from servesim.api import Result, load_config, replica_plan, simulate, write_outputs
from servesim.config import SimConfig
from servesim.specs.dtypes import DType

SMALL = {"num_requests": 40, "workload": {"preset": "sharegpt-vidur", "rate_per_s": 8.0}}

LLAMA_LIKE = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
}


@pytest.fixture(scope="module")
def small() -> Result:
    return simulate(SMALL)


def test_simulate_returns_summary_and_records(small: Result) -> None:
    s = small.summary
    assert s.num_requests == 40
    assert s.num_completed + small.summary.num_rejected == 40
    assert s.num_completed > 0
    assert s.ttft.count == s.num_completed
    assert s.ttft.p50_s is not None and s.ttft.p50_s > 0
    assert s.duration_s > 0 and s.output_throughput_tokens_per_s > 0
    assert 0 < s.kv_utilization.max <= 1
    assert s.efficiency.mfu is not None and 0 < s.efficiency.mfu < 1
    assert small.records.requests.size == 40


def test_requests_table_columns(small: Result) -> None:
    table = small.requests_table()
    assert table.num_rows == 40
    for name in ("request_id", "arrival_s", "ttft_s", "tpot_s", "e2e_s", "slo_class"):
        assert name in table.column_names
    cols = small.requests_columns()
    done = cols["reject_reason"] == "none"
    assert np.all(cols["ttft_s"][done] > 0)
    assert np.all(cols["e2e_s"][done] >= cols["ttft_s"][done])


def test_same_config_and_seed_give_identical_json() -> None:
    a = simulate(SMALL).to_json()
    b = simulate(SimConfig.from_dict(SMALL)).to_json()
    assert a == b
    c = simulate({**SMALL, "seed": 1}).to_json()
    assert c != a


def test_config_from_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("num_requests: 10\nworkload: {preset: sharegpt-vidur, rate_per_s: 4.0}\n")
    assert load_config(path).num_requests == 10
    assert simulate(str(path)).summary.num_requests == 10


def test_model_as_path_to_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_LIKE))
    for model in (str(tmp_path / "config.json"), str(tmp_path)):
        result = simulate({**SMALL, "num_requests": 10, "model": model})
        assert result.summary.num_completed == 10


def test_replica_plan_formats() -> None:
    plan = replica_plan(SimConfig.from_dict({"hardware": {"tp": 2, "dtype": "fp8"}}))
    assert plan.tp == 2 and plan.weight_dtype == DType.FP8
    assert plan.activation_dtype == DType.FP8 and plan.kv_dtype == DType.BF16
    assert plan.model.name == "llama-3.1-8b" and plan.gpu.name == "h100-sxm"


def test_slo_figures(small: Result) -> None:
    result = simulate({**SMALL, "slo": {"ttft_s": 100.0, "tpot_s": 100.0}})
    assert result.summary.slo is not None
    assert result.summary.slo.overall.attainment == pytest.approx(result.summary.num_completed / 40)


def test_write_outputs_csv_and_parquet(small: Result, tmp_path: Path) -> None:
    notes = write_outputs(small, tmp_path / "a", table_format="csv")
    assert (tmp_path / "a" / "summary.json").is_file()
    lines = (tmp_path / "a" / "requests.csv").read_text().splitlines()
    assert len(lines) == 41 and "ttft_s" in lines[0]
    assert any("latency.png" in n for n in notes)
    write_outputs(small, tmp_path / "b")
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "b" / "requests.parquet").num_rows == 40
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["summary"]["num_requests"] == 40
    assert summary["config"]["num_requests"] == 40


def test_plot_written_or_skipped_with_note(small: Result, tmp_path: Path) -> None:
    notes = write_outputs(small, tmp_path, table_format="csv")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert any(n.startswith("skipped latency.png: matplotlib") for n in notes)
        assert not (tmp_path / "latency.png").exists()
    else:
        assert (tmp_path / "latency.png").stat().st_size > 0


def test_engine_and_metrics_agree(small: Result) -> None:
    s = small.summary
    cols = small.requests_columns()
    done = cols["reject_reason"] == "none"
    # every completed request contributes output-1 gaps to the ITL distribution
    assert s.itl.count == int((cols["num_output_tokens"][done] - 1).sum())
    # the mean ITL over all gaps is the token-weighted mean of per-request TPOT
    gaps = (cols["e2e_s"] - cols["ttft_s"])[done].sum()
    assert s.itl.mean_s == pytest.approx(gaps / s.itl.count)
    assert s.total_output_tokens == int(cols["num_output_tokens"][done].sum())


def test_power_between_idle_and_tdp(small: Result) -> None:
    e = small.summary.efficiency
    gpu = replica_plan(small.config).gpu
    assert e.mean_power_w is not None
    assert gpu.idle_w <= e.mean_power_w <= gpu.tdp_w
    expected_cost = gpu.price_per_hour_usd * small.summary.duration_s / 3600
    assert e.cost_usd == pytest.approx(expected_cost)


def test_two_replicas_double_the_gpus() -> None:
    result = simulate({**SMALL, "replicas": 2})
    assert result.summary.num_replicas == 2
    assert result.summary.efficiency.num_gpus == 2
    used = set(result.requests_columns()["replica_id"].tolist())
    assert used == {0, 1}


def test_hard_stop_reports_unfinished() -> None:
    result = simulate({**SMALL, "max_time_s": 2.0})
    s = result.summary
    assert s.end_s == pytest.approx(2.0)
    assert s.rejected_by_reason["not_finished"] > 0
    assert s.num_completed + s.num_rejected == s.num_requests


def test_duration_limits_arrivals() -> None:
    result = simulate({"duration_s": 3.0, "workload": {"rate_per_s": 5.0}})
    arrivals = result.requests_columns()["arrival_s"]
    assert arrivals.max() <= 3.0
    assert result.summary.num_completed == result.summary.num_requests


def test_uncalibrated_gpu_is_flagged_in_the_result() -> None:
    """L40S has no measured kernel tables: the result says so; H100 has them."""
    from servesim.api import simulate

    l40s = simulate({"hardware": {"gpu": "l40s"}, "num_requests": 20})
    assert l40s.uncalibrated_gpus == ("l40s",)
    assert '"uncalibrated_gpus": [\n    "l40s"\n  ]' in l40s.to_json()
    h100 = simulate({"num_requests": 20})
    assert h100.uncalibrated_gpus == ()


def test_expert_offloading_makes_a_too_large_moe_fit_and_costs_pcie_time() -> None:
    """Mixtral-8x7B (87 GiB bf16) cannot fit one L40S (48 GB); with 2 of 8 experts per layer
    on the GPU it runs, and each decode step pays the PCIe fetch of the missed experts."""
    from servesim.api import simulate
    from servesim.core.errors import ConfigError, ServesimError

    base = {
        "model": "mixtral-8x7b",
        "hardware": {"gpu": "l40s"},
        "num_requests": 10,
        "workload": {"rate_per_s": 0.5},
    }
    with pytest.raises(ServesimError, match="weights"):
        simulate(base)
    offloaded = simulate({**base, "hardware": {"gpu": "l40s", "offload_cached_experts": 2}})
    assert offloaded.summary.num_completed == 10
    # 6 missed experts x 32 layers x 352 MB over a ~31.5 GB/s PCIe 4 link: about 2 s per token.
    assert offloaded.summary.tpot.p50_s > 1.0
    with pytest.raises(ConfigError, match="not MoE"):
        simulate({"hardware": {"offload_cached_experts": 2}, "num_requests": 5})
    with pytest.raises(ConfigError, match="below the 8 experts"):
        simulate({**base, "hardware": {"gpu": "l40s", "offload_cached_experts": 8}})
