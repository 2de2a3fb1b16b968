"""A checkpoint's quantisation: ``quantization_config`` read into formats per module group.

A Hugging Face config names its quantisation method (``mxfp4``, ``fp8``, ``awq``, ``gptq``,
``compressed-tensors``, ``modelopt``), the bits and group size, and the modules left in 16-bit
(``modules_to_not_convert`` / ``ignore`` / ``exclude_modules``). Cost and memory need it per
module group: gpt-oss keeps attention in bf16 and stores its experts in MXFP4, so the memory
plan and the op graph ask ``module_formats`` (the one builder) for each group's format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servesim.core.errors import ConfigError
from servesim.specs.dtypes import FORMATS, DType, weight_bytes_per_param

#: Weight groups whose format can differ; embeddings, LM head, norms and routers stay 16-bit.
MODULE_GROUPS = ("attention", "dense_mlp", "experts", "shared_experts")
KNOWN_METHODS = (
    "mxfp4",
    "fp8",
    "fbgemm_fp8",
    "awq",
    "gptq",
    "compressed-tensors",
    "modelopt",
    "modelopt_fp4",
    "quark",
)


@dataclass(frozen=True, slots=True)
class QuantSpec:
    """The quantisation of a checkpoint's linear weights.

    Attributes:
        quant_method: as the config spells it (``mxfp4``, ``fp8``, ``awq``...).
        dtype: the format of the quantised modules.
        group_size: weights per scale as the config gives it (0: per-tensor/per-channel).
        unconverted_groups: module groups kept unquantised (``MODULE_GROUPS`` names).
        modules_not_converted: the config's module patterns, verbatim.
        group_formats: per-layer overrides, (group, format, group size): AMD Quark's
            ``layer_quant_config`` gives layers matched by name their own spec.
        unapplied_type_formats: Quark's ``layer_type_quant_config`` entries, (layer type,
            format, group size), validated and recorded but not applied: vLLM's quark.py
            ``_find_matched_config`` looks ``type(module)`` (a class) up among these keys,
            which a JSON config can only spell as strings, so every such layer falls back
            to ``global_quant_config`` when vLLM serves the checkpoint. Kept here so that
            nothing the config says is dropped unseen.
    """

    quant_method: str
    dtype: DType
    group_size: int
    unconverted_groups: frozenset[str] = frozenset()
    modules_not_converted: tuple[str, ...] = ()
    group_formats: tuple[tuple[str, DType, int], ...] = ()
    unapplied_type_formats: tuple[tuple[str, DType, int], ...] = ()

    @property
    def bytes_per_weight(self) -> float:
        """Bytes per quantised weight at this checkpoint's group size (scales included)."""
        return grouped_bytes_per_weight(self.dtype, self.group_size)


def grouped_bytes_per_weight(dtype: DType, group_size: int) -> float:
    """Bytes per weight of ``dtype`` with one scale per ``group_size`` weights."""
    fmt = FORMATS[dtype]
    if group_size == fmt.group_size or group_size <= 0 or fmt.scale_bytes == 0:
        return fmt.bytes_per_weight
    return fmt.element_bytes + fmt.scale_bytes / group_size


@dataclass(frozen=True, slots=True)
class ModuleFormat:
    """The format one module group's weights are stored in, and its bytes per weight."""

    dtype: DType
    bytes_per_weight: float
    is_checkpoint: bool  # from the checkpoint's quantization_config (not the plan's dtype)


def module_formats(quant: QuantSpec | None, weight_dtype: DType) -> dict[str, ModuleFormat]:
    """Format of each module group: the checkpoint's where it quantises them, else the plan's.

    Args:
        quant: the model's checkpoint quantisation (None: all groups in ``weight_dtype``).
        weight_dtype: the serving plan's weight format (``--dtype``).
    """
    plain = ModuleFormat(weight_dtype, weight_bytes_per_param(weight_dtype), False)
    if quant is None:
        return dict.fromkeys(MODULE_GROUPS, plain)
    out = dict.fromkeys(MODULE_GROUPS, ModuleFormat(quant.dtype, quant.bytes_per_weight, True))
    for group, dtype, group_size in quant.group_formats:  # per-layer overrides
        out[group] = ModuleFormat(dtype, grouped_bytes_per_weight(dtype, group_size), True)
    return {g: plain if g in quant.unconverted_groups else f for g, f in out.items()}


