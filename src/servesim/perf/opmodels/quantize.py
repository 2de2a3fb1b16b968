"""The activation quantisation kernel ahead of an fp8 GEMM (bf16 in, fp8 with a dynamic scale
out), pure Python: its fitted constants (``QuantFit``, fitted on aiconfigurator's ``quantize``
tables by ``servesim.perf.fitting.gemm``) and the SM residency its per-row cost depends on.
``servesim.perf.opmodels.gemm`` adds it to every fp8 GEMM (the fp8 GEMM rows of the tables
include it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servesim.specs.gpu import GPUSpec

#: Resident threads and blocks per SM by architecture (CUDA C++ Programming Guide, "Technical
#: Specifications per Compute Capability": 8.0 and 9.0: 2048 threads, 32 blocks; 8.9 (Ada):
#: 1536 and 24; 8.6 (GA10x: A10, A40): 1536 and 16; 7.5 (Turing): 1024 and 16; 10.0: 2048, 32).
SM_RESIDENCY: dict[str, tuple[int, int]] = {
    "hopper": (2048, 32),
    "ampere": (2048, 32),
    "ada": (1536, 24),
    "turing": (1024, 16),
    "blackwell": (2048, 32),
}
#: GA10x parts, whose architecture label is ampere but whose SMs are compute capability 8.6.
SM_RESIDENCY_BY_GPU: dict[str, tuple[int, int]] = {
    "a10": (1536, 16),
    "a10g": (1536, 16),
    "a40": (1536, 16),
}
HOPPER_RESIDENCY = SM_RESIDENCY["hopper"]
#: vLLM's dynamic per-token quantisation launches one block of min(k, 256) threads per token
#: (``csrc/quantization/w8a8/fp8/common.cu``, ``dynamic_per_token_scaled_fp8_quant``).
QUANT_BLOCK_THREADS = 256


def sm_residency(gpu: GPUSpec) -> tuple[int, int]:
    """(threads, blocks) resident per SM on ``gpu`` (Hopper's when its architecture is unknown)."""
    return SM_RESIDENCY_BY_GPU.get(gpu.name) or SM_RESIDENCY.get(gpu.architecture, HOPPER_RESIDENCY)


def quant_blocks_per_sm(k: float, residency: tuple[int, int] = HOPPER_RESIDENCY) -> int:
    """Token blocks of the quantisation kernel resident on one SM for rows of ``k`` elements."""
    threads = min(max(int(k), 1), QUANT_BLOCK_THREADS)
    return min(residency[1], residency[0] // threads)


#: Blocks per SM at which ``QuantFit.row_s`` is stated: 256-thread blocks on a 2048-thread SM.
REF_QUANT_BLOCKS = quant_blocks_per_sm(QUANT_BLOCK_THREADS)
#: Working set of the quantisation kernel per element: 2 bytes of bf16 read, 1 of fp8 written.
QUANT_WORKING_BYTES = 3.0
#: L2 of the GPU the fits are stated on when a spec has none (H100 SXM: 50 MiB).
REF_L2_BYTES = 50 * 2**20


@dataclass(frozen=True, slots=True)
class QuantFit:
    """The activation quantisation kernel ahead of an fp8 GEMM (bf16 in, fp8 + scale out).

    time = floor + ||(k_s * k, bytes * m * k / bandwidth, row_s * m * 8 / blocks(k))||_p: one
    token's row is reduced serially (a long row costs time even for one token), the elements
    stream through HBM, and each row costs a block's latency shared by the blocks resident on
    an SM. vLLM gives each token one block of min(k, 256) threads, so short rows pack more
    blocks per SM (``quant_blocks_per_sm``: on Hopper 8 at k >= 256, 16 at k = 128, 32 at
    k <= 64) and cost less per row. A row too long for the kernel's registers is read twice:
    bytes = bytes_per_elem + spill_bytes * k / (k + spill_k).

    The tables replay one input, so an activation whose working set (2 bytes read + 1 written
    per element) fits the L2 is served from it and the elements stream at the SMs' rate
    (``sm_elem_s * m * k``, a fourth p-norm term): H200 / H100 time measures 0.98 (median) for
    working sets under ~24 MB, where the HBM ratio would give 0.70, and falls to 0.72 above
    ~2x that (aiconfigurator vLLM 0.24 ``quantize`` tables). The HBM term then only counts the
    part that spills: x = 3 m k / (l2_frac * L2), HBM time x x^4 / (1 + x^4). ``l2_frac`` 0
    keeps the HBM term whole (fits made before this term).

    Attributes:
        floor_s: per-call cost (the kernel's launch inside a graph, the scale reduction).
        k_s: seconds per element of one row (serial reduction over ``k``).
        bytes_per_elem: HBM bytes per activation element, in units of the data-sheet bandwidth
            (2 read + 1 written at full bandwidth would be 3).
        row_s: seconds per row at 8 resident blocks per SM (``REF_QUANT_BLOCKS``).
        overlap: p-norm exponent of the three terms.
        spill_bytes, spill_k: extra bytes per element of long rows, half reached at spill_k.
        sm_elem_s: seconds per element streamed by the whole GPU's SMs (L2-resident data).
        l2_frac: fraction of the L2 size at which half of the working set reaches HBM (0: all).
        working_bytes: bytes per element the kernel reads and writes, for the L2 working set
            (2 bf16 read + 1 fp8 written = 3; an fp4 kernel writes its nibbles and block scales:
            NVFP4 2 + 0.5625 = 2.5625, ``opmodels.fp4.fp4_quant_fit``).
    """

    floor_s: float
    k_s: float
    bytes_per_elem: float
    row_s: float
    overlap: float
    spill_bytes: float = 0.0
    spill_k: float = 1.0
    sm_elem_s: float = 0.0
    l2_frac: float = 0.0
    working_bytes: float = QUANT_WORKING_BYTES

    def time_s(
        self,
        m: float,
        k: float,
        bandwidth: float,
        residency: tuple[int, int] = HOPPER_RESIDENCY,
        l2_bytes: float = REF_L2_BYTES,
    ) -> float:
        """Seconds to quantise an ``m`` x ``k`` activation on a GPU of ``bandwidth`` B/s whose
        SMs hold ``residency`` = (threads, blocks) and whose L2 holds ``l2_bytes``."""
        p = self.overlap
        a = self.k_s * k
        b = (self.bytes_per_elem + self.spill_bytes * k / (k + self.spill_k)) * m * k / bandwidth
        if self.l2_frac > 0.0:
            x4 = (self.working_bytes * m * k / (self.l2_frac * l2_bytes)) ** 4
            b *= x4 / (1.0 + x4)
        c = self.row_s * m * REF_QUANT_BLOCKS / quant_blocks_per_sm(k, residency)
        e = self.sm_elem_s * m * k
        return self.floor_s + (a**p + b**p + c**p + e**p) ** (1.0 / p)

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form (``working_bytes`` only where it is not fp8's 3, so stored fp8 fits
        keep their bytes)."""
        out = {
            "floor_s": round_6g(self.floor_s),
            "k_s": round_6g(self.k_s),
            "bytes_per_elem": round_6g(self.bytes_per_elem),
            "row_s": round_6g(self.row_s),
            "overlap": round_6g(self.overlap),
            "spill_bytes": round_6g(self.spill_bytes),
            "spill_k": round_6g(self.spill_k),
            "sm_elem_s": round_6g(self.sm_elem_s),
            "l2_frac": round_6g(self.l2_frac),
        }
        if self.working_bytes != QUANT_WORKING_BYTES:
            out["working_bytes"] = round_6g(self.working_bytes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantFit:
        """Inverse of ``to_dict``."""
        return cls(
            floor_s=float(data["floor_s"]),
            k_s=float(data["k_s"]),
            bytes_per_elem=float(data["bytes_per_elem"]),
            row_s=float(data["row_s"]),
            overlap=float(data["overlap"]),
            spill_bytes=float(data.get("spill_bytes", 0.0)),
            spill_k=float(data.get("spill_k", 1.0)),
            sm_elem_s=float(data.get("sm_elem_s", 0.0)),
            l2_frac=float(data.get("l2_frac", 0.0)),
            working_bytes=float(data.get("working_bytes", QUANT_WORKING_BYTES)),
        )


def round_6g(x: float) -> float:
    """Six significant digits (JSON stays small, the time changes by < 1e-5)."""
    return float(f"{x:.6g}")
