"""Op-by-op energy (servesim.perf.energy): hand-computed on a linear power curve, and bounds on a
real plan's iterations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.perf.energy import OpEnergy
from servesim.perf.opmodels.power import (
    PowerFit,
    PowerParams,
    default_power_fit,
    power_w_for_ratings,
)
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, OpCost, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model

# P = 100 + 600 u_c + 300 u_m (W), no kernel-gap term, on a GPU rated as the reference
LINEAR = PowerFit(
    "ref",
    70.0,
    700.0,
    {
        "any": PowerParams(100.0, 600.0, 1.0, 300.0, 1.0),
        "gemm": PowerParams(100.0, 600.0, 1.0, 300.0, 1.0),
    },
)


def _energy() -> OpEnergy:
    gpu = get_gpu("h100-sxm")  # idle 70 W... scaled by the rule; use the reference ratings
    return OpEnergy(LINEAR, gpu, peak_gemm=1e15, peak16=1e15)


def test_gemm_op_energy_is_its_power_times_time() -> None:
    e = _energy()
    gpu = e.gpu
    # 1 ms at u_c = 5e11 / (1e-3 * 1e15) = 0.5 and u_m = 1.675e9 / (1e-3 * 3.35e12) = 0.5
    op = OpCost("mlp_up_gate", "s", 1, 5e11, 0.5 * 3.35e12 * 1e-3, "compute", 1e-3)
    scale_static = gpu.idle_w / 70.0
    scale_dyn = (gpu.tdp_w - gpu.idle_w) / (700.0 - 70.0)
    watts = min(gpu.tdp_w, 100.0 * scale_static + (600 * 0.5 + 300 * 0.5) * scale_dyn)
    assert e.op_j(op) == pytest.approx(watts * 1e-3, rel=1e-6)


def test_collective_and_idle_draw_static_power() -> None:
    e = _energy()
    static = 100.0 * e.gpu.idle_w / 70.0
    comm = OpCost("all_reduce_attn", "s", 80, 0.0, 1e6, "comm", 2e-3)
    assert e.op_j(comm) == pytest.approx(static * 2e-3, rel=1e-6)
    assert e.idle_j(0.5) == pytest.approx(static * 0.5, rel=1e-6)
    assert e.idle_j(-1.0) == 0.0


def test_iteration_energy_between_static_floor_and_tdp() -> None:
    perf = RooflinePerfModel()
    gpu = get_gpu("h100-sxm")
    plan = ReplicaPlan(resolve_model("llama-3.1-70b"), gpu, tp=4)
    for batch in (
        BatchShape.from_lists(decode_contexts=[1000] * 64),
        BatchShape.from_lists(prefill=[(2048, 0)]),
    ):
        t = perf.iteration_time(plan, batch)
        assert t.energy_j > 0
        gpu_s = plan.num_gpus * t.total_s
        assert gpu.idle_w * gpu_s < t.energy_j <= gpu.tdp_w * gpu_s * (1 + 1e-9)
    # a compute-bound prefill draws more power than a decode step of the same replica
    dec = perf.iteration_time(plan, BatchShape.from_lists(decode_contexts=[1000] * 8))
    pre = perf.iteration_time(plan, BatchShape.from_lists(prefill=[(8192, 0)]))
    assert pre.energy_j / pre.total_s > dec.energy_j / dec.total_s


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["h100-sxm", "a100-80gb", "l40s"]),
    st.sampled_from(["any", "gemm", "moe", "attention_prefill", "attention_decode"]),
    st.floats(0, 1.5),
    st.floats(0, 1.5),
    st.one_of(st.none(), st.floats(1e-7, 1e-2)),
)
def test_scaled_curves_equal_the_power_model_on_every_class(
    name: str, op_class: str, u_c: float, u_m: float, kernel_s: float | None
) -> None:
    fit = default_power_fit()
    gpu = get_gpu(name)
    energy = OpEnergy(fit, gpu, peak_gemm=1e15, peak16=1e15)
    want = power_w_for_ratings(fit, gpu.tdp_w, gpu.idle_w, u_c, u_m, op=op_class, kernel_s=kernel_s)
    assert energy.watts(op_class, u_c, u_m, kernel_s) == pytest.approx(want, rel=1e-12)