def parse_quantization_config(cfg: Any, name: str) -> dict[str, Any] | None:
    """``QuantSpec`` keyword arguments from a ``quantization_config`` dict (None: absent).

    Raises:
        ConfigError: the method is unknown or its bits/format are not modelled.
    """
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{name}.quantization_config", cfg, "must be a JSON object")
    method = str(cfg.get("quant_method") or "").lower()
    if method not in KNOWN_METHODS:
        raise ConfigError(
            f"{name}.quantization_config.quant_method",
            method or None,
            f"is not modelled (known: {', '.join(KNOWN_METHODS)})",
        )
    if method.startswith("modelopt"):
        cfg = _modelopt_flat(cfg, name)
    if method == "compressed-tensors":
        dtype, group = _compressed_tensors(cfg, name)
    elif method.startswith("modelopt"):
        dtype, group = _modelopt(cfg, name)
    elif method == "quark":
        dtype, group = _quark(
            cfg.get("global_quant_config"), f"{name}.quantization_config.global_quant_config"
        )
    else:
        dtype, group = _simple(cfg, method, name)
    patterns = tuple(
        str(p)
        for key in (
            "modules_to_not_convert",
            "ignore",
            "exclude_modules",
            "ignored_layers",
            "exclude",
        )
        for p in (cfg.get(key) or ())
    )
    return {
        "quant_method": method,
        "dtype": dtype,
        "group_size": group,
        "unconverted_groups": frozenset(g for p in patterns for g in module_groups_of(p)),
        "modules_not_converted": patterns,
        "group_formats": _quark_layers(cfg, name) if method == "quark" else (),
        "unapplied_type_formats": _quark_layer_types(cfg, name) if method == "quark" else (),
    }


def _quark_layers(cfg: Mapping[str, Any], name: str) -> tuple[tuple[str, DType, int], ...]:
    """Quark's ``layer_quant_config``: {name pattern: spec like ``global_quant_config``} (vLLM
    quark.py ``_find_matched_config`` matches a layer's name against these patterns first);
    each pattern's module groups take its format."""
    layers = cfg.get("layer_quant_config") or {}
    if not isinstance(layers, Mapping):
        raise ConfigError(f"{name}.quantization_config.layer_quant_config", layers, "an object")
    out: list[tuple[str, DType, int]] = []
    for pattern, spec in layers.items():
        dtype, group = _quark(spec, f"{name}.quantization_config.layer_quant_config.{pattern}")
        out += [(g, dtype, group) for g in module_groups_of(str(pattern))]
    return tuple(out)


def _quark_layer_types(cfg: Mapping[str, Any], name: str) -> tuple[tuple[str, DType, int], ...]:
    """Quark's ``layer_type_quant_config``: {layer type: spec}, each spec checked like
    ``global_quant_config`` (see ``QuantSpec.unapplied_type_formats`` for why none applies)."""
    key = f"{name}.quantization_config.layer_type_quant_config"
    types = cfg.get("layer_type_quant_config") or {}
    if not isinstance(types, Mapping):
        raise ConfigError(key, types, "an object")
    return tuple((str(t), *_quark(spec, f"{key}.{t}")) for t, spec in types.items())


def _simple(cfg: Mapping[str, Any], method: str, name: str) -> tuple[DType, int]:
    if method == "mxfp4":
        return DType.MXFP4, 32  # the MX block size is fixed by the format
    if method in ("fp8", "fbgemm_fp8"):
        block = cfg.get("weight_block_size")
        if block:
            return DType.FP8_BLOCK, int(_product(block, name))
        return DType.FP8, 0
    bits = cfg.get("bits", cfg.get("w_bit"))
    group = cfg.get("group_size", cfg.get("q_group_size", 128))
    group = 0 if group in (None, -1) else int(group)
    if bits == 4:
        return DType.INT4, group
    if bits == 8:
        return DType.INT8, group
    raise ConfigError(f"{name}.quantization_config.bits", bits, f"{method}: must be 4 or 8")


def _product(values: Sequence[Any], name: str) -> int:
    out = 1
    for v in values:
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name}.quantization_config.weight_block_size", values, "ints > 0")
        out *= v
    return out


def _compressed_tensors(cfg: Mapping[str, Any], name: str) -> tuple[DType, int]:
    """llm-compressor's layout: the first config group's weight and activation schemes."""
    groups = cfg.get("config_groups") or {}
    if not isinstance(groups, Mapping) or not groups:
        raise ConfigError(f"{name}.quantization_config.config_groups", groups, "is empty")
    first = groups[sorted(groups)[0]]
    weights = first.get("weights") or {}
    acts = first.get("input_activations") or {}
    bits, kind = weights.get("num_bits"), weights.get("type")
    group = int(weights.get("group_size") or 0)
    if kind == "float" and bits == 4:
        if group not in (0, 16):
            return DType.MXFP4, group
        # llm-compressor's NVFP4 scheme quantises activations to fp4 too (W4A4); NVFP4A16
        # leaves them 16-bit (no input_activations)
        is_fp4_act = acts.get("type") == "float" and acts.get("num_bits") == 4
        return (DType.FP4 if is_fp4_act else DType.NVFP4_A16), group
    if kind == "float" and bits == 8:
        return (DType.FP8_BLOCK if weights.get("strategy") == "block" else DType.FP8), 0
    if kind == "int" and bits == 4:
        is_fp8_act = acts.get("type") == "float" and acts.get("num_bits") == 8
        return (DType.W4A8 if is_fp8_act else DType.INT4), group
    if kind == "int" and bits == 8:
        return DType.INT8, group
    raise ConfigError(
        f"{name}.quantization_config.config_groups", f"{kind}{bits}", "weights not modelled"
    )


