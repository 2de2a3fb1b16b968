"""Rows of the aiconfigurator attention tables for ``servesim.perf.fitting.attention``.

Kernel per (GPU, stack, KV dtype), as the engine picks it by default: vLLM's CUDA platform tries
FLASH_ATTN first, then FLASHINFER (vllm/platforms/cuda.py ``_get_backend_priorities``); on
Hopper vllm-flash-attn runs FA3 (``vllm_flash_attn_fa3``; 0.22.0 labels it
``vllm_flash_attn``), on Ampere/Ada FA2, whose KV cache must be bf16/fp16, so an fp8 KV cache on
L40S falls through to FlashInfer (``fiprefill`` / ``fidecode``). SGLang on Hopper defaults to
fa3 (its triton rows are not used).

Report regimes: prefill by sequence length (<=512, 513-4095, >=4096) and sliding window;
decode by whether one layer's KV fits in L2 (the tables replay back to back, so a small KV is
read from L2) and sliding window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servesim.perf.fitting import heldout
from servesim.perf.fitting.heldout import Rows
from servesim.perf.fitting.tables import find_tables, read_columns, select
from servesim.perf.opmodels.attention_fit import gpu_sms_l2

# (gpu folder, framework, version) -> kv dtype label -> (context kernel, generation kernel)
DEFAULT_KERNELS: dict[tuple[str, str, str], dict[str, tuple[str, str]]] = {
    ("h100_sxm", "vllm", "0.24.0"): {
        "bf16": ("vllm_flash_attn_fa3", "vllm_flash_attn_fa3"),
        "fp8": ("vllm_flash_attn_fa3", "vllm_flash_attn_fa3"),
    },
    ("h200_sxm", "vllm", "0.24.0"): {
        "bf16": ("vllm_flash_attn_fa3", "vllm_flash_attn_fa3"),
        "fp8": ("vllm_flash_attn_fa3", "vllm_flash_attn_fa3"),
    },
    ("h200_sxm", "vllm", "0.22.0"): {
        "bf16": ("vllm_flash_attn", "vllm_flash_attn"),
        "fp8": ("vllm_flash_attn", "vllm_flash_attn"),
    },
    ("h100_sxm", "sglang", "0.5.14"): {"bf16": ("fa3", "fa3"), "fp8": ("fa3", "fa3")},
    ("h200_sxm", "sglang", "0.5.14"): {"bf16": ("fa3", "fa3"), "fp8": ("fa3", "fa3")},
    ("a100_sxm", "vllm", "0.14.0"): {"bf16": ("vllm_flash_attn", "vllm_flash_attn")},
    ("l40s", "vllm", "0.24.0"): {
        "bf16": ("vllm_flash_attn_fa2", "vllm_flash_attn_fa2"),
        "fp8": ("vllm_flashinfer_fiprefill", "vllm_flashinfer_fidecode"),
    },
}
GPU_OF_FOLDER = {
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200-sxm",
    "a100_sxm": "a100-80gb",
    "l40s": "l40s",
}
_KV_LABEL = {"bfloat16": "bf16", "fp8": "fp8"}


def _windowed_pairs(isl: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Causal query-key pairs of one sequence of ``isl`` tokens: sum over i of min(i, window)."""
    full = isl * (isl + 1) / 2.0
    w = np.where(window > 0, window, isl).astype(float)
    capped = w * (w + 1) / 2.0 + (isl - w) * w
    return np.where(isl <= w, full, capped)


