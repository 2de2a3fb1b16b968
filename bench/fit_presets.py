"""Fit the workload presets to the public traces and write ``presets_fitted.json``.

Usage: ``python bench/fit_presets.py [SHARED_DATA_DIR]`` (default ``../shared/data``). Prints
the fit quality (p50/p90/p99 of 200,000 samples from the fit against the data) per preset.
The data files are read through ``servesim.workload.load_trace``; nothing of them is copied,
only the fitted quantile tables, correlation and arrival parameters.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import scipy.stats

from servesim.core.rng import RandomStreams
from servesim.workload.presets import FITTED_FILE, fit_lengths, lengths_from_fit
from servesim.workload.traces import load_trace

REPO = Path(__file__).resolve().parents[1]

# name -> (relative data path, description, arrival kind, default rate (None: fit), why)
SOURCES: dict[str, tuple[str, str, str, float | None, str]] = {
    "sharegpt": (
        "traces/sharegpt_sarathi/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
        "ShareGPT chat (Sarathi-Serve/Vidur length file, Llama-2 tokens, total <= 8k)",
        "poisson",
        1.0,
        "no arrivals in the source; 1 req/s is a moderate load for one 7B-70B replica",
    ),
    "azure-conv": (
        "traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv",
        "Azure LLM 2023 conversation (Splitwise): medium prompts and outputs",
        "gamma",
        None,
        "gamma: mean rate of the real arrivals, shape by maximum likelihood on their gaps",
    ),
    "azure-code": (
        "traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv",
        "Azure LLM 2023 coding (Splitwise): long prompts, tiny outputs (prefill-heavy)",
        "gamma",
        None,
        "gamma: mean rate of the real arrivals, shape by maximum likelihood on their gaps "
        "(moment CV 13 from a few idle minutes; replay the trace to keep those)",
    ),
    "arxiv-summarization": (
        "traces/vidur/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
        "arXiv summarization (Vidur length file): long prompt, short output, total <= 4k",
        "poisson",
        0.5,
        "no arrivals in the source; 0.5 req/s as in the APEX summarization traces",
    ),
    "creation": (
        "traces/apex_plus/llama/creation_05.jsonl",
        "APEX creation (Llama tokens): short prompt, long generated story",
        "poisson",
        0.5,
        "the APEX creation trace's own Poisson rate (0.5 req/s)",
    ),
    "mooncake-conv": (
        "traces/mooncake/conversation_trace.jsonl",
        "Mooncake/Kimi conversations (FAST'25): long contexts, prefix reuse not modelled here",
        "poisson",
        3.4,
        "the trace's mean rate (its arrivals sit on a 3-s grid, so no gamma fit)",
    ),
    "lmsys": (
        "traces/apex_plus/llama/lmsys_05.jsonl",
        "APEX LMSYS-Chat-1M (Llama tokens): short chat prompts and answers",
        "poisson",
        0.5,
        "the APEX lmsys trace's own Poisson rate (0.5 req/s)",
    ),
}


def _pcts(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.percentile(values, [50, 90, 99])]


def fit_one(path: Path, kind: str, rate: float | None) -> tuple[dict, dict, dict]:
    """Fit one preset: (length fit, arrival params, fit quality)."""
    trace = load_trace(path)
    prompt, output = trace.prompt_tokens, trace.output_tokens
    fit = fit_lengths(prompt, output)
    fit["num_rows"] = len(trace)
    arrival: dict = {"kind": kind}
    if rate is None:
        gaps = np.diff(trace.arrival_s)
        span_s = trace.arrival_s[-1] - trace.arrival_s[0]
        arrival["rate_per_s"] = round(float(gaps.size / span_s), 4)
        # Gamma shape by maximum likelihood (it follows the bulk of the gaps); the moment CV is
        # kept for reference: on azure-code a few idle gaps of 2-4 minutes push it to ~13.
        shape, _loc, _scale = scipy.stats.gamma.fit(gaps[gaps > 0], floc=0)
        arrival["cv"] = round(float(1.0 / np.sqrt(shape)), 4)
        arrival["cv_moments"] = round(float(gaps.std() / gaps.mean()), 4)
    else:
        arrival["rate_per_s"] = rate
    sample_p, sample_o = lengths_from_fit(fit).sample(
        RandomStreams(0).generator("fit_presets"), 200_000
    )
    quality = {}
    for label, fitted, real in (("prompt", sample_p, prompt), ("output", sample_o, output)):
        quality[label] = {
            q: [round(f, 1), round(r, 1)]
            for q, f, r in zip(("p50", "p90", "p99"), _pcts(fitted), _pcts(real), strict=True)
        }
    return fit, arrival, quality


def main(argv: list[str]) -> None:
    """Fit every preset and write the JSON file."""
    data = Path(argv[1]) if len(argv) > 1 else REPO.parent / "shared" / "data"
    presets = {}
    for name, (rel, desc, kind, rate, why) in SOURCES.items():
        fit, arrival, quality = fit_one(data / rel, kind, rate)
        arrival["why"] = why
        presets[name] = {
            "description": desc,
            "source": rel,
            "num_rows": int(fit.pop("num_rows")),
            "method": "Gaussian copula (normal-score rho) of 103-point quantile tables",
            "arrival": arrival,
            "fit_quality": quality,
            "fit": fit,
        }
        print(f"{name:22s} rho={fit['rho']:+.3f} arrival={arrival}")
        for label, qs in quality.items():
            shown = "  ".join(f"{q} fit {f:8.1f} real {r:8.1f}" for q, (f, r) in qs.items())
            print(f"    {label:6s} {shown}")
    doc = {
        "comment": "Written by bench/fit_presets.py; fit = Gaussian copula of quantile tables. "
        "fit_quality values are [fitted, real].",
        "presets": presets,
    }
    FITTED_FILE.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {FITTED_FILE}")


if __name__ == "__main__":
    main(sys.argv)
