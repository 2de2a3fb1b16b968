"""Numeric formats for weights, activations and the KV cache, as data.

``DType`` is the name a user types (``--dtype mxfp4``); ``FormatSpec`` (``DType.spec``) holds
what cost and memory depend on: bytes per element, the scale (and zero-point) overhead of its
grouping, the format GEMMs compute in, which GPU architectures run its element type on tensor
cores (native) and which dequantise it in the kernel (emulated), and the nearest format with
measured kernel tables. Every figure cites the format's specification or the kernel that
implements it.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from enum import Enum

from servesim.core.errors import UnknownNameError


class DType(str, Enum):
    """A tensor storage format. The value is the name users type (``--dtype fp8``)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    FP8_BLOCK = "fp8-block"
    INT8 = "int8"
    INT4 = "int4"
    W4A8 = "w4a8"
    FP4 = "fp4"
    NVFP4_A16 = "nvfp4-a16"
    MXFP4 = "mxfp4"
    MXFP4_W4A4 = "mxfp4-w4a4"

    @property
    def num_bytes(self) -> float:
        """Bytes per element (0.5 for 4-bit formats; scales/zero-points are not included)."""
        return FORMATS[self].element_bytes

    @property
    def spec(self) -> FormatSpec:
        """The format's figures (scale overhead, compute format, native architectures)."""
        return FORMATS[self]

    @classmethod
    def parse(cls, name: str | DType) -> DType:
        """Parse a user-typed name; accepts common aliases (``bfloat16``, ``awq``, ``nvfp4``)."""
        if isinstance(name, DType):
            return name
        key = name.strip().lower()
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            raise UnknownNameError("dtype", name, [d.value for d in cls]) from None


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """What one storage format costs in bytes and which hardware runs it.

    Attributes:
        name: the format's user-facing name (its ``DType`` value).
        element_bytes: bytes of one stored element (0.5 for 4-bit).
        group_size: elements sharing one scale (0: per-tensor or per-channel, negligible).
        scale_bytes: bytes of one scale (plus its zero-point, where the format has one).
        activation: the format GEMMs compute in where the GPU runs it natively; weight-only
            formats dequantise to ``bf16``.
        native_architectures: GPU architectures with tensor cores for the element type; on
            others the kernel dequantises (emulated: the byte savings stay, the FLOPs run at the
            16-bit rate).
        kernel_dtype: the format whose measured kernel tables price this one (itself where
            measured; the nearest measured format otherwise).
        description: one line on the layout.
        source: where the layout figures come from.
        note: one line on how GPUs without ``native_architectures`` run it (empty: no
            fallback to state).
    """

    name: str
    element_bytes: float
    group_size: int
    scale_bytes: float
    activation: DType
    native_architectures: tuple[str, ...]
    kernel_dtype: DType
    description: str
    source: str
    note: str = ""

    @property
    def bytes_per_weight(self) -> float:
        """Element bytes plus the scale overhead shared by each group of ``group_size``."""
        if self.group_size == 0:
            return self.element_bytes
        return self.element_bytes + self.scale_bytes / self.group_size

    @property
    def is_weight_only(self) -> bool:
        """True when activations stay 16-bit (the weights are dequantised in the GEMM)."""
        return self.activation in (DType.BF16, DType.FP16, DType.FP32)

    def is_native(self, architecture: str) -> bool:
        """True when ``architecture`` has tensor cores for this element type.

        Weight-only formats are native everywhere: their GEMMs run at the 16-bit rate by design.
        """
        return self.is_weight_only or architecture in self.native_architectures

    def summary(self) -> dict[str, object]:
        """Plain dict of the figures (for JSON output and docs)."""
        return {
            "name": self.name,
            "element_bytes": self.element_bytes,
            "group_size": self.group_size,
            "scale_bytes": self.scale_bytes,
            "bytes_per_weight": self.bytes_per_weight,
            "activation": self.activation.value,
            "native_architectures": list(self.native_architectures),
            "kernel_dtype": self.kernel_dtype.value,
            "description": self.description,
            "source": self.source,
            "note": self.note,
        }


_FP8_ARCHS = ("ada", "hopper", "blackwell", "cdna3", "cdna4")
_FP4_ARCHS = ("blackwell", "cdna4")
#: NVFP4's e4m3 block scales: Blackwell's fifth-generation tensor cores take them
#: (block-scaled fp4 MMA); CDNA 4's fp4 matrix instructions take only the MX e8m0 scales
#: (AMD CDNA 4 ISA, V_MFMA_SCALE_F32_*_F8F6F4), so NVFP4 is not native there.
_NVFP4_ARCHS = ("blackwell",)
_NVFP4 = "NVIDIA, Introducing NVFP4 for Efficient and Accurate Low-Precision Inference, 2025"
_ALL_ARCHS = ("volta", "turing", "ampere", *_FP8_ARCHS)
_OCP_MX = "OCP Microscaling Formats (MX) v1.0 spec, 2023, sec. 5 (E2M1 elements, E8M0 scale per 32)"


