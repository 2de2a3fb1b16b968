"""`servesim calibrate --from-runs`: host-time constants fitted to `vllm bench serve` results.

The "measured" runs are written here by servesim itself with known host constants (the
vllm-v1 profile with base_s 1.5 ms and per_seq_s 60 us instead of 0.6 ms / 25 us), replayed by
the same client as the fit replays them, so the fit must recover the constants.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from servesim.cli import main
from servesim.core.errors import ConfigError
from servesim.perf.calibration import HostOverhead, load_calibration
from servesim.perf.host_fit import (
    FIT_BOUNDS,
    HostOverridePerfModel,
    calibrate_host,
    fitted_names,
)
from servesim.perf.roofline import RooflinePerfModel
from servesim.validate.vllm_bench import load_vllm_bench, replay_vllm_bench

DEPLOYMENT = {
    "model": "llama-3.1-8b",
    "hardware": {"gpu": "h100-sxm", "tp": 1, "engine": "vllm-v1"},
}
TRUTH = {"base_s": 1.5e-3, "per_seq_s": 6e-5}
CLI = ["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--tp", "1", "--engine", "vllm-v1"]


def _truth_perf(**constants: float) -> RooflinePerfModel:
    cal = load_calibration()
    host = replace(cal.host_profile("vllm-v1"), **constants)
    return RooflinePerfModel(replace(cal, host_profiles={**cal.host_profiles, "vllm-v1": host}))


def _write_runs(
    folder: Path,
    perf: RooflinePerfModel,
    *,
    num_requests: int = 30,
    input_range: tuple[int, int] = (256, 1024),
    output_range: tuple[int, int] = (16, 48),
    concurrencies: tuple[int, ...] = (1, 4, 16),
) -> list[Path]:
    """One closed-loop run per concurrency, simulated with ``perf``, in vllm bench's schema."""
    rng = np.random.default_rng(0)
    paths = []
    for conc in concurrencies:
        lens = {
            "input_lens": rng.integers(*input_range, num_requests).tolist(),
            "output_lens": rng.integers(*output_range, num_requests).tolist(),
        }
        src = folder / f"lens-c{conc}.json"
        src.write_text(json.dumps({"request_rate": "inf", "max_concurrency": conc, **lens}))
        predicted = replay_vllm_bench(load_vllm_bench(src), DEPLOYMENT, perf=perf).predicted
        path = folder / f"vllm-infqps-concurrency{conc}.json"
        path.write_text(json.dumps(dict(predicted)), encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _write_runs(tmp_path_factory.mktemp("runs"), _truth_perf(**TRUTH))


def test_override_model_matches_a_fresh_model(runs: list[Path]) -> None:
    """The fast path (GPU time memoised, host time swapped) gives the plain path's results."""
    run = load_vllm_bench(runs[-1])
    truth = replace(load_calibration().host_profile("vllm-v1"), **TRUTH)
    fast = HostOverridePerfModel(RooflinePerfModel(), "vllm-v1", truth)
    a = replay_vllm_bench(run, DEPLOYMENT, perf=fast).predicted
    b = replay_vllm_bench(run, DEPLOYMENT, perf=_truth_perf(**TRUTH)).predicted
    assert a["ttfts"] == b["ttfts"] and a["latencies"] == b["latencies"]


def test_cli_fit_recovers_constants_and_reports_leave_one_out(
    runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine.json"
    with pytest.raises(SystemExit) as info:
        main(["calibrate", "--from-runs", *map(str, runs), *CLI, "--out", str(out), "--json"])
    assert info.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["fitted"]) == {"base_s", "per_seq_s"}  # nothing left for per-token
    for name, value in TRUTH.items():
        assert report["fitted"][name] == pytest.approx(value, rel=0.02)
    assert report["undetermined"] == []
    for run in report["runs"]:
        assert run["num_replayed"] == 30 and run["num_dropped"] == 0
        assert set(run["fit"]) >= {"mean_ttft_ms", "mean_tpot_ms", "mean_e2el_ms"}
        assert max(abs(e) for e in run["fit"].values()) < 0.01
        assert set(run["leave_one_out"]) == set(run["fit"])
        assert max(abs(e) for e in run["leave_one_out"].values()) < 0.02
        assert set(run["leave_one_out_params"]) == {"base_s", "per_seq_s"}
        assert abs(run["before"]["mean_tpot_ms"]) > 0.05  # the profile's own constants miss
    # The file written holds the fit as vllm-v1's host profile, and prices with it.
    cal = load_calibration(str(out))
    host = cal.host_profile("vllm-v1")
    assert host.base_s == report["fitted"]["base_s"] and "--from-runs" in host.source
    assert host.overlap == "none" and host.max_graph_tokens == 512  # the profile's rules kept
    measured = load_vllm_bench(runs[1]).measured
    again = replay_vllm_bench(load_vllm_bench(runs[1]), DEPLOYMENT, perf=RooflinePerfModel(cal))
    assert again.predicted["mean_tpot_ms"] == pytest.approx(measured["mean_tpot_ms"], rel=0.01)
    assert json.loads(out.read_text())["host_fits"]["vllm-v1"]["fitted"] == report["fitted"]


def test_max_requests_scores_the_first_requests_only(tmp_path: Path) -> None:
    ttfts = [0.01, 0.02, 0.03, 0.5]
    itls = [[0.005] * 3, [0.006] * 3, [0.007] * 3, [0.1] * 3]
    raw = {"request_rate": "inf", "max_concurrency": 2, "mean_ttft_ms": 140.0, "ttfts": ttfts,
           "itls": itls, "input_lens": [100] * 4, "output_lens": [4] * 4}  # fmt: skip
    path = tmp_path / "r.json"
    path.write_text(json.dumps(raw))
    run = load_vllm_bench(path, max_requests=3)
    assert run.input_lens == (100, 100, 100) and run.num_dropped == 1
    assert run.measured["mean_ttft_ms"] == pytest.approx(20.0)  # not the file's 140 over all
    assert run.measured["mean_tpot_ms"] == pytest.approx(6.0)
    assert run.measured["mean_e2el_ms"] == pytest.approx(20.0 + 18.0)
    assert load_vllm_bench(path).measured["mean_ttft_ms"] == 140.0


def _linear_replay(truth: Mapping[str, float], loads: list[int]):
    """An analytic stand-in for the simulator: step = 5 ms + base + per_seq x batch."""

    def replay(i: int, host: HostOverhead) -> dict[str, float]:
        step = 5e-3 + host.base_s + host.per_seq_s * loads[i] + host.per_token_s * 0
        return {"mean_tpot_ms": step * 1e3, "mean_ttft_ms": 3 * step * 1e3}

    measured = [replay(i, replace(HostOverhead(), **truth)) for i in range(len(loads))]
    return replay, measured


def test_fit_is_bounded_and_flags_what_the_runs_cannot_tell() -> None:
    base = HostOverhead(base_s=6e-4, per_seq_s=2.5e-5)
    # per_seq_s beyond its physical bound: the fit stops at the bound
    replay, measured = _linear_replay({"base_s": 1e-3, "per_seq_s": 5e-3}, [1, 8, 32])
    fit = calibrate_host(base, measured, replay, per_token="off").fit
    assert fit.params["per_seq_s"] == pytest.approx(FIT_BOUNDS["per_seq_s"][1], rel=1e-6)
    # every run at the same batch: base and per-sequence cost are not told apart, and a
    # per-token cost that changes nothing is flagged and (auto) not kept
    replay, measured = _linear_replay({"base_s": 1e-3, "per_seq_s": 1e-4}, [8, 8])
    result = calibrate_host(base, measured, replay, per_token="on")
    assert "per_token_s" in result.undetermined
    step = result.fit.params["base_s"] + 8 * result.fit.params["per_seq_s"]
    assert step == pytest.approx(1e-3 + 8e-4, rel=1e-3)
    assert set(result.leave_one_out) == {0, 1}


def test_fitted_names_follow_the_overlap_mode() -> None:
    assert fitted_names(HostOverhead(), per_token=False) == ("base_s", "per_seq_s")
    overlap = HostOverhead(overlap="step", exposed_s=2e-4)
    assert fitted_names(overlap, per_token=True) == ("exposed_s", "per_seq_s", "per_token_s")
    with pytest.raises(ConfigError, match="per-token"):
        calibrate_host(HostOverhead(), [{"mean_ttft_ms": 1.0}], lambda i, h: {}, per_token="x")


@pytest.mark.parametrize("case", ["no files", "no per-request data", "files without flag"])
def test_bad_inputs_exit_2_with_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agg = tmp_path / "agg.json"
    agg.write_text(json.dumps({"mean_ttft_ms": 10.0, "request_rate": "inf"}))
    args = {
        "no files": ["calibrate", "--from-runs", *CLI],
        "no per-request data": ["calibrate", "--from-runs", str(agg), *CLI],
        "files without flag": ["calibrate", str(agg), *CLI],
    }[case]
    with pytest.raises(SystemExit) as info:
        main([*args, "--out", str(tmp_path / "x.json")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err
    if case == "no per-request data":
        assert "save-detailed" in err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_per_token_cost_recovered_from_prefill_heavy_runs(tmp_path: Path) -> None:
    """Long prompts and short outputs: prefill steps carry thousands of tokens, so a
    per-token cost shows apart from the per-sequence one and ``auto`` fits it."""
    truth = {**TRUTH, "per_token_s": 4e-7}
    paths = _write_runs(
        tmp_path, _truth_perf(**truth), num_requests=40, input_range=(1500, 4000),
        output_range=(4, 24), concurrencies=(1, 4, 16, 32),
    )  # fmt: skip
    runs = [load_vllm_bench(p) for p in paths]
    base = load_calibration().host_profile("vllm-v1")
    gpu = RooflinePerfModel()

    def replay(i: int, host: HostOverhead) -> Mapping[str, float]:
        perf = HostOverridePerfModel(gpu, "vllm-v1", host)
        return replay_vllm_bench(runs[i], DEPLOYMENT, perf=perf).predicted

    result = calibrate_host(base, [r.measured for r in runs], replay)  # auto
    assert "per_token_s" in result.fit.params
    for name, value in truth.items():
        assert result.fit.params[name] == pytest.approx(value, rel=0.1), name
    assert all(math.isfinite(e) for errs in result.leave_one_out.values() for e in errs.values())
