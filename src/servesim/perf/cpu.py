"""The host CPU as a compute resource (CPU-GPU hybrid serving).

In hybrid serving (APEX, Fan et al. 2025; NEO, Jiang et al. 2025; FastDecode, He & Zhai 2024)
the KV of some decoding sequences lives in host memory and their decode attention runs on the
host CPU, while the GPU runs every layer's GEMMs for all sequences and the attention of the
others. Per layer, each CPU-attended sequence's q, k, v cross the host link to the CPU and the
attention output comes back. This module prices those two parts; ``engine.hybrid`` overlaps
them with the GPU's part of the iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.specs.catalog.cpus import CPUSpec
from servesim.specs.dtypes import DType
from servesim.specs.gpu import LinkSpec
from servesim.specs.model import ModelSpec


@dataclass(frozen=True, slots=True)
class CPUAttentionCost:
    """Decode attention of some sequences on the host CPU, one iteration (all layers).

    Attributes:
        time_s: the CPU's time, ``max(kv_bytes / effective bandwidth, flops / effective FLOP
            rate)`` (a roofline on the host).
        kv_bytes: KV bytes read from host memory.
        flops: attention FLOPs (QK^T and PV).
    """

    time_s: float
    kv_bytes: float
    flops: float


def cpu_decode_attention(
    cpu: CPUSpec,
    model: ModelSpec,
    kv_dtype: DType,
    context_tokens: int,
    *,
    bandwidth_efficiency: float,
    flop_efficiency: float,
) -> CPUAttentionCost:
    """Cost of decode attention over ``context_tokens`` keys in total (summed over the
    sequences the CPU attends), every layer.

    Decode attention reads each cached token's K and V once per step and does
    2 FLOPs per multiply-add of QK^T and of PV: ``4 * heads * head_dim`` FLOPs per key per
    layer. At one query per sequence that is a few FLOPs per byte, far under any CPU's
    FLOP/byte ratio, so the bandwidth term governs (FastDecode's observation).
    """
    kv_bytes = float(context_tokens) * model.kv_bytes_per_token(kv_dtype)
    flops = 4.0 * context_tokens * model.num_attention_heads * model.head_dim * model.num_layers
    if context_tokens <= 0:
        return CPUAttentionCost(0.0, 0.0, 0.0)
    memory_s = kv_bytes / (cpu.memory_bandwidth_bytes_per_s * bandwidth_efficiency)
    compute_s = flops / (cpu.flops_per_s("fp32") * flop_efficiency)
    return CPUAttentionCost(max(memory_s, compute_s), kv_bytes, flops)


def host_link_activation_bytes(model: ModelSpec, act_dtype: DType, num_seqs: int) -> float:
    """Bytes crossing the host link per layer for ``num_seqs`` CPU-attended sequences: their
    new q, k, v to the host and the attention output back (one token each)."""
    width = model.head_dim * (2 * model.num_attention_heads + 2 * model.num_kv_heads)
    return float(num_seqs) * width * act_dtype.num_bytes


def host_link_transfer_s(
    model: ModelSpec, act_dtype: DType, num_seqs: int, link: LinkSpec
) -> float:
    """Time of the per-layer q/k/v and output copies of ``num_seqs`` CPU-attended
    sequences, all layers: two messages a layer (to the host, back), each paying the link's
    latency, and the bytes at its bandwidth. Zero when the CPU attends nothing."""
    if num_seqs <= 0:
        return 0.0
    per_layer = host_link_activation_bytes(model, act_dtype, num_seqs)
    bandwidth_s = per_layer / link.bandwidth_bytes_per_s if link.bandwidth_bytes_per_s else 0.0
    return model.num_layers * (bandwidth_s + 2 * link.latency_s)


def kv_move_s(to_host_bytes: float, to_gpu_bytes: float, link: LinkSpec) -> float:
    """Time to move KV between GPU and host memory over the host ``link`` in one step: one
    copy stream per direction (PCIe is full duplex, and the catalog's bandwidth is per
    direction), each paying the link's latency once for its batch of blocks; zero without
    bytes. A sequence moved to the CPU pays its KV bytes / bandwidth (+ latency)."""
    if link.bandwidth_bytes_per_s <= 0:
        return 0.0
    times = [
        b / link.bandwidth_bytes_per_s + link.latency_s
        for b in (to_host_bytes, to_gpu_bytes)
        if b > 0
    ]
    return max(times, default=0.0)
