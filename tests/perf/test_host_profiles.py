"""Host-overhead profiles per serving engine: hand-computed host time, graph coverage, choice."""

from __future__ import annotations

import dataclasses
import json

import pytest
from factories import h100, llama31_8b
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.core.errors import UnknownNameError
from servesim.perf.calibrate_defaults import HOST_PROFILES
from servesim.perf.calibration import (
    CALIBRATION_PATH,
    HostOverhead,
    calibration_from_dict,
    load_calibration,
)
from servesim.perf.host import HOST_PROFILE_NAMES, resolve_host_profile
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan

# 4 decode sequences and one 100-token prefill chunk: host time by hand from the profiles.
SMALL = BatchShape.from_lists([(100, 0)], [500] * 4)
HAND_HOST_S = {
    "vllm-v0": 4e-3 + 4 * 3e-4 + 1 * 6e-5,  # 5.26 ms
    "vllm-v1": 6e-4 + 4 * 2.5e-5 + 1 * 5e-5,  # 0.75 ms
    "vllm-v0-multistep": 4e-3 + 4 * 3e-4 + 1 * 6e-5,  # a prefill step runs single-step
    "none": 0.0,
}


def _plan(profile: str) -> ReplicaPlan:
    return ReplicaPlan(model=llama31_8b(), gpu=h100(), host_profile=profile)


def test_default_profile_is_vllm_v0() -> None:
    assert ReplicaPlan(model=llama31_8b(), gpu=h100()).host_profile == "vllm-v0"


@pytest.mark.parametrize("profile", sorted(HAND_HOST_S))
def test_host_time_by_hand(perf: RooflinePerfModel, profile: str) -> None:
    times = perf.iteration_time(_plan(profile), SMALL)
    assert times.overhead_s == pytest.approx(HAND_HOST_S[profile], rel=1e-12, abs=1e-15)


def test_multistep_amortises_decode_steps(perf: RooflinePerfModel) -> None:
    decode = BatchShape.from_lists(decode_contexts=[500] * 4)
    multi = perf.iteration_time(_plan("vllm-v0-multistep"), decode)
    single = perf.iteration_time(_plan("vllm-v0"), decode)
    assert multi.overhead_s == pytest.approx((4e-3 + 4 * 3e-4) / 8)  # 0.65 ms
    assert single.overhead_s == pytest.approx(4e-3 + 4 * 3e-4)
    assert multi.stage_s == single.stage_s


def test_v0_profile_is_the_calibrated_host() -> None:
    cal = load_calibration()
    assert cal.host_profile("vllm-v0") == cal.host
    assert cal.host.base_s == 4e-3 and cal.host.per_seq_s == 3e-4
    assert cal.host.per_prefill_seq_s == 6e-5 and cal.host.cpu_launch_s == 2.6e-5


def test_packaged_json_matches_the_documented_profiles() -> None:
    stored = json.loads(CALIBRATION_PATH.read_text())["host_profiles"]
    assert stored == json.loads(json.dumps(HOST_PROFILES))
    assert set(stored) == set(HOST_PROFILE_NAMES)


def test_v1_is_cheaper_than_v0_at_large_batch(perf: RooflinePerfModel) -> None:
    batch = BatchShape.from_lists(decode_contexts=[300] * 256)
    v0 = perf.iteration_time(_plan("vllm-v0"), batch)
    v1 = perf.iteration_time(_plan("vllm-v1"), batch)
    assert v1.stage_s == v0.stage_s  # same GPU work, both replay a graph at 256 sequences
    assert v0.overhead_s == pytest.approx(4e-3 + 256 * 3e-4)
    assert v1.overhead_s == pytest.approx(6e-4 + 256 * 2.5e-5)


def test_none_is_pure_gpu_time(perf: RooflinePerfModel) -> None:
    # a mixed step runs eagerly under V0: the CPU launch bound stretches its stages
    batch = BatchShape.from_lists([(8, 0)], [200] * 8)
    none = perf.iteration_time(_plan("none"), batch)
    v0 = perf.iteration_time(_plan("vllm-v0"), batch)
    assert none.overhead_s == 0.0
    assert none.total_s == sum(none.stage_s)
    assert sum(none.stage_s) < sum(v0.stage_s)
    assert none.flops == v0.flops and none.hbm_bytes == v0.hbm_bytes


def test_v1_replays_piecewise_graphs_with_prefill(perf: RooflinePerfModel) -> None:
    v0 = HostOverhead(**HOST_PROFILES["vllm-v0"])
    v1 = HostOverhead(**HOST_PROFILES["vllm-v1"])
    assert not v0.replays_graph(16, 1) and v0.replays_graph(256, 0)
    assert not v0.replays_graph(257, 0)
    assert v1.replays_graph(512, 1) and not v1.replays_graph(513, 0)
    small_mixed = BatchShape.from_lists([(8, 0)], [200] * 8)
    eager = perf.iteration_time(_plan("vllm-v0"), small_mixed)
    graph = perf.iteration_time(_plan("vllm-v1"), small_mixed)
    assert sum(graph.stage_s) < sum(eager.stage_s)
    assert sum(graph.stage_s) == pytest.approx(
        sum(perf.iteration_time(_plan("none"), small_mixed).stage_s)
    )


def test_unknown_profile_is_named(perf: RooflinePerfModel) -> None:
    with pytest.raises(UnknownNameError, match="vllm-v2"):
        perf.iteration_time(_plan("vllm-v2"), SMALL)


