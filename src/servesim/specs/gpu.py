"""``GPUSpec`` (one accelerator) and the link types between accelerators."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from servesim.specs.dtypes import DType


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """A point-to-point or switched link as the alpha-beta model sees it.

    Attributes:
        name: e.g. ``nvlink4``, ``pcie5``, ``ib-ndr-400``.
        bandwidth_bytes_per_s: unidirectional bandwidth available to one GPU.
        latency_s: per-message start-up latency (alpha).
    """

    name: str
    bandwidth_bytes_per_s: float
    latency_s: float


@dataclass(frozen=True, slots=True)
class GPUSpec:
    """One accelerator model.

    Attributes:
        name: catalog key, lowercase (``h100-sxm``).
        vendor: ``nvidia`` or ``amd``.
        memory_bytes: device memory.
        hbm_bandwidth_bytes_per_s: peak memory bandwidth.
        intra_node_link: the GPU-to-GPU link inside a node (NVLink or PCIe).
        host_link: GPU-to-host link (PCIe), used for KV swap and offload.
        tdp_w: board power limit; idle_w: idle draw.
        price_per_hour_usd: indicative on-demand price for one GPU-hour.
        peak_flops_per_s: dense (no sparsity) tensor peak per dtype; missing = unsupported.
        sources: field name -> citation (data sheet URL or document) for every number.
    """

    name: str
    vendor: str
    memory_bytes: int
    hbm_bandwidth_bytes_per_s: float
    intra_node_link: LinkSpec
    host_link: LinkSpec
    tdp_w: float
    idle_w: float
    price_per_hour_usd: float
    peak_flops_per_s: Mapping[DType, float] = field(default_factory=dict, hash=False)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
