"""Kernel stacks: which measured kernels a serving engine runs, as a named, selectable thing.

The same GPU runs different kernels under different engines: vLLM 0.6 used cuBLAS bf16 GEMMs
and FlashAttention 2, vLLM 0.24 uses FlashAttention 3 and cutlass fp8 kernels, SGLang 0.5 its
sgl-kernel GEMMs and fa3. A stack names the measured tables its fits come from, per GPU, and
the stack that stands in where it has no table of its own (said in every prediction's source).

- ``vllm-0.6``: the Vidur GEMM/element-wise tables (PyTorch/cuBLAS of that era), documented
  FlashAttention-2 efficiencies (no attention table exists for it), NCCL from the APEX+ and
  Vidur tables, vLLM 0.6's custom all-reduce from its published latency. The stack the
  validation runs (vLLM 0.6.0 on H100) measured.
- ``vllm-0.24``: NVIDIA aiconfigurator's vLLM tables (0.24.0 on H100/H200/L40S; on A100 only
  0.14.0 exists and stands in). FlashAttention 3 on Hopper.
- ``sglang-0.5``: aiconfigurator's SGLang 0.5.14 tables (H100, H200); elsewhere ``vllm-0.24``
  stands in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servesim.core.errors import UnknownNameError

LEGACY_STACK = "vllm-0.6"
AUTO = "auto"


@dataclass(frozen=True, slots=True)
class StackInfo:
    """One kernel stack.

    Attributes:
        name: registry key (``vllm-0.24``).
        description: what kernels it is, in words.
        tables: aiconfigurator GPU folder -> (framework, version) of the tables fitted for it.
        stand_in: the stack used for a GPU or operator family this stack has no table for
            (None for the legacy stack, whose fallbacks are documented defaults).
    """

    name: str
    description: str
    tables: dict[str, tuple[str, str]] = field(default_factory=dict)
    stand_in: str | None = None


STACKS: dict[str, StackInfo] = {
    LEGACY_STACK: StackInfo(
        LEGACY_STACK,
        "vLLM 0.6 (V0): cuBLAS bf16 GEMMs (Vidur tables), FlashAttention-2 (documented "
        "figures), NCCL (APEX+/Vidur tables), custom all-reduce (vLLM PR #2192 latency)",
    ),
    "vllm-0.24": StackInfo(
        "vllm-0.24",
        "vLLM 0.24 (V1): torch/cuBLAS bf16, cutlass fp8 W8A8, FlashAttention 3 on Hopper, "
        "fused MoE, custom all-reduce (aiconfigurator tables)",
        tables={
            "h100_sxm": ("vllm", "0.24.0"),
            "h200_sxm": ("vllm", "0.24.0"),
            "a100_sxm": ("vllm", "0.14.0"),
            "l40s": ("vllm", "0.24.0"),
        },
        stand_in=LEGACY_STACK,
    ),
    "sglang-0.5": StackInfo(
        "sglang-0.5",
        "SGLang 0.5.14: sgl-kernel fp8, torch bf16, fa3 attention, triton fused MoE, SGLang "
        "custom all-reduce (aiconfigurator tables)",
        tables={"h100_sxm": ("sglang", "0.5.14"), "h200_sxm": ("sglang", "0.5.14")},
        stand_in="vllm-0.24",
    ),
}
STACK_NAMES: tuple[str, ...] = tuple(STACKS)
KERNEL_STACK_CHOICES: tuple[str, ...] = (AUTO, *STACK_NAMES)

# aiconfigurator GPU folder -> servesim catalog GPU and calibration key
TABLE_GPUS: dict[str, tuple[str, str]] = {
    "h100_sxm": ("h100-sxm", "h100"),
    "h200_sxm": ("h200-sxm", "h200"),
    "a100_sxm": ("a100-80gb", "a100"),
    "l40s": ("l40s", "l40s"),
}


def get_stack(name: str) -> StackInfo:
    """The stack ``name``.

    Raises:
        UnknownNameError: no such stack (lists the valid names).
    """
    if name not in STACKS:
        raise UnknownNameError("kernel stack", name, STACK_NAMES)
    return STACKS[name]


def resolve_kernel_stack(setting: str, host_profile: str) -> str:
    """The stack for a ``kernel_stack`` setting: ``auto`` follows the engine's host profile.

    vLLM 0.6 profiles (``vllm-v0``, ``vllm-v0-multistep``) run the vLLM 0.6 kernels; ``vllm-v1``
    runs a current vLLM's (FlashAttention 3, cutlass fp8); ``none`` (GPU time only) keeps the
    legacy stack so the hardware bound stays comparable with the validated profile.

    Raises:
        UnknownNameError: ``setting`` is neither ``auto`` nor a stack.
    """
    if setting != AUTO:
        return get_stack(setting).name
    return "vllm-0.24" if host_profile == "vllm-v1" else LEGACY_STACK


# Release year of each architecture generation (vendor launch announcements): the distance a
# GPU without tables is from a calibrated one. Hopper sits half a year after Ada (H100 shipped
# after the first Ada boards); CDNA generations slot between NVIDIA's by launch date.
ARCHITECTURE_YEAR: dict[str, float] = {
    "volta": 2017.0,
    "turing": 2018.0,
    "ampere": 2020.0,
    "cdna2": 2021.0,
    "ada": 2022.0,
    "hopper": 2022.5,
    "cdna3": 2023.0,
    "blackwell": 2024.0,
    "cdna4": 2025.0,
}


def nearest_calibrated(
    target_arch: str, target_bw: float, candidates: dict[str, tuple[str, float]]
) -> str | None:
    """The calibrated GPU whose kernel efficiencies a GPU without tables borrows.

    The rule (measured by leaving one calibrated GPU out, ``servesim calibration``):
    1. a calibrated GPU of the same architecture, the one nearest in HBM bandwidth (log ratio:
       H200 borrows from H100, L4 from L40S);
    2. otherwise the one with the smallest distance ``|release years apart| + |log2 of the
       HBM bandwidth ratio|``: kernels of one generation behave alike, and so do memory
       systems of one class (HBM vs GDDR), which is what memory-bound kernels see. B200
       borrows from H200, A100 from H100, T4 from A100.
    The borrowed efficiencies are applied to the target's own data-sheet peaks and bandwidth.

    Args:
        target_arch: the GPU's ``architecture`` ("" when unknown: no borrowing).
        target_bw: its HBM bandwidth in bytes/s.
        candidates: calibration key -> (architecture, HBM bandwidth) of the calibrated GPUs.
    """
    import math

    if not candidates or target_arch not in ARCHITECTURE_YEAR:
        return None
    same = [k for k, (arch, _) in candidates.items() if arch == target_arch]
    if same:
        return min(same, key=lambda k: (abs(math.log(candidates[k][1] / target_bw)), k))
    year = ARCHITECTURE_YEAR[target_arch]
    known = [k for k, (arch, bw) in candidates.items() if arch in ARCHITECTURE_YEAR and bw > 0]
    if not known or target_bw <= 0:
        return None

    def distance(key: str) -> tuple[float, str]:
        arch, bw = candidates[key]
        return abs(ARCHITECTURE_YEAR[arch] - year) + abs(math.log2(bw / target_bw)), key

    return min(known, key=distance)
