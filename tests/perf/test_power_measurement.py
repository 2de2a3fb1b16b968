"""How the power fit reads aiconfigurator's measured watts: the board's previous case in each
reading (hand-computed), and the refit script's ``power`` choice replacing only its section."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from servesim.perf.fitting import power
from servesim.perf.opmodels.power import PowerFit, PowerParams, gpu_power_w
from servesim.specs.catalog.gpus import get_gpu

H200 = get_gpu("h200-sxm")
# linear curve, no kernel gap: P = 100 + 600 u_c + 300 u_m; the reading is 3/4 the row's own
CURVE = PowerParams(100.0, 600.0, 1.0, 300.0, 1.0, 0.0, own_share=0.75)
FIT = PowerFit("h200-sxm", H200.idle_w, H200.tdp_w, {"any": CURVE, "gemm": CURVE})


def _rows(flops: list[float], latency_s: list[float]) -> dict[str, np.ndarray]:
    f, t = np.array(flops), np.array(latency_s)
    nbytes = np.zeros(len(f))
    return {
        "flops": f,
        "hbm_bytes": nbytes,
        "latency_s": t,
        **power.previous_case_columns(f, nbytes, t),
        "op": np.full(len(f), "gemm", dtype=object),
        "dtype": np.full(len(f), "bfloat16", dtype=object),
    }


def test_previous_case_is_the_row_one_board_count_earlier() -> None:
    n = power.BOARDS_SHARING_QUEUE
    flops = [float(i) for i in range(n + 3)]
    cols = power.previous_case_columns(np.array(flops), np.zeros(n + 3), np.ones(n + 3))
    # the first n rows (every board's first case) are their own; row n + 2 follows row 2
    assert list(cols["prev_flops"][:n]) == flops[:n]
    assert list(cols["prev_flops"][n:]) == [0.0, 1.0, 2.0]


def test_reading_blends_own_draw_with_the_previous_case() -> None:
    n = power.BOARDS_SHARING_QUEUE
    peak = H200.peak_flops("bf16")
    # rows 0..n-1 idle (u_c = 0), row n at u_c = 0.5: it follows row 0 on the same board
    flops = [0.0] * n + [0.5 * peak * 1e-3]
    pred = power.predict(FIT.to_dict(), H200, _rows(flops, [1e-3] * (n + 1)))
    # own 100 + 600 * 0.5 = 400 W; previous case 100 W: 0.75 * 400 + 0.25 * 100 = 325
    assert pred[n] == pytest.approx(325.0)
    assert pred[0] == pytest.approx(100.0)
    # the runtime draws the curve itself: the share is a property of the measurement only
    assert gpu_power_w(FIT, H200, 0.5, 0.0, op="gemm") == pytest.approx(400.0)


def test_fit_recovers_a_known_share() -> None:
    rng = np.random.default_rng(0)
    peak = H200.peak_flops("bf16")
    u = rng.uniform(0.0, 0.9, 2000)
    # latencies spread over 100 us - 10 ms: a kernel gap would show as a duration trend
    t = 10.0 ** rng.uniform(-4.0, -2.0, len(u))
    rows = _rows(list(u * peak * t), list(t))
    own = 150.0 + 400.0 * u
    prev_u = rows["prev_flops"] / rows["prev_latency_s"] / peak
    rows["power_w"] = 0.6 * own + 0.4 * (150.0 + 400.0 * prev_u)
    rows["shape_key"] = np.arange(len(u)).astype(str).astype(object)
    curve = power.fit(rows, H200)["curves"]["gemm"]
    assert curve["own_share"] == pytest.approx(0.6, abs=0.02)
    assert curve["static_w"] == pytest.approx(150.0, rel=0.03)


def test_stored_curves_without_a_share_read_as_long_replays() -> None:
    stored = {k: v for k, v in CURVE.to_dict().items() if k != "own_share"}
    assert PowerParams.from_dict(stored).own_share == 1.0


def _refit_module():
    path = Path(__file__).resolve().parents[2] / "bench" / "refit_family.py"
    spec = importlib.util.spec_from_file_location("refit_family", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_refit_power_replaces_only_the_power_section(tmp_path: Path) -> None:
    refit = _refit_module()
    doc = {
        "power": {"old": 1},
        "kernel_stacks": {"s": {"g": {"gemm": 1}}},
        "kernel_report": {"heldout": [{"family": "gemm"}], "power_heldout": [{"old": 1}]},
    }
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(doc))
    refit._write(path, lambda d: refit.merge_power(d, {"h200": {}}, [{"new": 1}], True))
    out = json.loads(path.read_text())
    assert out["power"] == {"h200": {}}
    assert out["kernel_report"]["power_heldout"] == [{"new": 1}]
    assert out["kernel_stacks"] == doc["kernel_stacks"]
    assert out["kernel_report"]["heldout"] == doc["kernel_report"]["heldout"]
    refit._write(path, lambda d: refit.merge_power(d, {"x": {}}, [], False))
    assert json.loads(path.read_text())["kernel_report"]["power_heldout"] == [{"new": 1}]


def test_vectorised_predict_equals_the_runtime_rule_row_by_row() -> None:
    rng = np.random.default_rng(1)
    h100 = get_gpu("h100-sxm")  # another GPU: static by idle, dynamic by TDP - idle
    fit = PowerFit(
        "h200-sxm",
        75.0,
        700.0,
        {
            "any": PowerParams(180.0, 400.0, 0.6, 480.0, 0.4, 3e-5, 0.8),
            "gemm:fp8_block": PowerParams(110.0, 500.0, 0.4, 1100.0, 0.6, 1.5e-5, 0.9),
        },
    )
    n = 50
    t = 10.0 ** rng.uniform(-5.5, -2.0, n)
    f = rng.uniform(0.0, 1.2, n) * h100.peak_flops("fp8") * t
    rows = _rows(list(f), list(t))
    rows["hbm_bytes"] = rng.uniform(0.0, 1.0, n) * h100.hbm_bandwidth_bytes_per_s * t
    rows.update(power.previous_case_columns(rows["flops"], rows["hbm_bytes"], t))
    rows["dtype"] = np.array(["fp8_block", "bfloat16"] * (n // 2), dtype=object)
    pred = power.predict(fit.to_dict(), h100, rows)
    u_c, u_m = power.utilisations(rows, h100)
    p_c, p_m = power.utilisations(rows, h100, "prev_")
    for i in range(n):
        d = rows["dtype"][i]
        share = 0.9 if d == "fp8_block" else 0.8
        own = gpu_power_w(fit, h100, u_c[i], u_m[i], op="gemm", dtype=d, kernel_s=t[i])
        prev = gpu_power_w(fit, h100, p_c[i], p_m[i], op="gemm", dtype=d)
        assert pred[i] == pytest.approx(share * own + (1 - share) * prev, rel=1e-12)


def test_default_fit_is_the_shipped_one() -> None:
    from servesim.perf.calibration import CALIBRATION_PATH
    from servesim.perf.opmodels.power import default_power_fit

    shipped = json.loads(Path(CALIBRATION_PATH).read_text())["power"]["h200"]["curves"]
    for key, curve in default_power_fit().curves.items():
        assert curve == PowerParams.from_dict(shipped[key]), key
