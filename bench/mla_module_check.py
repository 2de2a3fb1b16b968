"""End check of MLA on vLLM 0.24: the whole attention module's measured time against the sum
of what servesim prices separately (the projection GEMMs from the GEMM fits + the attention
kernel from the MLA fit).

aiconfigurator's ``mla_context_module_perf`` / ``mla_generation_module_perf`` (vLLM 0.24.0,
H100/H200) time one ``DeepseekV2MLAAttention`` forward with DeepSeek-V3 widths: fused q_a /
kv_a projection, q_b, kv_b (prefill) or the absorbed W_UK / W_UV batched GEMMs (decode), the
attention kernel and o_proj (its collector, ``collector/vllm/collect_mla_module.py``). The
norms and RoPE are not priced here (elementwise, microseconds). vLLM's kernels are not SGLang's:
the attention term is SGLang 0.5.14's FA3 MLA fit on the same GPU standing in for vLLM's
FLASH_ATTN (prefill), FLASH_ATTN_MLA and FLASHMLA (decode), so the residual is the kernel gap
plus whatever of the module is unpriced. Nothing is fitted to these tables.

Run: ``python bench/mla_module_check.py [--data ../shared/data]``.
"""

from __future__ import annotations

import argparse

import numpy as np

from servesim.perf.calibrate_data import require_data_dir
from servesim.perf.calibration import load_calibration
from servesim.perf.fitting.heldout import error_stats
from servesim.perf.fitting.mla import mla_layer, row_batch
from servesim.perf.fitting.tables import aic_root, find_tables, read_columns, select
from servesim.perf.kernel_set import KernelSet
from servesim.perf.kernel_shapes import GemmShape
from servesim.perf.opmodels.mla import MLAFits, mla_decode_s, mla_prefill_s
from servesim.specs.catalog import get_gpu
from servesim.specs.dtypes import DType

# DeepSeek-V3 config.json: hidden 7168, q_lora_rank 1536, kv_lora_rank 512, rope 64, nope 128, v 128
HIDDEN, Q_LORA, KV_LORA, ROPE, NOPE, V = 7168, 1536, 512, 64, 128, 128
_GPUS = {"h100_sxm": ("h100-sxm", "h100"), "h200_sxm": ("h200-sxm", "h200")}


def projections_s(kernels: KernelSet, m: int, heads: int, gemm: str, decode: bool) -> float:
    """The module's GEMMs for ``m`` tokens with ``heads`` heads on the GPU."""
    label, wb = ("fp8_block", 1.0) if gemm == "fp8_block" else ("bf16", 2.0)
    peak = kernels.gpu.peak_flops(DType.BF16)

    def gemm_s(n: int, k: int, quantised: bool = True) -> float:
        if quantised:
            return kernels.gemm_s(GemmShape(m, n, k, label, wb, wb), peak)
        return kernels.gemm_s(GemmShape(m, n, k), peak)

    total = gemm_s(Q_LORA + KV_LORA + ROPE, HIDDEN)  # fused q_a + kv_a
    total += gemm_s(heads * (NOPE + ROPE), Q_LORA)  # q_b
    if decode:  # absorbed weights, bf16 batched GEMMs in vLLM (W_UK_T, W_UV)
        total += gemm_s(heads * KV_LORA, NOPE, False) + gemm_s(heads * V, KV_LORA, False)
    else:
        total += gemm_s(heads * (NOPE + V), KV_LORA)  # kv_b decompression
    return total + gemm_s(HIDDEN, heads * V)  # o_proj


def _analytic_s(
    kernels: KernelSet, heads: int, seqs: int, per_seq: int, decode: bool, kv_bytes: float
) -> float:
    """The analytic MLA attention time (``perf.attention``, what vLLM runs on today)."""
    op = np.array(["mla_decode" if decode else "mla_prefill"], dtype=object)
    rows = {"op": op, "num_seqs": np.array([seqs]), "tokens_per_seq": np.array([per_seq])}
    costs = kernels.attention_s(mla_layer(heads), row_batch(rows, 0), None, kv_bytes)
    return costs[1 if decode else 0].time_s


def check(root, folder: str) -> list[dict]:
    """Per (phase, KV dtype, gemm type, kernel): the module residual's error statistics."""
    catalog, key = _GPUS[folder]
    gpu = get_gpu(catalog)
    calibration = load_calibration()
    kernels = KernelSet(calibration, "vllm-0.24", gpu)
    fits = MLAFits.from_dict(calibration.kernel_stacks["sglang-0.5"][key]["mla"])
    out = []
    for ref in select(find_tables(root), gpu=folder, family="mla", framework="vllm"):
        decode = ref.table == "mla_generation_module_perf"
        cols = read_columns(ref)
        groups: dict[tuple, list[tuple[float, float]]] = {}
        for i in range(len(cols["latency"])):
            b, isl, h = int(cols["batch_size"][i]), int(cols["isl"][i]), int(cols["num_heads"][i])
            kvb = 1.0 if cols["kv_cache_dtype"][i] == "fp8" else 2.0
            ctx = isl + int(cols["step"][i]) if decode else isl
            fit = fits.get("decode" if decode else "prefill", kvb)
            m = b if decode else b * isl
            if decode:
                attn = mla_decode_s(
                    fit, gpu, num_seqs=b, context_tokens=b * ctx, heads=h, kv_bytes=kvb
                )
            else:
                pairs = b * isl * (isl + 1) / 2.0
                attn = mla_prefill_s(fit, gpu, num_seqs=b, num_tokens=m, pairs=pairs, heads=h)
            proj = projections_s(kernels, m, h, str(cols["gemm_type"][i]), decode)
            analytic = _analytic_s(kernels, h, b, ctx if decode else isl, decode, kvb)
            label = (
                "decode" if decode else "prefill",
                str(cols["kv_cache_dtype"][i]),
                str(cols["gemm_type"][i]),
                str(cols["kernel_source"][i]),
            )
            actual = float(cols["latency"][i]) * 1e-3
            groups.setdefault(label, []).append((proj + attn, proj + analytic, actual))
        for label, rows in sorted(groups.items()):
            fitted, analytic_pred, actual = (np.array(x) for x in zip(*rows, strict=True))
            row = {"gpu": key, "group": label, **error_stats(fitted, actual).to_dict()}
            old = error_stats(analytic_pred, actual)
            row.update(analytic_mape=old.mape, analytic_median=old.median_signed)
            out.append(row)
    return out


def main() -> int:
    """Print the module end check per GPU and group."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    root = aic_root(require_data_dir(parser.parse_args().data))
    for folder in _GPUS:
        for row in check(root, folder):
            phase, kv, gemm, kernel = row["group"]
            print(
                f"{row['gpu']:5} {phase:7} kv={kv:8} gemm={gemm:9} {kernel:15} n={row['n']:5}"
                f" fit MAPE {row['mape']:6.1f} median {row['median_signed']:+6.1f} | analytic"
                f" {row['analytic_mape']:6.1f} {row['analytic_median']:+6.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