#: ModelOpt ``quant_algo`` -> format (vLLM modelopt.py QUANT_ALGOS: NVFP4 is W4A4, W4A16_NVFP4
#: weight-only; FP8_PER_CHANNEL_PER_TOKEN is W8A8 with per-channel weight scales).
_MODELOPT = {
    "FP8": DType.FP8,
    "FP8_PER_CHANNEL_PER_TOKEN": DType.FP8,
    "NVFP4": DType.FP4,
    "W4A16_NVFP4": DType.NVFP4_A16,
    "W4A8_AWQ": DType.W4A8,
    "W4A16_AWQ": DType.INT4,
}


def _modelopt_flat(cfg: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A ModelOpt config in one level: ``hf_quant_config.json`` nests its scheme under
    ``quantization`` (``quant_algo``, ``group_size``, ``exclude_modules``); the config.json
    form is flat with ``ignore`` (vLLM ``ModelOptQuantConfigBase.from_config`` reads both)."""
    nested = cfg.get("quantization")
    if nested is None:
        return cfg
    if not isinstance(nested, Mapping):
        raise ConfigError(f"{name}.quantization_config.quantization", nested, "a JSON object")
    return {**cfg, **nested}


def _modelopt(cfg: Mapping[str, Any], name: str) -> tuple[DType, int]:
    """NVIDIA ModelOpt: ``quant_algo`` names the scheme (``NVFP4``, ``FP8``, ``W4A8_AWQ``)."""
    algo = str(cfg.get("quant_algo") or "").upper()
    if algo not in _MODELOPT:
        raise ConfigError(
            f"{name}.quantization_config.quant_algo", algo or None, f"one of {sorted(_MODELOPT)}"
        )
    dtype = _MODELOPT[algo]
    return dtype, int(cfg.get("group_size") or FORMATS[dtype].group_size)


def _quark(spec: Any, name: str) -> tuple[DType, int]:
    """AMD Quark: a quant spec's (``global_quant_config``'s, or one layer's) ``weight`` and
    ``input_tensors``. OCP MX fp4
    weights (per_group 32, e8m0 scales; vLLM quark.py ``_is_w_ocp_mx_a_x``) with fp4 inputs
    are MXFP4 W4A4, with 16-bit inputs weight-only MXFP4; fp8_e4m3 weights and inputs are
    W8A8 fp8."""
    weight = spec.get("weight") if isinstance(spec, Mapping) else None
    if not isinstance(weight, Mapping):
        raise ConfigError(f"{name}.weight", weight, "a spec")
    inputs = spec.get("input_tensors")
    in_dtype = inputs.get("dtype") if isinstance(inputs, Mapping) else None
    w_dtype = weight.get("dtype")
    is_mx = weight.get("qscheme") == "per_group" and weight.get("scale_format") == "e8m0"
    if w_dtype == "fp4" and is_mx and int(weight.get("group_size") or 0) == 32:
        return (DType.MXFP4_W4A4 if in_dtype == "fp4" else DType.MXFP4), 32
    if w_dtype == "fp8_e4m3" and in_dtype == "fp8_e4m3":
        return DType.FP8, 0
    raise ConfigError(
        name,
        f"weight {w_dtype}, input {in_dtype}",
        "not modelled (known: OCP MX fp4 weights with fp4 or 16-bit inputs, fp8_e4m3 W8A8)",
    )


def module_groups_of(pattern: str) -> tuple[str, ...]:
    """Module groups a ``modules_to_not_convert`` pattern covers (layer indices ignored).

    ``model.layers.*.self_attn`` -> attention; ``...mlp.experts`` -> experts; a bare
    ``...mlp`` covers every FFN group. Embeddings, LM head, routers (``mlp.router``,
    ``mlp.gate``) and norms stay 16-bit anyway and map to no group.
    """
    p = pattern.lower().rstrip(".*")
    last = p.rsplit(".", 1)[-1]
    if any(s in p for s in ("lm_head", "embed", "router", "norm")) or last in ("gate", "mtp"):
        return ()
    if "shared_expert" in p:
        return ("shared_experts",)
    if "expert" in p:
        return ("experts",)
    if "attn" in p or "attention" in p:
        return ("attention",)
    if last in ("mlp", "ffn", "feed_forward"):
        return ("dense_mlp", "experts", "shared_experts")
    if last in ("gate_proj", "up_proj", "down_proj") or ".mlp." in p:
        return ("dense_mlp",)
    return ()
