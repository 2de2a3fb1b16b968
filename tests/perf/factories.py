"""Hand-built specs for perf tests (independent of the catalog)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from servesim.perf.fitting import moe
from servesim.perf.opmodels.gemm import GemmFit
from servesim.perf.opmodels.moe_layer import MoELayerFit, moe_layer_s
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec, LinkSpec
from servesim.specs.model import MLASpec, ModelSpec, MoESpec

NVLINK4 = LinkSpec("nvlink4", 450e9, 2e-6)
PCIE5 = LinkSpec("pcie5", 64e9, 5e-6)
GB = 1000**3


def h100() -> GPUSpec:
    """H100 SXM5 80GB (NVIDIA datasheet figures)."""
    return GPUSpec(
        name="h100-sxm",
        vendor="nvidia",
        memory_bytes=80 * 1024**3,
        hbm_bandwidth_bytes_per_s=3.35e12,
        intra_node_link=NVLINK4,
        host_link=PCIE5,
        tdp_w=700,
        idle_w=70,
        price_per_hour_usd=2.5,
        peak_flops_per_s={
            DType.BF16: 989.4e12,
            DType.FP16: 989.4e12,
            DType.FP8: 1978.9e12,
            DType.INT8: 1978.9e12,
        },
    )


def a100() -> GPUSpec:
    """A100 SXM 80GB."""
    return GPUSpec(
        "a100-sxm-80gb",
        "nvidia",
        80 * 1024**3,
        2.039e12,
        LinkSpec("nvlink3", 300e9, 2e-6),
        LinkSpec("pcie4", 32e9, 5e-6),
        400,
        50,
        1.5,
        peak_flops_per_s={DType.BF16: 312e12, DType.FP16: 312e12, DType.INT8: 624e12},
    )


def l40s() -> GPUSpec:
    """L40S (no measured tables: uncalibrated)."""
    return GPUSpec(
        "l40s",
        "nvidia",
        48 * 1024**3,
        864e9,
        LinkSpec("pcie4", 32e9, 5e-6),
        LinkSpec("pcie4", 32e9, 5e-6),
        350,
        40,
        1.0,
        peak_flops_per_s={DType.BF16: 362e12, DType.FP16: 362e12, DType.FP8: 733e12},
    )


def llama2_7b() -> ModelSpec:
    """Llama-2-7B (HF config.json)."""
    return ModelSpec("llama-2-7b", "llama", 32, 4096, 32, 32, 128, 11008, 32000, 4096)


def llama31_8b() -> ModelSpec:
    """Llama-3.1-8B."""
    return ModelSpec("llama-3.1-8b", "llama", 32, 4096, 32, 8, 128, 14336, 128256, 131072)


def llama31_70b() -> ModelSpec:
    """Llama-3.1-70B."""
    return ModelSpec("llama-3.1-70b", "llama", 80, 8192, 64, 8, 128, 28672, 128256, 131072)


def mixtral_8x7b() -> ModelSpec:
    """Mixtral-8x7B (8 experts, top-2, sliding window off in v0.1 config)."""
    return ModelSpec(
        "mixtral-8x7b",
        "mixtral",
        32,
        4096,
        32,
        8,
        128,
        14336,
        32000,
        32768,
        moe=MoESpec(num_experts=8, num_experts_per_token=2, expert_ffn_size=14336),
    )


def deepseek_v3() -> ModelSpec:
    """DeepSeek-V3 (MLA, 256 routed + 1 shared expert, first 3 layers dense)."""
    return ModelSpec(
        "deepseek-v3",
        "deepseek_v3",
        61,
        7168,
        128,
        128,
        192,
        18432,
        129280,
        163840,
        moe=MoESpec(
            num_experts=256,
            num_experts_per_token=8,
            expert_ffn_size=2048,
            num_shared_experts=1,
            shared_expert_ffn_size=2048,
            moe_layer_indices=tuple(range(3, 61)),
        ),
        mla=MLASpec(
            kv_lora_rank=512,
            qk_rope_head_dim=64,
            qk_nope_head_dim=128,
            v_head_dim=128,
            q_lora_rank=1536,
        ),
    )


def toy_gpu(peak_flops_per_s: dict[DType, float] | None = None) -> GPUSpec:
    """A toy GPU with round numbers for hand-computed op times: 2 TB/s HBM, 1 PFLOP/s bf16 and
    2 PFLOP/s fp8 unless ``peak_flops_per_s`` says otherwise."""
    link = LinkSpec(name="nvlink", bandwidth_bytes_per_s=450e9, latency_s=1e-6)
    return GPUSpec(
        name="toy",
        vendor="nvidia",
        memory_bytes=80 * 2**30,
        hbm_bandwidth_bytes_per_s=2e12,
        intra_node_link=link,
        host_link=link,
        tdp_w=700.0,
        idle_w=100.0,
        price_per_hour_usd=1.0,
        peak_flops_per_s=peak_flops_per_s or {DType.BF16: 1e15, DType.FP8: 2e15},
    )


def moe_fit(**overrides: Any) -> MoELayerFit:
    """A bf16 MoE fit with a fixed 30 us, no streaming, and weight reads and math at 1e9x the
    data sheet (free): ``overrides`` switch on the terms a hand-computed test checks."""
    fields: dict[str, Any] = {
        "weight_bytes": 2.0,
        "compute_dtype": "bf16",
        "fixed_s": 30e-6,
        "stream_hidden": 0.0,
        "stream_inter": 0.0,
        "mem_eff": 1e9,
        "compute_eff": 1e9,
        "tile_rows": 16.0,
        "overlap_p": 1.0,
    }
    return MoELayerFit(**{**fields, **overrides})


def traffic_only_moe_fit() -> MoELayerFit:
    """``moe_fit`` with the default tiles' operand traffic at 4x HBM, for hand-computed
    tile-traffic checks."""
    return moe_fit(traffic_eff=4.0)


def gemm_fit(**overrides: Any) -> GemmFit:
    """A bf16 GEMM fit at the data sheet's rates: no floor, latency, L2 gain, K loop, thin-K
    or wave loss, one 128 x 128 tile bucket and a near-max overlap; ``overrides`` switch on the
    terms a hand-computed test checks."""
    fields: dict[str, Any] = {
        "dtype": "bf16",
        "weight_bytes": 2.0,
        "act_bytes": 2.0,
        "out_bytes": 2.0,
        "floor_s": 0.0,
        "mem_eff": 1.0,
        "mem_latency_s": 0.0,
        "l2_gain": 0.0,
        "l2_frac": 1.0,
        "kloop_s": 1e-30,
        "kloop_sat": 1.0,
        "compute_eff": 1.0,
        "k_half": 0.0,
        "wave_waste": 0.0,
        "overlap": 50.0,
        "row_s": 0.0,
        "buckets": ((math.inf, 128, 128, 1.0),),
    }
    return GemmFit(**{**fields, **overrides})


def moe_mirror_rows(
    tokens: Any,
    touched: Any,
    assignments: Any,
    max_expert: Any,
    *,
    hidden: float,
    inter: float,
    topk: float,
    num_experts: float,
    ep: float,
    dtype: str = "bf16",
) -> dict[str, Any]:
    """Table-like bf16 MoE rows of one shape for ``assert_mirror_matches_runtime``: the given
    per-row tokens, touched experts, pairs and busiest expert's pairs, padded to 16 and 64."""
    tokens = np.asarray(tokens, dtype=float)
    n = tokens.size

    def full(value: float) -> Any:
        return np.full(n, float(value))

    per = np.asarray(assignments, dtype=float) / touched
    return {
        "latency_s": np.ones(n),
        "dtype": np.full(n, dtype, dtype=object),
        "num_tokens": tokens,
        "hidden": full(hidden),
        "inter": full(inter),
        "topk": full(topk),
        "num_experts": full(num_experts),
        "ep": full(ep),
        "num_matrices": full(3.0),
        "assignments": np.asarray(assignments, dtype=float),
        "experts_touched": np.asarray(touched, dtype=float),
        "max_expert": np.asarray(max_expert, dtype=float),
        "padded_16": np.ceil(per / 16) * 16 * touched,
        "padded_64": np.ceil(per / 64) * 64 * touched,
    }


def assert_mirror_matches_runtime(
    fit: MoELayerFit,
    gpu: GPUSpec,
    rows: dict[str, Any],
    tiles: tuple[int, ...],
    runtime_fit: MoELayerFit | None = None,
    **shape: float,
) -> None:
    """The fitting code's numpy mirror (``moe.predict``) prices every row of ``rows`` as the
    runtime ``moe_layer_s`` does, reading each row's loads and padded pairs per tile in
    ``tiles``; ``runtime_fit`` (default ``fit``) is what the runtime is given (e.g. the
    JSON-rounded fit the mirror reads)."""
    mirror = moe.predict({str(rows["dtype"][0]): fit.to_dict()}, gpu, rows)
    for i in range(len(rows["latency_s"])):
        runtime = moe_layer_s(
            runtime_fit or fit,
            gpu,
            num_tokens=rows["num_tokens"][i],
            **shape,
            assignments=rows["assignments"][i],
            experts_touched=rows["experts_touched"][i],
            padded={tile: rows[f"padded_{tile}"][i] for tile in tiles},
            max_pairs=rows["max_expert"][i],
        )
        assert mirror[i] == pytest.approx(runtime, rel=1e-9)
