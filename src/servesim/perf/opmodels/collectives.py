"""Collective time (custom all-reduce and NCCL): piecewise alpha-beta lines per algorithm regime.

Mechanism. A collective library picks an algorithm / protocol by message size: vLLM's and
SGLang's custom all-reduce run a one-shot kernel (every GPU reads all peers' buffers; cost ~
fixed launch + barrier) for small messages, a two-shot (reduce-scatter + all-gather) kernel for
mid sizes and fall back to NCCL above a few tens of MB; NCCL switches protocol LL -> LL128 ->
Simple (and ring/tree/NVLS algorithm) with size. Each regime is an alpha-beta line

    t = alpha_s + volume(n) * num_bytes / busbw,      busbw = link bandwidth / link_over_bus

with ``volume(n)`` the nccl-tests bus-bandwidth factor (2(n-1)/n for all-reduce, (n-1)/n for
all-gather, reduce-scatter and all-to-all), so ``link_over_bus`` is dimensionless: it says how
far below the GPU's link bandwidth (``gpu.intra_node_link``) the regime runs. Eager (not graph
captured) calls add a host launch floor, which appears as a flat regime (``link_over_bus`` 0)
at small sizes and as a larger slope at large sizes (vLLM copies the input into its registered
IPC buffer first). Between two measured sizes that fall in different regimes the switch point
is not measured: NCCL's tuner picks whichever algorithm/protocol prices lower, so there the time
is the lower of the two regimes' lines (H100 nccl-tests, message sizes held out: 5.4 -> 5.0%
MAPE; A100 5.2 -> 4.7%); custom all-reduce kernels switch at fixed byte thresholds, so there
log-time is blended linearly in log size across the gap.

Conventions. ``num_bytes`` is the full tensor: all-reduce input, all-gather output,
reduce-scatter input, all-to-all send buffer of one GPU. This is nccl-tests' "size" and what
aiconfigurator's collector recorded (``message_size`` = nccl-tests bytes / element size).

Transfer rules (stated, applied by ``collective_s`` from the target's GPUSpec):
* another GPU: ``busbw`` scales with the target's intra-node link bandwidth and ``alpha_s``
  with its link latency (``ref_link_latency_s`` is the fitted GPU's); switch points stay in bytes.
* another group size (``group_collective_s``): a measured size is used as is; between two
  measured sizes log-time is interpolated in log2(n), each side evaluated at the bytes that give
  the target's bus volume; outside the measured range the nearest size, volume-rescaled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servesim.specs.gpu import GPUSpec

# ``nccl_int8``: an 8-bit NCCL reduction (no NVLS, per-element reduce cost; the runtime's
# activations are 16-bit, so it prices ``nccl``; the int8 tables are fitted and scored apart)
IMPLEMENTATIONS = ("custom_graph", "custom_eager", "nccl", "nccl_int8")
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
#: Bus bandwidth (bytes/s) of a host-routed PCIe ring (groups > 2 on PCIe): APEX+ V100-PCIE-16GB
#: all-reduce at 4 GPUs, bulk line 3.0 GB/s algorithm bandwidth = 4.5 GB/s bus bandwidth
#: (``collectives`` section of the shipped calibration; a test recomputes it), and its
#: all-gather / reduce-scatter / all-to-all 4.1-4.6 GB/s. That is 29% of the V100's 15.75 GB/s
#: PCIe 3 link: the host path (root complex forwarding, staging copies) binds, not the GPU's
#: link, so the rate is carried as an absolute one, not as a fraction of the target's link.
PCIE_HOST_RING_BUS_BYTES_PER_S = 4.5e9


def volume_factor(collective: str, num_gpus: int) -> float:
    """nccl-tests bus-bandwidth factor: bytes each link carries per byte of ``num_bytes``."""
    if collective == "all_reduce":
        return 2.0 * (num_gpus - 1) / num_gpus
    return (num_gpus - 1) / num_gpus


@dataclass(frozen=True, slots=True)
class Segment:
    """One algorithm regime: an alpha-beta line.

    Attributes:
        alpha_s: fixed cost (launch, barrier/flag exchange, protocol start-up), seconds.
        link_over_bus: link bandwidth / achieved bus bandwidth (>= 0; 0: latency only).
    """

    alpha_s: float
    link_over_bus: float

    def time_s(self, link_bytes_per_s: float, bus_bytes: float) -> float:
        """Line value for ``bus_bytes`` (already multiplied by the volume factor)."""
        return self.alpha_s + bus_bytes * self.link_over_bus / link_bytes_per_s


@dataclass(frozen=True, slots=True)
class CollectiveFit:
    """Fitted regimes of one (collective, implementation, group size) on one GPU and stack.

    Attributes:
        collective: ``all_reduce``, ``all_gather``, ``reduce_scatter`` or ``all_to_all``.
        implementation: ``custom_graph``, ``custom_eager``, ``nccl`` or ``nccl_int8``.
        num_gpus: group size measured.
        segments: regimes in ascending message size.
        edges_bytes: per pair of adjacent regimes, (last size of the lower, first size of the
            upper) measured there; between them log-time is blended.
        ref_link_latency_s: link latency of the GPU the fit was made on (alpha transfer).
    """

    collective: str
    implementation: str
    num_gpus: int
    segments: tuple[Segment, ...]
    edges_bytes: tuple[tuple[float, float], ...]
    ref_link_latency_s: float

    def __post_init__(self) -> None:
        if len(self.edges_bytes) != len(self.segments) - 1:
            raise ValueError("need one edge between each pair of segments")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "collective": self.collective,
            "implementation": self.implementation,
            "num_gpus": self.num_gpus,
            "segments": [[s.alpha_s, s.link_over_bus] for s in self.segments],
            "edges_bytes": [list(e) for e in self.edges_bytes],
            "ref_link_latency_s": self.ref_link_latency_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CollectiveFit:
        """Inverse of ``to_dict``."""
        return cls(
            collective=str(data["collective"]),
            implementation=str(data["implementation"]),
            num_gpus=int(data["num_gpus"]),
            segments=tuple(Segment(float(a), float(b)) for a, b in data["segments"]),
            edges_bytes=tuple((float(lo), float(hi)) for lo, hi in data["edges_bytes"]),
            ref_link_latency_s=float(data["ref_link_latency_s"]),
        )


def collective_s(fit: CollectiveFit, gpu: GPUSpec, num_bytes: float) -> float:
    """Seconds for one collective of ``num_bytes`` (full tensor) on ``gpu`` at ``fit.num_gpus``."""
    if num_bytes <= 0 or fit.num_gpus <= 1:
        return 0.0
    link = gpu.intra_node_link
    latency_scale = link.latency_s / fit.ref_link_latency_s if fit.ref_link_latency_s > 0 else 1.0
    bus_bytes = volume_factor(fit.collective, fit.num_gpus) * num_bytes

    def line(k: int) -> float:
        seg = fit.segments[k]
        scaled = Segment(seg.alpha_s * latency_scale, seg.link_over_bus)
        return scaled.time_s(link.bandwidth_bytes_per_s, bus_bytes)

    for k, (lo, hi) in enumerate(fit.edges_bytes):
        if num_bytes <= lo:
            return line(k)
        if num_bytes < hi:
            if fit.implementation.startswith("nccl"):
                # NCCL's tuner picks, per call, the algorithm/protocol its cost model prices
                # lowest: the switch sits where the two regimes' lines cross
                return min(line(k), line(k + 1))
            # custom all-reduce switches at fixed size thresholds, unknown between two
            # measured sizes: blend in log-log
            w = math.log(num_bytes / lo) / math.log(hi / lo)
            return math.exp((1.0 - w) * math.log(line(k)) + w * math.log(line(k + 1)))
    return line(len(fit.segments) - 1)


def group_collective_s(
    fits: Sequence[CollectiveFit], gpu: GPUSpec, num_gpus: int, num_bytes: float
) -> float:
    """Seconds at any group size from the fits of one (collective, implementation).

    Rule: a measured size is used directly; between the two nearest measured sizes log-time is
    interpolated linearly in log2(num_gpus), each evaluated at the bytes carrying the target's
    bus volume; beyond the measured range the nearest size is volume-rescaled (its per-regime
    costs are kept: NVLS / custom kernels do not add ring steps per GPU).
    """
    if num_gpus <= 1 or num_bytes <= 0:
        return 0.0
    if not fits:
        raise ValueError("no fits given")
    by_n = {f.num_gpus: f for f in fits}
    if num_gpus in by_n:
        return collective_s(by_n[num_gpus], gpu, num_bytes)
    sizes = sorted(by_n)
    lower = [n for n in sizes if n < num_gpus]
    upper = [n for n in sizes if n > num_gpus]

    def rescaled(n: int) -> float:
        f = by_n[n]
        ratio = volume_factor(f.collective, num_gpus) / volume_factor(f.collective, n)
        return collective_s(f, gpu, num_bytes * ratio)

    if not lower or not upper:
        return rescaled(lower[-1] if lower else upper[0])
    n_lo, n_hi = lower[-1], upper[0]
    w = math.log2(num_gpus / n_lo) / math.log2(n_hi / n_lo)
    return math.exp((1.0 - w) * math.log(rescaled(n_lo)) + w * math.log(rescaled(n_hi)))


def eager_copy_s(gpu: GPUSpec, num_bytes: float) -> float:
    """GPU time an eager (not graph-captured) custom all-reduce adds: the input's copy.

    Outside a CUDA graph vLLM's custom all-reduce cannot hand the kernel the caller's tensor
    (its peers know only the buffers registered at start-up), so every call first copies the
    input into the registered IPC buffer: ``cudaMemcpyAsync(reg_buffer, inp, input_size,
    cudaMemcpyDeviceToDevice)`` (csrc/custom_all_reduce.cu ``all_reduce``; Python
    ``custom_all_reduce``: "outside of cuda graph context, custom allreduce incurs a cost of
    cudaMemcpy"). Nothing is registered per call (graph buffers are registered once, after
    capture). The copy reads and writes ``num_bytes`` of HBM. Evidence: the fitted bulk
    ``link_over_bus`` of the eager tables exceeds the graph tables' by 0.27 / 0.19 / 0.17 at
    2 / 4 / 8 GPUs on H100 (2 bytes per HBM byte: 0.27 / 0.18 / 0.15) and 0.34 / 0.24 / 0.22 on
    A100 (0.29 / 0.20 / 0.17). The rest of the eager time is the host's (Python, two launches),
    which the host profile prices per kernel, not this model.
    """
    if num_bytes <= 0:
        return 0.0
    return 2.0 * num_bytes / gpu.hbm_bandwidth_bytes_per_s


def fits_from_params(params: Mapping[str, Any]) -> dict[tuple[str, str, int], CollectiveFit]:
    """(collective, implementation, num_gpus) -> fit, from a fitting module's JSON params."""
    out = {}
    for entry in params["fits"]:
        fit = CollectiveFit.from_dict(entry)
        out[(fit.collective, fit.implementation, fit.num_gpus)] = fit
    return out


