"""``GPUSpec`` (one accelerator) and the link types between accelerators."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from servesim.core.errors import ConfigError
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
            ``fp32`` holds the dense TF32 tensor-core figure (what fp32 GEMMs run on when
            TF32 is allowed), not the plain CUDA-core FP32 rate.
        sources: field name -> citation (data sheet URL or document) for every number;
            peak figures are keyed ``peak_flops_per_s.<dtype>``.
        form_factor: ``sxm``, ``pcie`` or ``oam``; decides the default node topology.
        pair_link: NVLink bridge joining two PCIe cards, when the card has one.
        architecture: GPU architecture generation (``ampere``, ``ada``, ``hopper``,
            ``blackwell``, ``cdna3``, ...): a GPU without measured kernel tables borrows the
            kernel efficiencies of the nearest calibrated architecture.
        l2_cache_bytes: on-chip L2 cache (small KV that fits stays in L2 between replays).
        num_sms: streaming multiprocessors (compute units on AMD): GEMM wave quantisation.
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
    form_factor: str = "sxm"
    pair_link: LinkSpec | None = None
    architecture: str = ""
    l2_cache_bytes: int = 0
    num_sms: int = 0

    def peak_flops(self, dtype: DType | str) -> float:
        """Dense tensor peak FLOP/s for ``dtype``.

        Raises:
            ConfigError: the GPU has no tensor path for this dtype (e.g. fp8 on an A100).
        """
        key = DType.parse(dtype)
        if key not in self.peak_flops_per_s:
            supported = ", ".join(d.value for d in self.peak_flops_per_s)
            raise ConfigError("dtype", key.value, f"{self.name} supports only {supported}")
        return self.peak_flops_per_s[key]

    def supports(self, dtype: DType | str) -> bool:
        """True when the GPU has a tensor-core peak for ``dtype``."""
        return DType.parse(dtype) in self.peak_flops_per_s

    @property
    def memory_gib(self) -> float:
        """Device memory in GiB."""
        return self.memory_bytes / 2**30

    def summary(self) -> dict[str, object]:
        """Plain dict of the spec (for JSON output); FLOP/s keyed by dtype name."""
        return {
            "name": self.name,
            "vendor": self.vendor,
            "form_factor": self.form_factor,
            "memory_bytes": self.memory_bytes,
            "hbm_bandwidth_bytes_per_s": self.hbm_bandwidth_bytes_per_s,
            "peak_flops_per_s": {d.value: f for d, f in self.peak_flops_per_s.items()},
            "intra_node_link": _link_dict(self.intra_node_link),
            "pair_link": _link_dict(self.pair_link) if self.pair_link else None,
            "host_link": _link_dict(self.host_link),
            "tdp_w": self.tdp_w,
            "idle_w": self.idle_w,
            "price_per_hour_usd": self.price_per_hour_usd,
            "architecture": self.architecture,
            "l2_cache_bytes": self.l2_cache_bytes,
            "num_sms": self.num_sms,
            "sources": dict(self.sources),
        }


def _link_dict(link: LinkSpec) -> dict[str, object]:
    return {
        "name": link.name,
        "bandwidth_bytes_per_s": link.bandwidth_bytes_per_s,
        "latency_s": link.latency_s,
    }
