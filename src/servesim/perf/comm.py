"""Collective communication time: fitted alpha-beta lines where measured, else link alpha-beta.

Analytic fallbacks (Thakur et al. 2005; NCCL's ring/tree): ring all-reduce moves
2(n-1)/n of the tensor over each link in 2(n-1) steps; a tree all-reduce takes ~2 log2(n) steps
moving the whole tensor; all-gather / reduce-scatter / all-to-all move (n-1)/n in n-1 steps.
"""

from __future__ import annotations

import math

from servesim.perf.calibration import Calibration
from servesim.perf.opmodels.collectives import eager_copy_s
from servesim.specs.gpu import GPUSpec, LinkSpec

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")


def topology_of(link: LinkSpec) -> str:
    """Classify a link by name: nvswitch, nvlink-pairs, pcie, ib, ethernet."""
    name = link.name.lower()
    if "pair" in name or "bridge" in name:
        return "nvlink-pairs"
    if "nvlink" in name or "nvswitch" in name or "xgmi" in name or "infinity" in name:
        return "nvswitch"
    if "pcie" in name:
        return "pcie"
    if name.startswith("ib") or "infiniband" in name or "ndr" in name or "hdr" in name:
        return "ib"
    if "eth" in name or "roce" in name or "efa" in name:
        return "ethernet"
    return "unknown"


def _volume_factor(collective: str, n: int) -> float:
    """Fraction of the tensor each GPU sends (bandwidth term) for an n-GPU collective."""
    if collective == "all_reduce":
        return 2.0 * (n - 1) / n
    if collective == "send_recv":
        return 1.0
    return (n - 1) / n


def analytic_time_s(link: LinkSpec, collective: str, n: int, num_bytes: float) -> float:
    """Alpha-beta time from the link's latency and bandwidth alone (uncalibrated)."""
    alpha, bw = link.latency_s, link.bandwidth_bytes_per_s
    if collective == "send_recv":
        return alpha + num_bytes / bw
    if collective == "all_reduce":
        ring = 2 * (n - 1) * alpha + _volume_factor("all_reduce", n) * num_bytes / bw
        tree = 2 * math.ceil(math.log2(n)) * alpha + 2.0 * num_bytes / bw
        return min(ring, tree)
    return (n - 1) * alpha + _volume_factor(collective, n) * num_bytes / bw


def collective_time_s(
    calibration: Calibration,
    gpu_name: str,
    link: LinkSpec,
    collective: str,
    n: int,
    num_bytes: float,
) -> tuple[float, bool]:
    """Time of one collective over ``n`` GPUs on ``link``; also whether it was calibrated.

    ``num_bytes`` is the full tensor (all-reduce input, all-gather output, reduce-scatter
    input, all-to-all send buffer of one GPU, send/recv message). A fit measured at another
    group size is rescaled by the ratio of bandwidth volumes.
    """
    if n <= 1 or num_bytes <= 0:
        return 0.0, True
    fit = calibration.collective(gpu_name, topology_of(link), collective, n)
    if fit is None:
        return analytic_time_s(link, collective, n, num_bytes), False
    scaled = num_bytes
    if fit.num_gpus != n:
        scaled = (
            num_bytes * _volume_factor(collective, n) / _volume_factor(collective, fit.num_gpus)
        )
    return fit.time_s(scaled), True


# vLLM's custom all-reduce (csrc/custom_all_reduce.cuh) replaces NCCL for TP all-reduces under
# 8 MB on fully NVLinked GPUs: one kernel, P2P loads, a few microseconds of latency (the vLLM
# PR introducing it, #2192, reports ~2x lower latency than NCCL for small messages).
CUSTOM_AR_MAX_BYTES = 8 * 1024**2
CUSTOM_AR_ALPHA_S = 6e-6


#: Group sizes vLLM's and SGLang's custom all-reduce supports (``_SUPPORTED_WORLD_SIZES``).
CUSTOM_AR_GROUP_SIZES = (2, 4, 6, 8)


def custom_all_reduce_runs(link: LinkSpec, n: int, num_bytes: float) -> bool:
    """True where the engine's custom all-reduce kernel (not NCCL) runs a TP all-reduce.

    vLLM ``device_communicators/custom_all_reduce.py`` (SGLang's is adapted from it, same
    rules): a supported group size, and ``should_custom_ar``: ``world_size == 2 or
    fully_connected`` (more than two PCIe-only GPUs disable it) and ``inp_size < max_size``
    (``max_size = 8192 * 1024``; SGLang ``_MAX_CAR_SIZE = 8192 * 1024``). Callers check that
    the group is on one node (the class disables itself for a group that spans nodes).
    """
    if n not in CUSTOM_AR_GROUP_SIZES or not 0 < num_bytes < CUSTOM_AR_MAX_BYTES:
        return False
    return n == 2 or topology_of(link) == "nvswitch"


def eager_all_reduce_copy_s(gpu: GPUSpec, link: LinkSpec, n: int, num_bytes: float) -> float:
    """What an eager (not graph-captured) TP all-reduce adds to the kernel time: the custom
    kernel's input copy (``opmodels.collectives.eager_copy_s``) where that kernel runs, on one
    node's link (``custom_all_reduce_runs``); 0 where NCCL runs on the caller's tensor."""
    if link.name != gpu.intra_node_link.name or not custom_all_reduce_runs(link, n, num_bytes):
        return 0.0
    return eager_copy_s(gpu, num_bytes)


def custom_all_reduce_time_s(link: LinkSpec, n: int, num_bytes: float) -> float | None:
    """Time of vLLM's custom all-reduce, or None where vLLM would fall back to NCCL (the rule
    of ``custom_all_reduce_runs``, also the eager copy's: a message of exactly 8 MiB goes to
    NCCL, ``inp_size < max_size``)."""
    if not custom_all_reduce_runs(link, n, num_bytes):
        return None
    return (
        CUSTOM_AR_ALPHA_S + _volume_factor("all_reduce", n) * num_bytes / link.bandwidth_bytes_per_s
    )
