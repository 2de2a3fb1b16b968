"""Numeric formats for weights, activations and the KV cache."""

from __future__ import annotations

from enum import Enum

from servesim.core.errors import UnknownNameError


class DType(str, Enum):
    """A tensor storage format. The value is the name users type (``--dtype fp8``)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"
    FP4 = "fp4"

    @property
    def num_bytes(self) -> float:
        """Bytes per element (0.5 for 4-bit formats; scales/zero-points are not included)."""
        return _BYTES[self]

    @classmethod
    def parse(cls, name: str | DType) -> DType:
        """Parse a user-typed name; accepts common aliases (``bfloat16``, ``half``, ``auto``)."""
        if isinstance(name, DType):
            return name
        key = name.strip().lower()
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            raise UnknownNameError("dtype", name, [d.value for d in cls]) from None


_BYTES: dict[DType, float] = {
    DType.FP32: 4.0,
    DType.BF16: 2.0,
    DType.FP16: 2.0,
    DType.FP8: 1.0,
    DType.INT8: 1.0,
    DType.INT4: 0.5,
    DType.FP4: 0.5,
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
    "nvfp4": "fp4",
}


def serving_formats(weights: DType, kv: DType | None = None) -> tuple[DType, DType, DType]:
    """(weight, activation, KV) formats a vLLM-style engine uses for a weight format.

    GEMMs compute in fp8 for FP8 (W8A8) weights and in the 16-bit format otherwise (int8/int4
    are weight-only); the KV cache follows the activations unless given (vLLM's ``auto``),
    except that FP8 checkpoints keep a bf16 cache unless ``--kv-cache-dtype fp8`` is asked for.
    """
    act = weights if weights in (DType.FP8, DType.FP16, DType.FP32) else DType.BF16
    if kv is None:
        kv = DType.BF16 if act == DType.FP8 else act
    return weights, act, kv