def _base_columns(cols: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    window = cols["window_size"][mask] if "window_size" in cols else np.zeros(int(mask.sum()))
    return {
        "latency_s": cols["latency"][mask].astype(float) * 1e-3,
        "num_q_heads": cols["num_heads"][mask].astype(float),
        "num_kv_heads": cols["num_key_value_heads"][mask].astype(float),
        "head_dim": cols["head_dim"][mask].astype(float),
        "window": window.astype(float),
        "num_seqs": cols["batch_size"][mask].astype(float),
        "kernel": cols["kernel_source"][mask].astype(object),
    }


def _finish_rows(out: dict[str, np.ndarray], kv: np.ndarray, op: str, regime: np.ndarray) -> Rows:
    n = out["latency_s"].size
    out["kv_bytes"] = np.where(kv == "fp8", 1.0, 2.0)
    out["dtype"] = kv.astype(object)
    out["op"] = np.full(n, op, dtype=object)
    out["regime"] = regime.astype(object)
    keys = [
        f"{int(a)}/{int(b)}/{int(c)}"
        for a, b, c in zip(out["num_q_heads"], out["num_kv_heads"], out["head_dim"], strict=True)
    ]
    out["shape_key"] = np.asarray(keys, dtype=object)
    return out


def _kernel_mask(cols: dict[str, np.ndarray], kernels: dict[str, tuple[str, str]], which: int):
    kv = np.asarray([_KV_LABEL.get(k, k) for k in cols["kv_cache_dtype"]], dtype=object)
    mask = np.zeros(kv.size, dtype=bool)
    for label, pair in kernels.items():
        mask |= (kv == label) & (cols["kernel_source"] == pair[which])
    return mask & (cols["latency"] > 0), kv


def _prefill_rows(cols: dict[str, np.ndarray], kernels: dict[str, tuple[str, str]]) -> Rows:
    mask, kv = _kernel_mask(cols, kernels, 0)
    out = _base_columns(cols, mask)
    isl = cols["isl"][mask].astype(float)
    out["num_tokens"] = out["num_seqs"] * isl
    out["num_pairs"] = out["num_seqs"] * _windowed_pairs(isl, out["window"])
    out["cached_tokens"] = np.zeros(isl.size)
    out["context_tokens"] = np.zeros(isl.size)
    regime = np.where(isl <= 512, "isl<=512", np.where(isl >= 4096, "isl>=4096", "isl 513-4095"))
    regime = np.where(out["window"] > 0, "window", regime)
    return _finish_rows(out, kv[mask], "prefill_attention", regime)


def _decode_rows(
    cols: dict[str, np.ndarray], kernels: dict[str, tuple[str, str]], l2: float
) -> Rows:
    mask, kv = _kernel_mask(cols, kernels, 1)
    out = _base_columns(cols, mask)
    # the collector's KV length is the prompt (isl) plus the ``step`` tokens already generated
    context = (cols["isl"][mask] + cols["step"][mask]).astype(float)
    context = np.where(out["window"] > 0, np.minimum(context, out["window"]), context)
    out["context_tokens"] = out["num_seqs"] * context
    zeros = np.zeros(context.size)
    out["num_tokens"], out["num_pairs"], out["cached_tokens"] = zeros, zeros, zeros
    kv_bytes = np.where(kv[mask] == "fp8", 1.0, 2.0)
    layer_kv = out["context_tokens"] * 2.0 * out["num_kv_heads"] * out["head_dim"] * kv_bytes
    regime = np.where(layer_kv <= l2, "kv<=L2", "kv>L2")
    regime = np.where(out["window"] > 0, "window", regime)
    return _finish_rows(out, kv[mask], "decode_attention", regime)


def load_rows(root: Path, gpu_folder: str, framework: str, version: str) -> Rows | None:
    """Prefill and decode rows of the engine's default kernels for one (GPU, stack), or None."""
    kernels = DEFAULT_KERNELS.get((gpu_folder, framework, version))
    refs = select(
        find_tables(root), gpu=gpu_folder, family="attention", framework=framework, version=version
    )
    if not refs:
        return None
    if kernels is None:  # a user's own tables: the kernel each phase measured most
        kernels = _most_measured_kernels(refs)
    from servesim.specs.catalog.gpus import get_gpu

    _, l2 = gpu_sms_l2(get_gpu(GPU_OF_FOLDER.get(gpu_folder, gpu_folder)))
    parts = []
    for ref in refs:
        if ref.table == "context_attention_perf":
            parts.append(_prefill_rows(read_columns(ref), kernels))
        elif ref.table == "generation_attention_perf":
            parts.append(_decode_rows(read_columns(ref), kernels, l2))
    return heldout.concat(parts) if parts else None


def _most_measured_kernels(refs: list) -> dict[str, tuple[str, str]]:
    """Per KV dtype label, the (prefill, decode) kernel with the most graph-timed rows."""
    best: dict[str, list[str]] = {}
    for which, table in enumerate(("context_attention_perf", "generation_attention_perf")):
        for ref in [r for r in refs if r.table == table]:
            cols = read_columns(ref)
            labels = [_KV_LABEL.get(k, k) for k in cols["kv_cache_dtype"]]
            for label in sorted(set(labels)):
                sources = [
                    str(src)
                    for src, lab in zip(cols["kernel_source"], labels, strict=True)
                    if lab == label and not str(src).endswith("_eager")
                ]
                if sources:
                    top = max(sorted(set(sources)), key=sources.count)
                    best.setdefault(label, ["", ""])[which] = top
    return {label: (pair[0], pair[1]) for label, pair in best.items() if all(pair)}
