"""Presets: usable offline, fitted to the data (medians close), sensible defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servesim.core.errors import UnknownNameError
from servesim.core.rng import RandomStreams
from servesim.workload import WorkloadConfig, describe, get_preset, load_trace, preset_names
from servesim.workload.presets import fit_lengths, lengths_from_fit

REQUIRED = {
    "sharegpt-vidur",
    "sharegpt-vllm-bench",
    "azure-conv",
    "azure-code",
    "arxiv-summarization",
    "creation",
}


def test_presets_listed_and_offline() -> None:
    assert set(preset_names()) >= REQUIRED
    for name in preset_names():
        preset = get_preset(name)
        assert preset.rate_per_s > 0 and preset.source and preset.rate_source
        p, o = preset.lengths.sample(RandomStreams(0).generator("t"), 1000)
        assert p.min() >= 1 and o.min() >= 1
        for label in ("prompt", "output") if preset.fit_quality else ():
            for q in ("p50", "p90", "p99"):
                fitted, real = preset.fit_quality[label][q]
                assert fitted == pytest.approx(real, rel=0.05, abs=3), (name, label, q)


def test_unknown_preset_suggests() -> None:
    with pytest.raises(UnknownNameError, match="did you mean sharegpt"):
        get_preset("sharegtp")


def test_shapes_match_their_story() -> None:
    def medians(name: str) -> tuple[float, float]:
        p, o = get_preset(name).lengths.sample(RandomStreams(0).generator("t"), 20_000)
        return float(np.median(p)), float(np.median(o))

    code_p, code_o = medians("azure-code")
    assert code_p > 50 * code_o  # prefill-heavy
    arxiv_p, arxiv_o = medians("arxiv-summarization")
    assert arxiv_p > 10 * arxiv_o
    creation_p, creation_o = medians("creation")
    assert creation_o > 3 * creation_p


PRESET_DATA = {
    "sharegpt-vidur": "traces/sharegpt_sarathi/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
    "azure-conv": "traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv",
    "azure-code": "traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv",
    "arxiv-summarization": (
        "traces/vidur/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"
    ),
    "creation": "traces/apex_plus/llama/creation_05.jsonl",
}


@pytest.mark.parametrize("name", sorted(PRESET_DATA))
def test_preset_medians_close_to_data(shared_data: Path, name: str) -> None:
    trace = load_trace(shared_data / PRESET_DATA[name])
    stats = describe(WorkloadConfig(preset=name, num_requests=20_000).build(RandomStreams(4)))
    assert stats.prompt.p50 == pytest.approx(np.median(trace.prompt_tokens), rel=0.04)
    assert stats.output.p50 == pytest.approx(np.median(trace.output_tokens), rel=0.04, abs=1)
    assert stats.prompt.max <= trace.prompt_tokens.max()
    if get_preset(name).arrival_kind == "gamma":  # rate fitted to real arrivals
        rate = len(trace) / trace.arrival_s[-1]
        assert get_preset(name).rate_per_s == pytest.approx(rate, rel=0.01)


def test_fit_is_reproducible_and_keeps_correlation() -> None:
    rng = np.random.default_rng(0)
    z = rng.multivariate_normal([0, 0], [[1, 0.7], [0.7, 1]], 20_000)
    prompt = np.rint(np.exp(6 + z[:, 0])).astype(np.int64) + 1
    output = np.rint(np.exp(4 + 0.5 * z[:, 1])).astype(np.int64) + 1
    fit = fit_lengths(prompt, output)
    assert fit == fit_lengths(prompt, output)
    assert fit["rho"] == pytest.approx(0.7, abs=0.03)
    p, o = lengths_from_fit(fit).sample(RandomStreams(0).generator("t"), 20_000)
    assert np.corrcoef(np.log(p), np.log(o))[0, 1] == pytest.approx(0.7, abs=0.05)


def test_old_sharegpt_name_is_the_vidur_set_with_a_deprecation_note() -> None:
    with pytest.warns(DeprecationWarning, match="sharegpt-vidur"):
        preset = get_preset("sharegpt")
    assert preset.name == "sharegpt-vidur"
    assert "sharegpt" not in preset_names()


def test_sharegpt_vllm_bench_matches_published_means_and_filter() -> None:
    # Published 1,000-prompt vllm bench serve runs: 215.2 input, ~198 generated tokens.
    p, o = get_preset("sharegpt-vllm-bench").lengths.sample(RandomStreams(0).generator("t"), 50_000)
    assert p.mean() == pytest.approx(215.2, rel=0.03)
    assert o.mean() == pytest.approx(198.0, rel=0.03)
    assert p.min() >= 4 and o.min() >= 4 and p.max() <= 1024 and (p + o).max() <= 2048
    # Vidur's set is an order of magnitude longer in prompt.
    vp, _vo = get_preset("sharegpt-vidur").lengths.sample(RandomStreams(0).generator("t"), 20_000)
    assert vp.mean() > 8 * p.mean()
