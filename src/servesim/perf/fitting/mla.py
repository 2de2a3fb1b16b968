"""MLA attention kernel fit: rows of the ``mla`` kernel tables, fit, and prediction.

Reads aiconfigurator's ``context_mla_perf`` / ``generation_mla_perf`` (SGLang 0.5.14 on H100
and H200, ``kernel_source`` flash_attention = FA3 MLA; PROVENANCE.md). ``num_heads`` is the
heads on one rank after TP (128 / tp_size). A decode row attends ``isl + step`` cached tokens
per sequence (``step`` past tokens, the new one included); a context row is a causal prefill of
``isl`` tokens per sequence from scratch (``step`` 0). The hold-out unit is one ``num_heads``
value: a new TP degree is a new head count per rank. vLLM's MLA tables on H100/H200 are whole
modules (projections included): they are the end check (``bench/mla_module_check.py``), not
fitted here; vLLM 0.14's Triton MLA on A100 is not fitted yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from servesim.perf.fitting import heldout
from servesim.perf.fitting.heldout import Rows, fit_log_grid
from servesim.perf.fitting.tables import find_tables, read_columns, select
from servesim.perf.opmodels.grid import LogGrid
from servesim.perf.opmodels.mla import (
    KV_LORA_RANK,
    QK_NOPE_DIM,
    ROPE_DIM,
    V_HEAD_DIM,
    MLAPhaseFit,
    mla_decode_s,
    mla_prefill_s,
)
from servesim.perf.shapes import LayerShapes
from servesim.perf.types import BatchShape
from servesim.specs.gpu import GPUSpec

_KV_LABEL = {"bfloat16": "bf16", "fp8": "fp8"}
_TABLES = {"context_mla_perf": "mla_prefill", "generation_mla_perf": "mla_decode"}
# the measured kernel per framework (only SGLang's FA3 MLA is fitted so far)
_KERNEL = {"sglang": "flash_attention"}
# grid points (log2): sequences 1..1024, tokens per sequence 1..128k, heads 1..128. Heads get
# four points so a held-out head count lies between fitted ones.
_AXES = {
    "mla_prefill": (
        (0.0, 2.0, 4.0, 6.0, 8.0),
        tuple(float(x) for x in range(0, 16, 2)),
        (0.0, 2.5, 5.0, 7.0),
    ),
    "mla_decode": (
        (0.0, 2.0, 4.0, 6.0, 8.0, 10.0),
        (0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 17.0),
        (0.0, 2.5, 5.0, 7.0),
    ),
}


def load_rows(root: Path, gpu_folder: str, framework: str, version: str) -> Rows | None:
    """Prefill and decode rows of the fitted MLA kernel for one (GPU, stack), or None."""
    kernel = _KERNEL.get(framework)
    refs = select(
        find_tables(root), gpu=gpu_folder, family="mla", framework=framework, version=version
    )
    parts = []
    for ref in refs:
        if kernel is None or ref.table not in _TABLES:
            continue
        cols = read_columns(ref)
        mask = cols["kernel_source"] == kernel
        parts.append(_rows(cols, mask, _TABLES[ref.table]))
    return heldout.concat(parts) if parts else None


def _rows(cols: dict[str, np.ndarray], mask: np.ndarray, op: str) -> Rows:
    seqs = cols["batch_size"][mask].astype(float)
    isl = cols["isl"][mask].astype(float)
    per_seq = isl + cols["step"][mask].astype(float) if op == "mla_decode" else isl
    heads = cols["num_heads"][mask].astype(int)
    kv = np.array([_KV_LABEL.get(k, str(k)) for k in cols["kv_cache_dtype"][mask]], dtype=object)
    n = int(mask.sum())
    return {
        "latency_s": cols["latency"][mask].astype(float) * 1e-3,
        "shape_key": heads.astype(object),
        "op": np.full(n, op, dtype=object),
        "dtype": kv,
        "regime": np.full(n, "all", dtype=object),
        "num_seqs": seqs,
        "tokens_per_seq": per_seq,
        "num_heads": heads,
        "kv_bytes": np.where(kv == "fp8", 1.0, 2.0),
    }


def _formula(fit: MLAPhaseFit, gpu: GPUSpec, rows: Rows, i: int) -> float:
    seqs, per_seq = int(rows["num_seqs"][i]), float(rows["tokens_per_seq"][i])
    heads = int(rows["num_heads"][i])
    if rows["op"][i] == "mla_decode":
        return mla_decode_s(
            fit,
            gpu,
            num_seqs=seqs,
            context_tokens=seqs * per_seq,
            heads=heads,
            kv_bytes=float(rows["kv_bytes"][i]),
        )
    pairs = seqs * per_seq * (per_seq + 1.0) / 2.0
    return mla_prefill_s(
        fit, gpu, num_seqs=seqs, num_tokens=seqs * per_seq, pairs=pairs, heads=heads
    )


def _key(op: str, dtype: str) -> str:
    return f"{op.removeprefix('mla_')}_{dtype}"


def fit(rows: Rows, gpu: GPUSpec) -> dict[str, Any]:
    """Per (phase, KV dtype): the floor (smallest measured call) and the log-grid correction
    of (floor + roofline) fitted to every row."""
    out: dict[str, Any] = {}
    for op, dtype in sorted(set(zip(rows["op"], rows["dtype"], strict=True))):
        mask = (rows["op"] == op) & (rows["dtype"] == dtype)
        sub = heldout.take(rows, mask)
        axes = _AXES[op]
        flat = MLAPhaseFit(
            float(np.min(sub["latency_s"])),
            LogGrid(tuple(axes), tuple(0.0 for _ in range(int(np.prod([len(a) for a in axes]))))),
        )
        base = np.array([_formula(flat, gpu, sub, i) for i in range(len(sub["latency_s"]))])
        coords = np.stack([sub["num_seqs"], sub["tokens_per_seq"], sub["num_heads"]], axis=1)
        grid = fit_log_grid(coords, np.log(sub["latency_s"] / base), axes)
        out[_key(op, dtype)] = MLAPhaseFit(flat.floor_s, grid).to_dict()
    return out


def predict(params: dict[str, Any], gpu: GPUSpec, rows: Rows) -> np.ndarray:
    """Seconds per row through the run-time model (NaN where the (phase, dtype) is unfitted)."""
    fits = {k: MLAPhaseFit.from_dict(v) for k, v in params.items()}
    out = np.full(len(rows["latency_s"]), np.nan)
    for i in range(len(out)):
        found = fits.get(_key(str(rows["op"][i]), str(rows["dtype"][i])))
        if found is not None:
            out[i] = _formula(found, gpu, rows, i)
    return out


def mla_layer(heads: int) -> LayerShapes:
    """A DeepSeek-V3 MLA layer's attention widths with ``heads`` heads on this GPU (the
    shapes of the tables), for pricing one row through the analytic model (``baseline``)."""
    qk = QK_NOPE_DIM + ROPE_DIM
    return LayerShapes(
        hidden=heads * qk,
        head_dim=qk,
        num_q_heads=heads,
        num_kv_heads=heads,
        qkv_out=0,
        attn_out_in=heads * V_HEAD_DIM,
        ffn=0,
        up_out=0,
        is_mla=True,
        kv_lora_rank=KV_LORA_RANK,
        qk_rope_dim=ROPE_DIM,
        qk_nope_dim=QK_NOPE_DIM,
        v_head_dim=V_HEAD_DIM,
    )


def row_batch(rows: Rows, i: int) -> BatchShape:
    """Row ``i`` as the ``BatchShape`` the run-time attention model takes."""
    seqs, per_seq = int(rows["num_seqs"][i]), int(rows["tokens_per_seq"][i])
    if rows["op"][i] == "mla_decode":
        return BatchShape(
            num_decode_seqs=seqs,
            decode_context_tokens=seqs * per_seq,
            max_decode_context_tokens=per_seq,
        )
    return BatchShape(
        num_prefill_seqs=seqs,
        num_prefill_tokens=seqs * per_seq,
        prefill_chunk_sq=seqs * per_seq * per_seq,
        max_prefill_chunk_tokens=per_seq,
    )
