"""Formats as data: bytes per weight with the group scales, names and aliases, native vs
emulated, and ``quantization_config`` read into formats per module group."""

from __future__ import annotations

import pytest

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.specs.dtypes import FORMATS, DType, serving_formats, weight_bytes_per_param
from servesim.specs.quant import (
    QuantSpec,
    module_formats,
    module_groups_of,
    parse_quantization_config,
)

# (format, bytes per weight worked by hand from the layout)
BYTES_PER_WEIGHT = [
    (DType.BF16, 2.0),
    (DType.FP8, 1.0),  # one fp32 scale per tensor: negligible
    (DType.FP8_BLOCK, 1.0 + 4.0 / (128 * 128)),  # fp32 scale per 128x128 block
    (DType.INT8, 1.0),
    (DType.INT4, 0.5 + 2.0 / 128),  # AWQ/GPTQ: fp16 scale per 128
    (DType.W4A8, 0.5 + 2.0 / 128),
    (DType.FP4, 0.5 + 1.0 / 16),  # NVFP4: e4m3 scale per 16
    (DType.MXFP4, 0.5 + 1.0 / 32),  # MXFP4: e8m0 scale per 32
]


@pytest.mark.parametrize(("dtype", "expected"), BYTES_PER_WEIGHT, ids=lambda v: str(v))
def test_bytes_per_weight_include_the_group_scales(dtype: DType, expected: float) -> None:
    assert weight_bytes_per_param(dtype) == pytest.approx(expected, rel=1e-12)
    assert dtype.spec.bytes_per_weight == pytest.approx(expected, rel=1e-12)


def test_every_format_cites_a_source_and_has_a_kernel_dtype() -> None:
    for dtype in DType:
        spec = FORMATS[dtype]
        assert spec.name == dtype.value
        assert spec.source and spec.description
        assert spec.kernel_dtype in DType


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bf16", DType.BF16),
        ("bfloat16", DType.BF16),
        ("auto", DType.BF16),
        ("fp8", DType.FP8),
        ("fp8_e4m3", DType.FP8),
        ("int4", DType.INT4),
        ("fp4", DType.FP4),
        ("AWQ", DType.INT4),
        ("gptq", DType.INT4),
        ("w4a16", DType.INT4),
        ("w4a8", DType.W4A8),
        ("fp8-block", DType.FP8_BLOCK),
        ("fp8_block", DType.FP8_BLOCK),
        ("nvfp4", DType.FP4),
        ("mxfp4", DType.MXFP4),
    ],
)
def test_named_formats_and_old_names_parse(name: str, expected: DType) -> None:
    assert DType.parse(name) is expected


def test_unknown_format_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="mxfp4"):
        DType.parse("fp3")


def test_serving_formats_of_the_named_formats() -> None:
    # W8A8 and W4A8 compute in fp8 and keep a bf16 KV cache; weight-only formats stay bf16
    assert serving_formats(DType.W4A8) == (DType.W4A8, DType.FP8, DType.BF16)
    assert serving_formats(DType.FP8_BLOCK) == (DType.FP8_BLOCK, DType.FP8, DType.BF16)
    assert serving_formats(DType.MXFP4) == (DType.MXFP4, DType.BF16, DType.BF16)
    assert serving_formats(DType.INT4) == (DType.INT4, DType.BF16, DType.BF16)
    assert serving_formats(DType.FP16) == (DType.FP16, DType.FP16, DType.FP16)


def test_native_vs_emulated_by_architecture() -> None:
    assert DType.FP8.spec.is_native("hopper")
    assert not DType.FP8.spec.is_native("ampere")  # A100 runs fp8 checkpoints weight-only
    assert DType.MXFP4.spec.is_native("blackwell")
    assert DType.MXFP4.spec.is_native("cdna4")
    # NVFP4 is W4A4 on Blackwell only; nvfp4-a16 is its weight-only form (tests/specs/test_fp4.py)
    assert DType.FP4.spec.is_native("blackwell") and not DType.FP4.spec.is_native("hopper")
    assert DType.NVFP4_A16.spec.is_weight_only
    assert DType.INT4.spec.is_native("turing")  # weight-only: dequantised by design
    assert not DType.W4A8.spec.is_native("ampere")


GPT_OSS_QUANT = {
    "quant_method": "mxfp4",
    "modules_to_not_convert": [
        "model.layers.*.self_attn",
        "model.layers.*.mlp.router",
        "model.embed_tokens",
        "lm_head",
    ],
}


def test_gpt_oss_quantization_config_keeps_attention_in_bf16() -> None:
    q = QuantSpec(**parse_quantization_config(GPT_OSS_QUANT, "gpt-oss"))  # type: ignore[arg-type]
    assert q.dtype is DType.MXFP4
    assert q.group_size == 32
    assert q.unconverted_groups == frozenset({"attention"})
    fmts = module_formats(q, DType.BF16)
    assert fmts["attention"].dtype is DType.BF16 and not fmts["attention"].is_checkpoint
    assert fmts["experts"].dtype is DType.MXFP4 and fmts["experts"].is_checkpoint
    assert fmts["experts"].bytes_per_weight == 0.5 + 1 / 32