def test_calibration_without_profiles_falls_back_to_host() -> None:
    cal = calibration_from_dict({"host": {"base_s": 1e-3}})
    assert cal.host_profile("vllm-v0").base_s == 1e-3
    with pytest.raises(UnknownNameError):
        cal.host_profile("vllm-v1")


@pytest.mark.parametrize(
    ("setting", "kind", "version", "expected"),
    [
        ("auto", "vllm", "v0", "vllm-v0"),
        ("auto", "vllm", "v1", "vllm-v1"),
        ("auto", "sarathi", None, "vllm-v0"),
        ("auto", "orca", None, "vllm-v0"),
        ("auto", "custom", None, "vllm-v0"),
        ("none", "vllm", "v1", "none"),
        ("vllm-v1", "sarathi", None, "vllm-v1"),
        ("vllm-v0", "vllm", "v1", "vllm-v0"),
    ],
)
def test_resolve(setting: str, kind: str, version: str | None, expected: str) -> None:
    assert resolve_host_profile(setting, kind, version) == expected


def test_resolve_rejects_unknown() -> None:
    with pytest.raises(UnknownNameError, match="did you mean"):
        resolve_host_profile("vllm-v11")


@settings(max_examples=40, deadline=None)
@given(
    num_decode=st.integers(0, 600),
    context=st.integers(1, 4000),
    prefill=st.lists(st.integers(1, 2048), max_size=3),
)
def test_profiles_are_ordered(num_decode: int, context: int, prefill: list[int]) -> None:
    """none <= vllm-v1 <= vllm-v0 for any batch: V1 does less host work and replays graphs for
    a superset of V0's steps at the same eager cost per kernel."""
    batch = BatchShape.from_lists([(c, 0) for c in prefill], [context] * num_decode)
    if batch.is_empty:
        return
    perf = _shared_model()
    t = {p: perf.iteration_time(_plan(p), batch) for p in HOST_PROFILE_NAMES}
    assert t["none"].overhead_s == 0.0
    assert t["none"].total_s <= t["vllm-v1"].total_s + 1e-15
    assert t["vllm-v1"].total_s <= t["vllm-v0"].total_s + 1e-15
    assert t["vllm-v1"].overhead_s <= t["vllm-v0"].overhead_s
    assert t["vllm-v0-multistep"].total_s <= t["vllm-v0"].total_s + 1e-15
    assert t["vllm-v0-multistep"].stage_s == t["vllm-v0"].stage_s


_MODEL: list[RooflinePerfModel] = []


def _shared_model() -> RooflinePerfModel:
    if not _MODEL:
        _MODEL.append(RooflinePerfModel())
    return _MODEL[0]


def test_profiles_are_frozen_records() -> None:
    profile = load_calibration().host_profile("vllm-v1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.base_s = 0.0  # type: ignore[misc]


# ---- host time as mechanisms ------------------------------------------------------------
def test_overlap_takes_the_max_of_gpu_and_cpu_not_the_sum() -> None:
    # 1 ms + 10 x 0.1 ms + 1 x 0.2 ms + 100 tokens x 1 us = 2.3 ms of CPU work
    serial = HostOverhead(base_s=1e-3, per_seq_s=1e-4, per_prefill_seq_s=2e-4, per_token_s=1e-6)
    hidden = dataclasses.replace(serial, overlap="step", exposed_s=1e-4)
    assert serial.cpu_time_s(10, 1, 100) == pytest.approx(2.3e-3)
    for gpu_s in (1e-3, 2.3e-3, 5e-3):
        assert serial.step_time_s(gpu_s, 10, 1, 100) == pytest.approx(gpu_s + 2.3e-3)
        assert hidden.step_time_s(gpu_s, 10, 1, 100) == pytest.approx(max(gpu_s, 2.3e-3) + 1e-4)
    # a caller that does not know the GPU time hides nothing
    assert hidden.host_time_s(10, 1, 100) == pytest.approx(2.3e-3 + 1e-4)


def test_cpu_speed_scales_every_cpu_cost() -> None:
    slow = HostOverhead(base_s=1e-3, per_seq_s=1e-4, cpu_launch_s=2e-5)
    fast = dataclasses.replace(slow, cpu_speed=2.0)
    assert fast.cpu_time_s(10, 0) == pytest.approx(slow.cpu_time_s(10, 0) / 2)
    assert fast.launch_s == pytest.approx(1e-5)


def test_bad_overlap_or_speed_is_a_config_error() -> None:
    from servesim.core.errors import ConfigError

    with pytest.raises(ConfigError):
        HostOverhead(overlap="sometimes")
    with pytest.raises(ConfigError):
        HostOverhead(cpu_speed=0.0)


@pytest.mark.parametrize("name", ["vllm-v1-async", "sglang", "trtllm"])
def test_overlapping_engines_hide_cpu_under_a_long_gpu_step(name: str) -> None:
    host = HostOverhead(**HOST_PROFILES[name])
    assert host.overlap == "step"
    cpu_s = host.cpu_time_s(64, 1, 200)
    assert host.step_time_s(0.02, 64, 1, 200) == pytest.approx(0.02 + host.exposed_s)
    assert host.step_time_s(cpu_s / 2, 64, 1, 200) == pytest.approx(cpu_s + host.exposed_s)