def host_ring_bus_bytes_per_s(num_gpus: int, gpus_per_socket: int | None) -> float:
    """Bus bandwidth (bytes/s) of a PCIe ring of ``num_gpus`` staged through host memory.

    Within one socket: ``PCIE_HOST_RING_BUS_BYTES_PER_S``, each GPU on its own path to host
    memory. A group larger than a socket (``gpus_per_socket``, ``cluster.PCIE_GPUS_PER_SOCKET``
    on the default PCIe server) crosses the sockets: NCCL uses no P2P across a CPU host bridge
    (``ncclTopoCheckP2p``: "By default don't use P2P across CPU Host Bridges", p2pLevel
    PATH_PXB), so every cross-socket byte is staged in host memory and crosses the inter-socket
    link, and that host path, one host path's rate per direction, is shared by the socket's
    GPUs: the rate divided by the GPUs on the fuller socket. Evidence for the sharing (not fitted):
    L40S all-to-all at 8 GPUs, 128-256 MB, moves 4 x 1/2 of the buffer across per direction at
    4.6-4.7 GB/s summed, one host path's rate.
    """
    if gpus_per_socket is None or num_gpus <= gpus_per_socket:
        return PCIE_HOST_RING_BUS_BYTES_PER_S
    return PCIE_HOST_RING_BUS_BYTES_PER_S / min(gpus_per_socket, num_gpus)
