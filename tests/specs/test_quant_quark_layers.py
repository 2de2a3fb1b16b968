"""AMD Quark per-layer overrides (``layer_quant_config``): layers matched by name take their own
format, so a model whose attention and experts differ is simulated as such (issue 13)."""

from __future__ import annotations

import pytest

from servesim.core.errors import ConfigError
from servesim.specs.dtypes import DType
from servesim.specs.quant import QuantSpec, module_formats, parse_quantization_config

MX = {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "scale_format": "e8m0"}
MX_IN = {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "is_dynamic": True}
FP8 = {"dtype": "fp8_e4m3", "qscheme": "per_tensor"}
#: Experts in MXFP4 W4A4 (global), attention overridden to fp8 W8A8, lm_head excluded.
CONFIG = {
    "quant_method": "quark",
    "global_quant_config": {"weight": MX, "input_tensors": MX_IN, "output_tensors": None},
    "layer_quant_config": {
        "*self_attn*": {"weight": FP8, "input_tensors": FP8, "output_tensors": None},
    },
    "exclude": ["lm_head"],
}


def test_attention_override_and_global_experts() -> None:
    kw = parse_quantization_config(CONFIG, "m")
    assert kw is not None
    assert kw["group_formats"] == (("attention", DType.FP8, 0),)
    fmts = module_formats(QuantSpec(**kw), DType.BF16)
    assert (fmts["attention"].dtype, fmts["attention"].bytes_per_weight) == (DType.FP8, 1.0)
    # experts keep the global MXFP4: 0.5 B nibble + one e8m0 byte per 32 = 0.53125 B
    assert fmts["experts"].dtype is DType.MXFP4_W4A4
    assert fmts["experts"].bytes_per_weight == 0.53125
    assert fmts["experts"].is_checkpoint and fmts["attention"].is_checkpoint


def test_exclude_wins_over_an_override_and_bad_layer_spec_names_the_pattern() -> None:
    cfg = {**CONFIG, "exclude": ["lm_head", "model.layers.*.self_attn"]}
    kw = parse_quantization_config(cfg, "m")
    assert kw is not None
    assert module_formats(QuantSpec(**kw), DType.BF16)["attention"].dtype is DType.BF16
    bad = {**CONFIG, "layer_quant_config": {"*experts*": {"weight": {"dtype": "int8"}}}}
    with pytest.raises(ConfigError, match=r"layer_quant_config\.\*experts\*"):
        parse_quantization_config(bad, "m")


def test_layer_type_overrides_are_checked_and_recorded_but_the_global_format_serves() -> None:
    # vLLM's quark.py looks type(module) (a class) up among the JSON's string keys, so a
    # "Linear" entry never matches: every layer not matched by name takes the global spec.
    cfg = {**CONFIG, "layer_type_quant_config": {"Linear": {"weight": FP8, "input_tensors": FP8}}}
    kw = parse_quantization_config(cfg, "m")
    assert kw is not None
    assert kw["unapplied_type_formats"] == (("Linear", DType.FP8, 0),)
    fmts = module_formats(QuantSpec(**kw), DType.BF16)
    assert fmts["dense_mlp"].dtype is DType.MXFP4_W4A4  # the global spec, not the type's fp8
    assert fmts["attention"].dtype is DType.FP8  # the name override still wins
    bad = {**CONFIG, "layer_type_quant_config": {"Linear": {"weight": {"dtype": "int8"}}}}
    with pytest.raises(ConfigError, match=r"layer_type_quant_config\.Linear"):
        parse_quantization_config(bad, "m")
    with pytest.raises(ConfigError, match=r"layer_type_quant_config"):
        parse_quantization_config({**CONFIG, "layer_type_quant_config": ["Linear"]}, "m")
