"""KV-cache transfer cost between replicas (disaggregated prefill, migration).

time = bytes / (streams x per-GPU link bandwidth) + latency: each GPU of the sending replica
holds its shard of the KV (its heads, its layers) and sends it over its own link or NIC in
parallel with the others (DistServe, Splitwise, Mooncake all move KV GPU-to-GPU this way), so
``streams`` is the smaller of the two replicas' GPU counts. With layer-wise overlap the KV of
layer l is sent while layer l+1 is computed (DistServe/Mooncake pipelined transfer): only the
part that outlasts the prefill, and at least one layer's share, is exposed.
"""

from __future__ import annotations

from servesim.perf.types import ReplicaPlan
from servesim.specs.gpu import LinkSpec


def kv_transfer_bytes(plan: ReplicaPlan, num_tokens: int) -> int:
    """Bytes of KV cache for ``num_tokens`` tokens of ``plan``'s model in its KV format."""
    return int(plan.model.kv_bytes_per_token(plan.kv_dtype) * num_tokens)


def kv_transfer_s(
    num_bytes: float,
    link: LinkSpec,
    num_streams: int,
    *,
    compute_s: float = 0.0,
    num_layers: int = 1,
    overlap: bool = False,
) -> float:
    """Exposed seconds to move ``num_bytes`` over ``num_streams`` parallel ``link``s.

    Args:
        num_bytes: KV bytes to move.
        link: the per-GPU link crossed (NVLink in a node, a NIC share across nodes).
        num_streams: GPUs sending in parallel.
        compute_s: the prefill's compute time the transfer may overlap (``overlap``).
        num_layers: layers of the model (the last layer's share is never hidden).
        overlap: send layer by layer during the prefill.
    """
    if num_bytes <= 0:
        return 0.0
    wire_s = num_bytes / (max(num_streams, 1) * link.bandwidth_bytes_per_s)
    if overlap:
        wire_s = max(wire_s / max(num_layers, 1), wire_s - compute_s)
    return wire_s + link.latency_s
