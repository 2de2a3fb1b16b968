"""LoRA adapter sizes and the batched-LoRA (Punica/S-LoRA SGMV) kernel cost.

A LoRA adapter on a projection ``W`` (``d_in x d_out``) adds ``x A B`` with ``A``
(``d_in x r``) and ``B`` (``r x d_out``): ``r * (d_in + d_out)`` parameters and, per token,
``2 r (d_in + d_out)`` FLOPs (the "shrink" and "expand" GEMVs). Punica's SGMV and S-LoRA's
MBGMM kernels run every adapter of a batch in one launch per projection: each adapter's
weights are read once per step, and each token computes only its own adapter's product.
Adapter weights stay in 16-bit whatever the base model's format (vLLM loads them in the
model's activation dtype; PEFT checkpoints are bf16/fp16).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from servesim.core.errors import ConfigError
from servesim.specs.dtypes import DType
from servesim.specs.model import ModelSpec

#: projections an adapter may target (vLLM / PEFT module names)
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_WEIGHT_BYTES = 2  # bf16 / fp16
# SGMV efficiencies: assumptions, not measurements. The shrink and expand GEMMs are skinny
# (r = 8..128 columns), far from tensor-core peak; Punica reports its SGMV kernel close to
# memory-bound latency at decode batch sizes, so the weight read dominates.
SGMV_COMPUTE_EFF = 0.3
SGMV_MEMORY_EFF = 0.7


def module_dims(model: ModelSpec, module: str) -> tuple[int, int]:
    """(input, output) width of one projection of ``model`` (dense FFN widths)."""
    q = model.num_attention_heads * model.head_dim
    kv = model.num_kv_heads * model.head_dim
    h, f = model.hidden_size, model.ffn_size
    dims = {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "gate_proj": (h, f),
        "up_proj": (h, f),
        "down_proj": (f, h),
    }
    if module not in dims:
        raise ConfigError("lora.target_modules", module, f"must be one of {', '.join(MODULES)}")
    return dims[module]


def adapter_width(model: ModelSpec, modules: tuple[str, ...]) -> int:
    """Sum over targeted projections and layers of ``d_in + d_out`` (params per unit rank)."""
    per_layer = sum(sum(module_dims(model, m)) for m in modules)
    return per_layer * model.num_layers


def adapter_bytes(model: ModelSpec, rank: int, modules: tuple[str, ...]) -> int:
    """Bytes of one adapter of rank ``rank`` (all layers, all GPUs together)."""
    return rank * adapter_width(model, modules) * LORA_WEIGHT_BYTES


@dataclass(frozen=True, slots=True)
class LoRACost:
    """One step's batched-LoRA kernels on one GPU of the replica.

    Attributes:
        time_s: added to the step (all layers).
        flops: FLOPs of the whole replica (all GPUs).
        hbm_bytes: bytes moved on the whole replica (all GPUs).
    """

    time_s: float
    flops: float
    hbm_bytes: float


def sgmv_cost(
    model: ModelSpec,
    *,
    tp: int,
    peak_flops_per_s: float,
    hbm_bytes_per_s: float,
    modules: tuple[str, ...],
    tokens_by_rank: Mapping[int, int],
    adapters_by_rank: Mapping[int, int],
) -> LoRACost:
    """Cost of the LoRA products for ``tokens_by_rank[r]`` tokens using rank-``r`` adapters,
    ``adapters_by_rank[r]`` distinct adapters of that rank in the batch. TP splits every
    adapter like its base projection, so each GPU does ``1/tp`` of the work."""
    width = adapter_width(model, modules)
    flops = sum(2.0 * n * r * width for r, n in tokens_by_rank.items())
    weights = sum(float(n * r * width * LORA_WEIGHT_BYTES) for r, n in adapters_by_rank.items())
    # each token reads its input and reads/writes the base output it adds to (16-bit)
    per_layer_io = sum(m_in + 2 * m_out for m_in, m_out in (module_dims(model, m) for m in modules))
    tokens = sum(tokens_by_rank.values())
    activations = 2.0 * tokens * per_layer_io * model.num_layers
    nbytes = weights + activations
    if not flops:
        return LoRACost(0.0, 0.0, 0.0)
    t_c = flops / tp / (peak_flops_per_s * SGMV_COMPUTE_EFF)
    t_m = nbytes / tp / (hbm_bytes_per_s * SGMV_MEMORY_EFF)
    return LoRACost(max(t_c, t_m), flops, nbytes)


def peak_16bit_flops(peaks: Mapping[DType, float]) -> float:
    """The GPU's bf16 (else fp16) tensor peak, which LoRA products run at."""
    for dtype in (DType.BF16, DType.FP16):
        if dtype in peaks:
            return float(peaks[dtype])
    return float(max(peaks.values(), default=0.0)) or 1.0
