"""Collective transfer rules (``opmodels.transfer`` applies them): a calibrated GPU's collective
fits carried to another GPU's link, clock and node topology. Each rule and its evidence is in
``opmodels.transfer``'s module docstring (split from it)."""

from __future__ import annotations

import copy
from typing import Any

from servesim.perf.opmodels.collectives import host_ring_bus_bytes_per_s
from servesim.specs.gpu import GPUSpec


def link_class(gpu: GPUSpec) -> str:
    """``pcie`` when GPUs of a node talk over PCIe, else ``nvlink`` (or the link's name)."""
    name = gpu.intra_node_link.name
    if name.startswith("pcie"):
        return "pcie"
    return "nvlink" if name.startswith("nvlink") else name


#: Architectures whose NVSwitch systems run NCCL's NVLS algorithm (NVLink SHARP, in-switch
#: reduction): NCCL builds its NVLS kernels for sm_90 and newer only (src/device/generate.py,
#: ``arch = max(arch, 900)`` for every NVLS function).
NVLS_ARCHITECTURES = ("hopper", "blackwell")
#: Bulk bus-bandwidth gain over the int8 ring above which a 16-bit all-reduce regime is NVLS: an
#: int8 reduction costs a few % more per byte where no NVLS runs (H100 reduce-scatter, which
#: NCCL runs as a ring here, int8 / half at 512 MB: 2-7%), NVLS gains 27% (8 GPUs: 445 / 351).
NVLS_MIN_GAIN = 1.1


def has_nvls(gpu: GPUSpec) -> bool:
    """Whether NCCL can run NVLS on ``gpu``'s node (Hopper or newer on NVSwitch, no bridge)."""
    name = gpu.intra_node_link.name
    return (
        gpu.architecture in NVLS_ARCHITECTURES
        and link_class(gpu) == "nvlink"
        and ("bridge" not in name)
    )


def _ring_for_nvls(params: dict[str, Any]) -> None:
    """Give a 16-bit all-reduce the donor's int8 (ring) bulk regime where the donor ran NVLS.

    NVLS has no 8-bit types (``ncclNvlsSupported``), so the donor's int8 all-reduce bulk regime
    is its ring at the same group size; a target without NVLS runs that ring for 16-bit data
    too. Only the bulk regime is NVLS's (H100, 8 GPUs: the 16-bit fit's 454 GB/s above 8 MB
    against the ring's 349; below, the 16-bit regimes run at or under the int8 ones), so the
    smaller regimes are kept. A group whose 16-bit bulk regime does not beat the ring by
    ``NVLS_MIN_GAIN`` keeps its fit.
    """
    nccl = params.get("nccl")
    if not isinstance(nccl, dict):
        return
    fits = nccl.get("fits", [])
    ring = {
        int(f["num_gpus"]): f
        for f in fits
        if f["collective"] == "all_reduce" and f["implementation"] == "nccl_int8"
    }
    for fit in fits:
        other = ring.get(int(fit["num_gpus"]))
        if fit["collective"] != "all_reduce" or fit["implementation"] != "nccl" or not other:
            continue
        if fit["segments"][-1][1] * NVLS_MIN_GAIN < other["segments"][-1][1]:
            fit["segments"][-1] = list(other["segments"][-1])


def adapt_collectives(
    params: dict[str, Any], source: GPUSpec, target: GPUSpec, clock: float
) -> None:
    """Carry collective ``params`` fitted on ``source`` to ``target`` (in place); ``clock``
    is donor / target SM clock (``transfer.clock_ratio``)."""
    from servesim.specs.cluster import default_node

    if has_nvls(source) and not has_nvls(target):
        _ring_for_nvls(params)
    link_bw = target.intra_node_link.bandwidth_bytes_per_s
    link_ratio = link_bw / source.intra_node_link.bandwidth_bytes_per_s
    is_pcie = link_class(target) == "pcie"
    # a PCIe donor's regimes are bound by its host path, not by a protocol: scale with the link
    keeps_bus_bw = link_class(source) != "pcie"
    # an NVLink donor's fits carried to a PCIe ring of more than 2 GPUs: the host path's rate,
    # shared across the sockets beyond one socket's GPUs (a PCIe donor's own fits at those
    # sizes already measure one)
    per_socket = default_node(target).gpus_per_socket if is_pcie else None
    for part in params.values():
        if not isinstance(part, dict) or "fits" not in part:
            continue
        for fit in part["fits"]:
            n = int(fit["num_gpus"])
            host_ring = is_pcie and keeps_bus_bw and n > 2
            host = link_bw / host_ring_bus_bytes_per_s(n, per_socket) if host_ring else 0.0
            _adapt_segments(fit["segments"], clock, link_ratio, keeps_bus_bw, host)
    if is_pcie and keeps_bus_bw:
        _pcie_custom_fallback(params)


def _pcie_custom_fallback(params: dict[str, Any]) -> None:
    """On PCIe, price a graph-captured custom all-reduce of more than 2 GPUs as NCCL (in place).

    vLLM turns its custom all-reduce off for more than two GPUs without full NVLink and runs
    PyNccl instead (vllm/distributed/device_communicators/custom_all_reduce.py: "Custom
    allreduce is disabled because it's not supported on more than two PCIe-only GPUs"), so an
    NVLink donor's one-shot / two-shot kernel fits do not apply there; its NCCL all-reduce fit
    (already carried to the target) does. Two GPUs keep the custom kernel (P2P over PCIe).
    The eager variant keeps its fit: its time is the host launch floor, not the kernel.
    """
    custom, nccl = params.get("custom"), params.get("nccl")
    if not isinstance(custom, dict) or not isinstance(nccl, dict):
        return
    ring = {
        int(f["num_gpus"]): f
        for f in nccl.get("fits", [])
        if f["collective"] == "all_reduce" and f["implementation"] == "nccl"
    }
    for fit in custom.get("fits", []):
        n = int(fit["num_gpus"])
        if fit["implementation"] == "custom_graph" and n > 2 and n in ring:
            fit.update(copy.deepcopy({k: ring[n][k] for k in ("segments", "edges_bytes")}))
            fit["ref_link_latency_s"] = ring[n]["ref_link_latency_s"]


def _adapt_segments(
    segments: list[list[float]],
    clock: float,
    link_ratio: float,
    keeps_bus_bw: bool,
    host: float,
) -> None:
    """Carry one fit's regimes ``[alpha_s, link_over_bus]`` (in place).

    ``link_over_bus`` is relative to the link (the opmodel divides by the target's), so a
    regime kept at the donor's absolute bus bandwidth gets ``link_ratio * clock`` times it.
    ``host`` > 0: the target's ``link_over_bus`` at the host-routed ring's rate, a floor.
    """
    bulk = segments[-1][1] if segments[-1][1] > 0 else 1.0
    cap = max(bulk, host) if host else bulk
    for seg in segments:
        seg[0] *= clock
        if seg[1] <= 0:
            continue
        if keeps_bus_bw and seg[1] >= bulk:
            # protocol-bound (slower than the bulk regime): the donor's bus bandwidth at the
            # target's clock, unless the target's link at the bulk efficiency is slower
            seg[1] = max(seg[1] * link_ratio * clock, cap)
        else:
            seg[1] = max(seg[1], cap) if host else seg[1]
