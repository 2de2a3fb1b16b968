"""NVFP4 as a W4A4 format: fp4 compute on Blackwell, weight-only elsewhere, ModelOpt configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servesim.core.errors import ConfigError
from servesim.specs.catalog.models import load_hf_config
from servesim.specs.dtypes import DType, gemm_activation, serving_formats
from servesim.specs.hf_config import with_hf_quant_config
from servesim.specs.quant import parse_quantization_config

B200_PEAKS = (DType.BF16, DType.FP8, DType.FP4)
H100_PEAKS = (DType.BF16, DType.FP8)


def test_nvfp4_bytes_per_weight_and_names() -> None:
    # e2m1 nibble + one fp8 e4m3 scale per 16 elements (NVIDIA NVFP4 blog)
    assert DType.FP4.spec.bytes_per_weight == 0.5 + 1 / 16 == 0.5625
    assert DType.NVFP4_A16.spec.bytes_per_weight == 0.5625
    for name in ("nvfp4", "fp4", "w4a4", "nvfp4-w4a4", "NVFP4"):
        assert DType.parse(name) is DType.FP4
    for name in ("nvfp4-a16", "nvfp4a16", "w4a16-nvfp4"):
        assert DType.parse(name) is DType.NVFP4_A16
    assert "weight-only" in DType.FP4.spec.note  # the fallback, said in one line


@pytest.mark.parametrize(
    ("architecture", "peaks", "expected"),
    [
        ("blackwell", B200_PEAKS, DType.FP4),  # B200 / B300 / GB200: fp4 tensor cores
        ("hopper", H100_PEAKS, DType.BF16),  # Marlin NVFP4: dequantised to bf16
        ("cdna4", B200_PEAKS, DType.BF16),  # MI355X's fp4 MFMA takes MX e8m0 scales only
        ("blackwell", (DType.BF16, DType.FP8), DType.BF16),  # a spec without an fp4 peak
    ],
)
def test_nvfp4_computes_in_fp4_only_where_native(
    architecture: str, peaks: tuple[DType, ...], expected: DType
) -> None:
    assert gemm_activation(DType.FP4, architecture, peaks) is expected


def test_other_formats_keep_their_compute_format() -> None:
    for arch, peaks in (("blackwell", B200_PEAKS), ("hopper", H100_PEAKS)):
        assert gemm_activation(DType.FP8, arch, peaks) is DType.FP8
        assert gemm_activation(DType.W4A8, arch, peaks) is DType.FP8
        for weight_only in (DType.MXFP4, DType.NVFP4_A16, DType.INT4, DType.BF16):
            assert gemm_activation(weight_only, arch, peaks) is DType.BF16
    assert gemm_activation(DType.FP8, "ampere", (DType.BF16,)) is DType.BF16


def test_serving_formats_keep_a_bf16_cache_under_fp4() -> None:
    assert serving_formats(DType.FP4, architecture="blackwell") == (
        DType.FP4,
        DType.FP4,
        DType.BF16,
    )
    assert serving_formats(DType.FP4, architecture="hopper") == (
        DType.FP4,
        DType.BF16,
        DType.BF16,
    )
    assert serving_formats(DType.NVFP4_A16, architecture="blackwell")[1] is DType.BF16
    assert serving_formats(DType.FP4, DType.FP8, "blackwell")[2] is DType.FP8


# ModelOpt NVFP4 checkpoint, config.json form (nvidia/*-FP4 repos; vLLM reads "ignore")
MODELOPT_FLAT = {
    "quant_method": "modelopt",
    "quant_algo": "NVFP4",
    "config_groups": {
        "group_0": {
            "input_activations": {"num_bits": 4, "type": "float", "group_size": 16},
            "weights": {"num_bits": 4, "type": "float", "group_size": 16},
            "targets": ["Linear"],
        }
    },
    "ignore": ["lm_head", "model.layers.*.self_attn*"],
    "kv_cache_scheme": {"num_bits": 8, "type": "float"},
    "producer": {"name": "modelopt", "version": "0.33.0"},
}
# the same scheme as ModelOpt's hf_quant_config.json writes it (nested, exclude_modules)
HF_QUANT_CONFIG = {
    "producer": {"name": "modelopt", "version": "0.23.0"},
    "quantization": {
        "quant_algo": "NVFP4",
        "kv_cache_quant_algo": None,
        "group_size": 16,
        "exclude_modules": ["lm_head"],
    },
}


def test_modelopt_nvfp4_flat_config() -> None:
    q = parse_quantization_config(MODELOPT_FLAT, "m")
    assert q is not None
    assert (q["dtype"], q["group_size"]) == (DType.FP4, 16)
    assert q["unconverted_groups"] == frozenset({"attention"})


def test_modelopt_nvfp4_nested_hf_quant_config() -> None:
    cfg = {"quant_method": "modelopt", **HF_QUANT_CONFIG}
    q = parse_quantization_config(cfg, "m")
    assert q is not None and (q["dtype"], q["group_size"]) == (DType.FP4, 16)
    assert q["modules_not_converted"] == ("lm_head",)
    w4a16 = {"quant_method": "modelopt", "quantization": {"quant_algo": "W4A16_NVFP4"}}
    q16 = parse_quantization_config(w4a16, "m")
    assert q16 is not None and (q16["dtype"], q16["group_size"]) == (DType.NVFP4_A16, 16)
    fp4_name = parse_quantization_config({**MODELOPT_FLAT, "quant_method": "modelopt_fp4"}, "m")
    assert fp4_name is not None and fp4_name["dtype"] is DType.FP4


def test_modelopt_unknown_algo_names_the_field() -> None:
    bad = {"quant_method": "modelopt", "quantization": {"quant_algo": "INT3"}}
    with pytest.raises(ConfigError, match="quant_algo"):
        parse_quantization_config(bad, "m")


def test_compressed_tensors_nvfp4_with_fp4_activations_is_w4a4() -> None:
    cfg = {
        "quant_method": "compressed-tensors",
        "config_groups": MODELOPT_FLAT["config_groups"],
    }
    q = parse_quantization_config(cfg, "m")
    assert q is not None and q["dtype"] is DType.FP4


LLAMA_TINY = {
    "model_type": "llama",
    "hidden_size": 1024,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "intermediate_size": 4096,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}


def test_hf_quant_config_json_beside_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_TINY))
    (tmp_path / "hf_quant_config.json").write_text(json.dumps(HF_QUANT_CONFIG))
    spec = load_hf_config(tmp_path, name="tiny-fp4")
    assert spec.quantization is not None and spec.quantization.dtype is DType.FP4
    # a config.json with its own quantization_config keeps it
    own = {**LLAMA_TINY, "quantization_config": {"quant_method": "fp8"}}
    assert with_hf_quant_config(own, HF_QUANT_CONFIG) is own


def test_mxfp4_w4a4_is_native_on_cdna4_and_blackwell() -> None:
    assert DType.parse("w4a4-mxfp4") is DType.MXFP4_W4A4
    assert DType.MXFP4_W4A4.spec.bytes_per_weight == 0.5 + 1 / 32  # e8m0 scale per 32
    mi355x_peaks = (DType.BF16, DType.FP8, DType.FP4)
    assert gemm_activation(DType.MXFP4_W4A4, "cdna4", mi355x_peaks) is DType.FP4
    assert gemm_activation(DType.MXFP4_W4A4, "blackwell", B200_PEAKS) is DType.FP4
    assert gemm_activation(DType.MXFP4_W4A4, "hopper", H100_PEAKS) is DType.BF16
    assert gemm_activation(DType.MXFP4, "cdna4", mi355x_peaks) is DType.BF16  # gpt-oss: w4a16


def _quark(inputs: dict | None) -> dict:
    mx = {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "scale_format": "e8m0"}
    return {
        "quant_method": "quark",
        "global_quant_config": {"weight": mx, "input_tensors": inputs, "output_tensors": None},
        "exclude": ["lm_head", "model.layers.*.self_attn.*"],
        "export": {"kv_cache_group": [], "pack_method": "reorder"},
    }


def test_quark_ocp_mx_configs() -> None:
    # amd/*-MXFP4 checkpoints (Quark w_mxfp4_a_mxfp4): fp4 weights and inputs, per 32, e8m0
    mx_inputs = {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "is_dynamic": True}
    q = parse_quantization_config(_quark(mx_inputs), "m")
    assert q is not None and (q["dtype"], q["group_size"]) == (DType.MXFP4_W4A4, 32)
    assert q["unconverted_groups"] == frozenset({"attention"})
    weight_only = parse_quantization_config(_quark(None), "m")
    assert weight_only is not None and weight_only["dtype"] is DType.MXFP4
    int8 = _quark(None)
    int8["global_quant_config"]["weight"] = {"dtype": "int8", "qscheme": "per_tensor"}
    with pytest.raises(ConfigError, match="global_quant_config"):
        parse_quantization_config(int8, "m")