@pytest.mark.parametrize(
    ("cfg", "dtype", "group", "bytes_per_weight"),
    [
        ({"quant_method": "fp8", "weight_block_size": [128, 128]}, DType.FP8_BLOCK, 16384, None),
        ({"quant_method": "fp8", "activation_scheme": "dynamic"}, DType.FP8, 0, 1.0),
        ({"quant_method": "awq", "bits": 4, "group_size": 128}, DType.INT4, 128, 0.5 + 2 / 128),
        # a GPTQ checkpoint at group 32 carries 4x the scales of group 128
        ({"quant_method": "gptq", "bits": 4, "group_size": 32}, DType.INT4, 32, 0.5 + 2 / 32),
        ({"quant_method": "gptq", "bits": 4, "group_size": -1}, DType.INT4, 0, None),
        ({"quant_method": "gptq", "bits": 8, "group_size": 128}, DType.INT8, 128, 1.0),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, DType.FP4, 16, 0.5 + 1 / 16),
        ({"quant_method": "modelopt", "quant_algo": "W4A8_AWQ"}, DType.W4A8, 128, None),
    ],
)
def test_quant_methods(cfg: dict, dtype: DType, group: int, bytes_per_weight: float | None) -> None:
    q = QuantSpec(**parse_quantization_config(cfg, "m"))  # type: ignore[arg-type]
    assert (q.dtype, q.group_size) == (dtype, group)
    if bytes_per_weight is not None:
        assert q.bytes_per_weight == pytest.approx(bytes_per_weight)


def test_compressed_tensors_nvfp4_and_w4a8() -> None:
    nvfp4 = {
        "quant_method": "compressed-tensors",
        "config_groups": {
            "group_0": {"weights": {"num_bits": 4, "type": "float", "group_size": 16}}
        },
        "ignore": ["lm_head", "re:.*mlp.gate$"],
    }
    q = parse_quantization_config(nvfp4, "m")
    # weights only: llm-compressor's NVFP4A16 (W4A4 NVFP4 adds fp4 input_activations)
    assert q is not None and (q["dtype"], q["group_size"]) == (DType.NVFP4_A16, 16)
    assert q["unconverted_groups"] == frozenset()  # LM head and router are 16-bit anyway
    w4a8 = {
        "quant_method": "compressed-tensors",
        "config_groups": {
            "g": {
                "weights": {"num_bits": 4, "type": "int", "group_size": 128},
                "input_activations": {"num_bits": 8, "type": "float"},
            }
        },
    }
    assert parse_quantization_config(w4a8, "m")["dtype"] is DType.W4A8  # type: ignore[index]


def test_unknown_quant_method_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="quant_method"):
        parse_quantization_config({"quant_method": "bitsandbytes"}, "m")
    with pytest.raises(ConfigError, match="bits"):
        parse_quantization_config({"quant_method": "awq", "bits": 3}, "m")


@pytest.mark.parametrize(
    ("pattern", "groups"),
    [
        ("model.layers.*.self_attn", ("attention",)),
        ("model.layers.*.linear_attn", ("attention",)),
        ("model.layers.*.mlp.experts", ("experts",)),
        ("model.layers.*.mlp.shared_expert", ("shared_experts",)),
        ("model.layers.*.mlp", ("dense_mlp", "experts", "shared_experts")),
        ("model.layers.0.mlp.down_proj", ("dense_mlp",)),
        ("model.layers.*.mlp.gate", ()),
        ("model.layers.*.mlp.router", ()),
        ("lm_head", ()),
    ],
)
def test_module_patterns_map_to_groups(pattern: str, groups: tuple[str, ...]) -> None:
    assert module_groups_of(pattern) == groups


def test_without_a_checkpoint_quantization_every_group_follows_the_plan() -> None:
    fmts = module_formats(None, DType.INT4)
    assert {f.dtype for f in fmts.values()} == {DType.INT4}
    assert not any(f.is_checkpoint for f in fmts.values())


@pytest.mark.parametrize(
    ("weights", "architecture", "activation"),
    [
        (DType.FP8, "hopper", DType.FP8),
        (DType.FP8, "ada", DType.FP8),
        # Ampere has no FP8 tensor cores: vLLM runs fp8 checkpoints weight-only (Marlin).
        (DType.FP8, "ampere", DType.BF16),
        (DType.W4A8, "ampere", DType.BF16),
        (DType.INT4, "hopper", DType.BF16),
        (DType.BF16, "ampere", DType.BF16),
    ],
)
def test_serving_formats_follow_the_architecture(
    weights: DType, architecture: str, activation: DType
) -> None:
    _, act, kv = serving_formats(weights, architecture=architecture)
    assert act == activation
    assert kv == DType.BF16


def test_perf_and_simulate_price_fp8_on_a100_with_the_same_formats() -> None:
    """One formats rule: ``perf``'s plan and the simulator's plan agree (fp8 on A100 ran weight-only
    in ``perf`` while ``simulate`` refused it for want of an FP8 tensor peak)."""
    from servesim.cli.perf import _activation_dtype
    from servesim.cluster.config import PoolConfig
    from servesim.cluster.deployment import pool_plan
    from servesim.specs.catalog import get_gpu

    for gpu in ("a100-80gb", "h100-sxm"):
        plan = pool_plan(PoolConfig(gpu=gpu, dtype="fp8"), "llama-3.1-8b")
        arch = get_gpu(gpu).architecture
        assert plan.activation_dtype == _activation_dtype(DType.FP8, arch, None)
    assert pool_plan(PoolConfig(gpu="a100-80gb", dtype="fp8"), "llama-3.1-8b").activation_dtype == (
        DType.BF16
    )
