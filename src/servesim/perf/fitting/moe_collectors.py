"""What aiconfigurator's MoE collectors put inside the timed call, per table row.

The router's top-k (``opmodels.moe_router``) is inside some rows and outside others, by the
collector that wrote them (read from aiconfigurator's ``collector/vllm/collect_moe.py`` and
``collector/sglang/collect_moe.py``):

* vLLM 0.24 production-path collector (kernel names ``vllm_<method>_<backend>_<experts>``):
  ``run_single_iteration`` times ``moe_module(hidden_states, router_logits)``, i.e.
  ``FusedMoE.forward``, whose router runs the top-k before the experts at every EP size.
* the older vLLM collector (kernel ``vllm_fused_moe`` / ``vllm_marlin_int4_moe``: A100 vLLM
  0.14, H200 vLLM 0.22) runs ``torch.topk`` on the logits before the benchmark and times
  ``fused_experts(hidden, w1, w2, topk_weights, topk_ids, ...)`` alone.
* SGLang's collector: at EP 1 (``workloads is None``) ``run_op`` calls ``select_experts`` and
  copies its three outputs inside the timed loop; at EP > 1 it feeds the precomputed rank-0
  top-k of ``build_rank0_workloads``, so no router runs in the timed call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servesim.perf.fitting.heldout import Rows
from servesim.perf.fitting.moe_kernels import PORTABLE, portable_kernels, primary_kernels
from servesim.perf.fitting.moe_loads import PAD_TILES, collector_load
from servesim.perf.fitting.tables import find_tables, read_columns, select
from servesim.perf.opmodels.moe_configs import runs_default_tiles
from servesim.perf.opmodels.moe_layer import NUM_MATRICES
from servesim.specs.gpu import GPUSpec

#: Non-gated (squared-ReLU, two-matrix) experts: the Nemotron-3 shapes. Evidence: with three
#: matrices these rows come out 0.40 in log time too slow (log 3/2) at every token count, and
#: the one-token rows would need 4.1 TB/s on a 3.35 TB/s H100.
NON_GATED_SHAPES = frozenset(
    {(2688, 1856, 128, 6), (1024, 2688, 512, 22), (2048, 5120, 512, 22), (8192, 5120, 512, 22)}
)
#: Group-limited routing (``n_group``, ``topk_group`` of the model's router config) of the
#: collected layers: DeepSeek-V3's 256 experts in 8 groups, 4 kept. The collector's logits go
#: through grouped top-k there (``moe_loads.grouped_select``), which piles the balanced rows onto
#: the measured rank. Evidence: with plain top-k loads these rows come out 2-4x slower than the
#: formula above 256 tokens (H100 vLLM fp8_block, balanced: median -61%) under vLLM and SGLang
#: alike, while every other 256-expert shape scores within 15%; with the grouped loads the time
#: per pair matches the 384-expert layer of the same width.
GROUP_LIMITED_SHAPES: dict[tuple[int, int, int, int], tuple[int, int]] = {
    (7168, 2048, 256, 8): (8, 4),
}
#: Table format label -> report label.
DTYPE_LABELS = {
    "bfloat16": "bf16",
    "fp8": "fp8",
    "fp8_block": "fp8_block",
    "w4a16_mxfp4": "mxfp4",
    "int4_wo": "int4",
}
SMALL_TOKENS = 256
#: Launch cost of vLLM's router inside ``FusedMoE.forward`` (top-k softmax and its wrapper
#: kernels) on an H100 / H200 SM clock (1980 MHz), measured as the difference of the two
#: collectors on one GPU: H200 one-token bf16 rows whose weights read in under 2 us take a
#: median 33.4 us under vLLM 0.24 (router timed) and 25.2 us under vLLM 0.22 (top-k
#: precomputed); matched one-token rows differ by a median 8.1-8.7 us at every EP > 1. The
#: tables of one collector cannot tell it from the fused kernel's fixed cost, so it is set here.
VLLM_ROUTER_S = 8.2e-6
VLLM_ROUTER_GPU = "h200"
#: Kernel names of the older vLLM collector, which precomputes the top-k outside the timing.
PRECOMPUTED_TOPK_VLLM = frozenset({"vllm_fused_moe", "vllm_marlin_int4_moe"})


def measured_router_s(kernels: np.ndarray, gpu: GPUSpec) -> float:
    """The router's launch cost fixed for vLLM tables (``VLLM_ROUTER_S`` carried by the SM
    clock ratio, as ``moe_layer`` carries fixed costs); 0 for other stacks (fitted there)."""
    from servesim.perf.opmodels.moe_layer import _clock_ratio

    if not kernels.size or not all(str(k).startswith("vllm_") for k in kernels):
        return 0.0
    return VLLM_ROUTER_S * _clock_ratio(VLLM_ROUTER_GPU, gpu)


def router_timed(framework: str, kernels: np.ndarray, ep: np.ndarray) -> np.ndarray:
    """1.0 where the row's timed call includes the router's top-k, else 0.0 (see above)."""
    if framework == "sglang":
        return (ep == 1).astype(float)
    if framework == "vllm":
        return np.array([0.0 if k in PRECOMPUTED_TOPK_VLLM else 1.0 for k in kernels])
    raise ValueError(f"framework {framework!r}: no collector rule (vllm, sglang)")


def load_rows(root: Path, gpu_folder: str, framework: str, version: str) -> Rows | None:
    """The stack's MoE rows (default kernel per format) with the measured rank's loads."""
    refs = select(
        find_tables(root), gpu=gpu_folder, family="moe", framework=framework, version=version
    )
    if not refs:
        return None
    cols, is_portable = _kept_columns(read_columns(refs[0]))
    n = len(is_portable)
    tokens = cols["num_tokens"].astype(np.int64)
    experts = cols["num_experts"].astype(np.int64)
    topk = cols["topk"].astype(np.int64)
    ep = cols["moe_ep_size"].astype(np.int64)
    hidden = cols["hidden_size"].astype(np.int64)
    shapes = list(zip(hidden, cols["inter_size"], experts, topk, strict=True))
    alpha = np.array(
        [0.0 if d == "balanced" else float(d.split("_")[-1]) for d in cols["distribution"]]
    )
    loads = _loads(shapes, tokens, ep, alpha)
    dtype = np.array([DTYPE_LABELS[d] for d in cols["moe_dtype"]], dtype=object)
    dtype[is_portable] = dtype[is_portable] + PORTABLE
    skew = np.where(alpha == 0.0, "balanced", "skewed")
    inter = (cols["inter_size"] // cols["moe_tp_size"]).astype(float)
    size = np.where(tokens <= SMALL_TOKENS, f"tokens<={SMALL_TOKENS}", f"tokens>{SMALL_TOKENS}")
    return {
        "latency_s": cols["latency"].astype(float) * 1e-3,
        "shape_key": np.array([f"{h}/{i}/{e}/{k}" for h, i, e, k in shapes], dtype=object),
        "op": np.full(n, "moe", dtype=object),
        "kernel": cols["kernel_source"].astype(str).astype(object),
        "dtype": dtype,
        "regime": np.array([f"{a}/{b}" for a, b in zip(size, skew, strict=True)], dtype=object),
        "num_tokens": tokens.astype(float),
        "hidden": hidden.astype(float),
        "inter": inter,
        "topk": topk.astype(float),
        "num_experts": experts.astype(float),
        "ep": ep.astype(float),
        "assignments": loads[:, 0],
        "experts_touched": loads[:, 1],
        **{f"padded_{tile}": loads[:, 2 + i] for i, tile in enumerate(PAD_TILES)},
        "max_expert": loads[:, -1],
        "router_timed": router_timed(framework, cols["kernel_source"].astype(str), ep),
        "default_tiles": _default_tiles(
            (gpu_folder, version), cols["kernel_source"], dtype, experts / ep, inter
        ),
        "num_matrices": np.array(
            [2.0 if s in NON_GATED_SHAPES else float(NUM_MATRICES) for s in shapes]
        ),
    }


#: Table folder -> catalog GPU (the key of ``moe_configs.VLLM_TUNED``).
GPU_OF_FOLDER = {
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200-sxm",
    "a100_sxm": "a100-80gb",
    "l40s": "l40s",
}


def _default_tiles(
    table: tuple[str, str],
    kernels: np.ndarray,
    labels: np.ndarray,
    local: np.ndarray,
    inter: np.ndarray,
) -> np.ndarray:
    """1.0 where the row's kernel ran the old ``get_default_config`` tiles on the table's
    (GPU folder, engine version) (``moe_configs.runs_default_tiles``), else 0.0."""
    gpu, version = GPU_OF_FOLDER.get(table[0], table[0]), table[1]
    flags = [
        runs_default_tiles(str(k), gpu, str(d).removesuffix(PORTABLE), float(e), float(n), version)
        for k, d, e, n in zip(kernels, labels, local, inter, strict=True)
    ]
    return np.array(flags, dtype=float)


def _kept_columns(cols: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rows of each format's default kernel and of its portable kernel (if any), and
    which of the kept rows are the portable ones."""
    primary = primary_kernels(cols)
    portable = portable_kernels(cols, primary)
    pairs = list(zip(cols["moe_dtype"], cols["kernel_source"], strict=True))
    is_portable = np.array([d in portable and portable[d] == k for d, k in pairs], dtype=bool)
    keep = np.array([d in DTYPE_LABELS and primary[d] == k for d, k in pairs]) | is_portable
    return {k: v[keep] for k, v in cols.items()}, is_portable[keep]


def _loads(
    shapes: list[tuple[int, int, int, int]], tokens: np.ndarray, ep: np.ndarray, alpha: np.ndarray
) -> np.ndarray:
    """Per row: the measured rank's pairs, touched experts, padded rows per tile and busiest
    expert's pairs, from the collector's routing (grouped top-k on group-limited shapes)."""
    out = [
        collector_load(
            int(t),
            int(e),
            int(k),
            int(p),
            float(a),
            *GROUP_LIMITED_SHAPES.get((int(h), int(i), int(e), int(k)), (1, 1)),
        )
        for (h, i, e, k), t, p, a in zip(shapes, tokens, ep, alpha, strict=True)
    ]
    return np.array(out).reshape(len(shapes), 3 + len(PAD_TILES))
