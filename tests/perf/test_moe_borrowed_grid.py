"""A format with too few shapes (MXFP4, int4) borrows bf16's structure and fits its own
correction grid: a kernel-config step in the token count carries over to a shape it never saw."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.perf.fitting import moe, moe_loads
from servesim.perf.fitting.moe_arrays import formula
from servesim.perf.opmodels.moe_layer import MoELayerFit
from servesim.specs.catalog import get_gpu

GPU = get_gpu("h100-sxm")
DONOR = MoELayerFit(
    weight_bytes=2.0,
    compute_dtype="bf16",
    fixed_s=30e-6,
    stream_hidden=4.0,
    stream_inter=4.0,
    mem_eff=0.9,
    compute_eff=0.6,
    tile_rows=32.0,
    overlap_p=2.0,
)
TRUE = MoELayerFit(**{**{f: getattr(DONOR, f) for f in ("weight_bytes", "compute_dtype",
    "stream_hidden", "stream_inter", "tile_rows", "overlap_p")}, "fixed_s": 40e-6,
    "mem_eff": 0.7, "compute_eff": 0.4})  # fmt: skip


def _rows(hidden: float, inter: float) -> dict[str, np.ndarray]:
    tokens = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384], dtype=float)
    n = tokens.size
    pairs = tokens * 4
    touched = np.minimum(pairs, 32.0)
    rows = {
        "dtype": np.full(n, "mxfp4", dtype=object),
        "shape_key": np.full(n, f"{hidden}/{inter}", dtype=object),
        "num_tokens": tokens,
        "topk": np.full(n, 4.0),
        "ep": np.ones(n),
        "hidden": np.full(n, hidden),
        "inter": np.full(n, inter),
        "num_matrices": np.full(n, 3.0),
        "num_experts": np.full(n, 32.0),
        "assignments": pairs,
        "experts_touched": touched,
        **{f"padded_{t}": np.ceil(pairs / touched / t) * t * touched for t in moe_loads.PAD_TILES},
        "max_expert": pairs / touched,
    }
    # the kernel switches config at 64 tokens: 1.5x slower below, which no term of the opmodel sees
    step = np.where(tokens <= 64, 1.5, 1.0)
    rows["latency_s"] = formula(TRUE, GPU, rows) * step
    return rows


def test_token_step_learnt_on_one_shape_prices_another() -> None:
    seen, unseen = _rows(2880.0, 2880.0), _rows(4096.0, 1536.0)
    fitted = moe._fit_borrowed(seen, GPU, "mxfp4", DONOR)
    assert fitted.correction is not None
    params = {"mxfp4": fitted.to_dict()}
    rel = moe.predict(params, GPU, unseen) / unseen["latency_s"] - 1.0
    without = {"mxfp4": {**fitted.to_dict(), "correction": None}}
    rel_bare = moe.predict(without, GPU, unseen) / unseen["latency_s"] - 1.0
    assert np.mean(np.abs(rel)) < 0.5 * np.mean(np.abs(rel_bare))
    small = unseen["num_tokens"] <= 16
    assert np.median(rel[small]) == pytest.approx(0.0, abs=0.08)


def test_marlin_fits_its_own_overlap() -> None:
    # rows timed with weight reads and math fully overlapped (p = 12: the max of the two); a
    # Marlin kernel learns that overlap, another borrowed kernel keeps the donor's p = 2
    import dataclasses

    rows = _rows(4096.0, 1536.0)
    overlapped = dataclasses.replace(TRUE, overlap_p=12.0)
    rows["latency_s"] = formula(overlapped, GPU, rows)
    rows["dtype"] = np.full(rows["num_tokens"].size, "int4", dtype=object)
    rows["kernel"] = np.full(rows["num_tokens"].size, "sglang_marlin_moe", dtype=object)
    assert moe._fit_borrowed(rows, GPU, "int4", DONOR).overlap_p > 6.0
    rows["kernel"] = np.full(rows["num_tokens"].size, "vllm_gptoss_triton", dtype=object)
    assert moe._fit_borrowed(rows, GPU, "int4", DONOR).overlap_p == pytest.approx(2.0)