def _fmt(
    dtype: DType,
    element_bytes: float,
    activation: DType,
    archs: tuple[str, ...],
    description: str,
    source: str,
    *,
    group_size: int = 0,
    scale_bytes: float = 0.0,
    kernel_dtype: DType | None = None,
    note: str = "",
) -> FormatSpec:
    return FormatSpec(
        dtype.value,
        element_bytes,
        group_size,
        scale_bytes,
        activation,
        archs,
        kernel_dtype or dtype,
        description,
        source,
        note,
    )


FORMATS: dict[DType, FormatSpec] = {
    DType(f.name): f
    for f in (
        _fmt(DType.FP32, 4.0, DType.FP32, _ALL_ARCHS, "IEEE fp32", "IEEE 754"),
        _fmt(DType.BF16, 2.0, DType.BF16, _ALL_ARCHS[2:], "bfloat16", "IEEE/Intel BF16"),
        _fmt(DType.FP16, 2.0, DType.FP16, _ALL_ARCHS, "IEEE fp16", "IEEE 754"),
        _fmt(
            DType.FP8,
            1.0,
            DType.FP8,
            _FP8_ARCHS,
            "fp8 e4m3, one fp32 scale per tensor (W8A8, dynamic per-token activations)",
            "Micikevicius et al., FP8 Formats for Deep Learning, arXiv:2209.05433; vLLM fp8.py",
        ),
        _fmt(
            DType.FP8_BLOCK,
            1.0,
            DType.FP8,
            _FP8_ARCHS,
            "fp8 e4m3 weights, one fp32 scale per 128x128 block; activations per 1x128 group",
            "DeepSeek-V3 technical report, arXiv:2412.19437, sec. 3.3.2 (weight_block_size)",
            group_size=128 * 128,
            scale_bytes=4.0,
        ),
        _fmt(
            DType.INT8,
            1.0,
            DType.BF16,
            (),
            "int8 weight-only, per-channel scales",
            "LLM.int8 / vLLM int8 weight-only kernels (per-channel scales, negligible)",
        ),
        _fmt(
            DType.INT4,
            0.5,
            DType.BF16,
            (),
            "AWQ/GPTQ int4 weight-only (w4a16), one fp16 scale per 128 weights",
            "Lin et al., AWQ, arXiv:2306.00978; Frantar et al., GPTQ, arXiv:2210.17323 "
            "(group_size 128); asymmetric zero points (+0.5 B per group) not counted",
            group_size=128,
            scale_bytes=2.0,
        ),
        _fmt(
            DType.W4A8,
            0.5,
            DType.FP8,
            _FP8_ARCHS,
            "int4 weights (group 128, fp16 scale) with fp8 activations",
            "Lin et al., QServe W4A8KV4, arXiv:2405.04532; TensorRT-LLM w4a8_awq (group 128)",
            group_size=128,
            scale_bytes=2.0,
            kernel_dtype=DType.FP8,
        ),
        _fmt(
            DType.FP4,
            0.5,
            DType.FP4,
            _NVFP4_ARCHS,
            "NVFP4 W4A4: e2m1 weights and activations, one fp8 e4m3 scale per 16 (plus a "
            "per-tensor fp32 scale); activations quantised to fp4 on the fly",
            _NVFP4 + "; vLLM modelopt.py ModelOptNvFp4LinearMethod (quant_algo NVFP4: "
            "'4-bit float weights AND 4-bit float activations', CUTLASS/FlashInfer fp4 GEMM)",
            group_size=16,
            scale_bytes=1.0,
            note="without fp4 tensor cores (pre-Blackwell, CDNA) it runs weight-only, as "
            "nvfp4-a16: vLLM's MarlinNvFp4LinearKernel dequantises to bf16 in the GEMM",
        ),
        _fmt(
            DType.NVFP4_A16,
            0.5,
            DType.BF16,
            _NVFP4_ARCHS,
            "NVFP4 weight-only (W4A16): e2m1 weights, one fp8 e4m3 scale per 16; bf16 activations",
            _NVFP4 + "; vLLM modelopt.py ModelOptNvFp4W4A16LinearMethod (quant_algo "
            "W4A16_NVFP4, FP4 Marlin GEMM)",
            group_size=16,
            scale_bytes=1.0,
            kernel_dtype=DType.FP4,  # the fp4 weight-only pricing (MoE: the w4a16 fp4 tables)
        ),
        _fmt(
            DType.MXFP4,
            0.5,
            DType.BF16,
            _FP4_ARCHS,
            "MXFP4: e2m1 elements, one e8m0 scale per 32 (gpt-oss experts)",
            _OCP_MX + "; OpenAI gpt-oss model card, 2025 (MoE weights in MXFP4)",
            group_size=32,
            scale_bytes=1.0,
            kernel_dtype=DType.FP4,  # measured MoE tables (w4a16_mxfp4) are keyed by fp4
        ),
        _fmt(
            DType.MXFP4_W4A4,
            0.5,
            DType.FP4,
            _FP4_ARCHS,
            "MXFP4 W4A4: e2m1 weights and activations, one e8m0 scale per 32; activations "
            "quantised to MXFP4 on the fly (AMD Quark w_mxfp4_a_mxfp4)",
            _OCP_MX + "; vLLM quark.py QuarkOCP_MX (weight and input_tensors fp4, per_group "
            "32, e8m0); CDNA 4 and Blackwell run block-scaled MX fp4 on their matrix cores",
            group_size=32,
            scale_bytes=1.0,
            note="without MX fp4 matrix cores it runs weight-only, as mxfp4 (vLLM's "
            "QuarkOCP_MX emulates: weights dequantised to bf16)",
        ),
    )
}

_ALIASES = {
    "float32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "auto": "bf16",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "e4m3": "fp8",
    "float8": "fp8",
    "fp8-tensor": "fp8",
    "fp8-per-tensor": "fp8",
    "fp8_block": "fp8-block",
    "block-fp8": "fp8-block",
    "fp8-block-128": "fp8-block",
    "awq": "int4",
    "gptq": "int4",
    "w4a16": "int4",
    "int4-awq": "int4",
    "int4-gptq": "int4",
    "w8a16": "int8",
    "w4a8-awq": "w4a8",
    "int4-fp8": "w4a8",
    "nvfp4": "fp4",
    "w4a4": "fp4",
    "nvfp4-w4a4": "fp4",
    "w4a4-nvfp4": "fp4",
    "nvfp4a16": "nvfp4-a16",
    "w4a16-nvfp4": "nvfp4-a16",
    "w4a16_nvfp4": "nvfp4-a16",
    "mx-fp4": "mxfp4",
    "mxfp4-e2m1": "mxfp4",
    "w4a4-mxfp4": "mxfp4-w4a4",
    "mxfp4-a4": "mxfp4-w4a4",
}


#: Formats GEMMs compute in below 16 bits; the KV cache stays 16-bit under them unless asked.
QUANTISED_COMPUTE = (DType.FP8, DType.FP4)


def gemm_activation(
    weights: DType, architecture: str | None, peaks: Container[DType] | None = None
) -> DType:
    """The format a GEMM on ``weights`` computes in on a GPU of ``architecture`` whose
    data-sheet peaks are keyed ``peaks`` (None: not checked).

    fp8 formats (W8A8, fp8-block, W4A8) compute in fp8 where the GPU has an fp8 peak; the
    W4A4 formats (NVFP4, MXFP4-W4A4) compute in fp4 where the architecture has tensor cores
    for their scales (``native_architectures``) and an fp4 peak, and otherwise run
    weight-only (``FormatSpec.note``); every other format computes in bf16.
    """
    spec = FORMATS[weights]
    if spec.activation == DType.FP8 and (peaks is None or DType.FP8 in peaks):
        return DType.FP8
    has_fp4 = peaks is None or DType.FP4 in peaks
    is_native = architecture is None or spec.is_native(architecture)
    if spec.activation == DType.FP4 and has_fp4 and is_native:
        return DType.FP4
    return DType.BF16


def serving_formats(
    weights: DType, kv: DType | None = None, architecture: str | None = None
) -> tuple[DType, DType, DType]:
    """(weight, activation, KV) formats a vLLM-style engine uses for a weight format.

    GEMMs compute in the format's activation format (fp8 for FP8 W8A8, fp8-block and W4A8,
    fp4 for NVFP4 W4A4, the 16-bit format for weight-only int8/int4/nvfp4-a16/mxfp4); the KV
    cache follows the activations unless given (vLLM's ``auto``), except that fp8 and fp4
    checkpoints keep a bf16 cache unless ``--kv-cache-dtype`` asks for another. On an
    ``architecture`` without tensor cores for the format (fp8 on Ampere, fp4 on Hopper),
    vLLM runs it weight-only (Marlin: dequantise in the GEMM), so the GEMMs compute in bf16;
    this one rule serves ``simulate``, ``perf`` and the planner.
    """
    if weights in (DType.FP16, DType.FP32):
        act = weights
    else:
        spec = FORMATS[weights]
        act = spec.activation if spec.activation in QUANTISED_COMPUTE else DType.BF16
        if architecture is not None and not spec.is_native(architecture):
            act = DType.BF16
    if kv is None:
        kv = DType.BF16 if act in QUANTISED_COMPUTE else act
    return weights, act, kv


def weight_bytes_per_param(dtype: DType) -> float:
    """Bytes one weight of ``dtype`` occupies, its share of the group scales included."""
    return FORMATS[dtype].bytes_per_weight
