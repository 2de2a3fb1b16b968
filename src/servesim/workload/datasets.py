"""Length models of the datasets benchmark clients send (``vllm bench serve --dataset-name``).

- ``RandomDatasetLengths``: vllm bench serve's ``random`` dataset. Input and output lengths are
  integers uniform on ``[floor(len x (1 - range_ratio)), ceil(len x (1 + range_ratio))]``
  (output at least 1), after a fixed ``prefix_len``-token prefix shared by every prompt; the
  client sets ``ignore_eos`` for it, so the output length is exact. (vLLM,
  ``vllm/benchmarks/datasets.py``, ``RandomDataset.get_sampling_params``; the tokenizer's
  special tokens, which vLLM subtracts from the input length, are not modelled.)
- ``ShareGPTBenchLengths``: ShareGPT_V3 (``ShareGPT_V3_unfiltered_cleaned_split.json``) as
  vllm bench serve samples it: the first human turn and the first answer of each conversation,
  kept when both are >= 4 tokens, the prompt <= 1,024 and prompt + answer <= 2,048 tokens
  (``is_valid_sequence`` in the same file). Without the data file, a bivariate log-normal
  rejected by exactly those rules; its medians are set so the means match the published
  1,000-prompt runs (``--seed 0``, Llama tokenizer): 215,196 input tokens, i.e. 215.2 per
  prompt, and 185,671-198,532 generated tokens, about 198 per request (result blocks of
  ``benchmark_serving.py`` pasted in public benchmark READMEs and scripts: an AWS vLLM DLC
  example 215,196 in / 185,671 out, others 197,090 and 198,343 out). The
  log-space sigmas (1.2 prompt, 1.0 output) are an assumption, not a fit: the sets' shapes
  are not published. Compare ``sharegpt-vidur`` (Sarathi-Serve/Vidur's 8k-filtered file):
  about 2,380 prompt / 447 output tokens on average, ten times longer prompts.
"""

from __future__ import annotations

import math

import numpy as np

from servesim.core.errors import ConfigError
from servesim.workload.lengths import _MIN_ACCEPTANCE, LengthDistribution, LengthSampler


class RandomDatasetLengths:
    """vllm bench serve's ``random`` dataset lengths (module docstring)."""

    def __init__(
        self, input_len: int, output_len: int, range_ratio: float = 0.0, prefix_len: int = 0
    ) -> None:
        if not 0.0 <= range_ratio < 1.0:
            raise ConfigError("range_ratio", range_ratio, "must be in [0, 1) as in vllm")
        if input_len < 0 or prefix_len < 0:
            raise ConfigError("input_len", input_len, "lengths must be >= 0")
        if output_len < 1:
            raise ConfigError("output_len", output_len, "must be >= 1")
        self.input_low = math.floor(input_len * (1 - range_ratio))
        self.input_high = math.ceil(input_len * (1 + range_ratio))
        self.output_low = max(1, math.floor(output_len * (1 - range_ratio)))
        self.output_high = max(1, math.ceil(output_len * (1 + range_ratio)))
        self.prefix_len = int(prefix_len)
        if self.prefix_len + self.input_low < 1:
            raise ConfigError("input_len", input_len, "the shortest prompt would be empty")

    def sample(self, rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
        prompts = rng.integers(self.input_low, self.input_high, size=num, endpoint=True)
        outputs = rng.integers(self.output_low, self.output_high, size=num, endpoint=True)
        return prompts + self.prefix_len, outputs


# vllm bench serve's ShareGPT filter (``is_valid_sequence`` defaults).
SHAREGPT_MIN_TOKENS = 4
SHAREGPT_MAX_PROMPT_TOKENS = 1024
SHAREGPT_MAX_TOTAL_TOKENS = 2048
# Medians solved so the filtered means are 215.2 prompt / 198 output tokens (docstring).
SHAREGPT_PROMPT_MEDIAN = 152.6
SHAREGPT_PROMPT_SIGMA = 1.2
SHAREGPT_OUTPUT_MEDIAN = 125.7
SHAREGPT_OUTPUT_SIGMA = 1.0


class ShareGPTBenchLengths:
    """ShareGPT_V3 as vllm bench serve filters it, as a rejected log-normal (docstring)."""

    def __init__(
        self,
        prompt_median: float = SHAREGPT_PROMPT_MEDIAN,
        prompt_sigma: float = SHAREGPT_PROMPT_SIGMA,
        output_median: float = SHAREGPT_OUTPUT_MEDIAN,
        output_sigma: float = SHAREGPT_OUTPUT_SIGMA,
    ) -> None:
        self.mu = (math.log(prompt_median), math.log(output_median))
        self.sigma = (prompt_sigma, output_sigma)

    def _draw(
        self, rng: np.random.Generator, num: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = rng.standard_normal((2, num))
        prompt = np.rint(np.exp(self.mu[0] + self.sigma[0] * z[0])).astype(np.int64)
        output = np.rint(np.exp(self.mu[1] + self.sigma[1] * z[1])).astype(np.int64)
        ok = (
            (prompt >= SHAREGPT_MIN_TOKENS)
            & (output >= SHAREGPT_MIN_TOKENS)
            & (prompt <= SHAREGPT_MAX_PROMPT_TOKENS)
            & (prompt + output <= SHAREGPT_MAX_TOTAL_TOKENS)
        )
        return prompt, output, ok

    def sample(self, rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
        prompts = np.empty(num, dtype=np.int64)
        outputs = np.empty(num, dtype=np.int64)
        have = num_drawn = 0
        while have < num:
            need = num - have
            prompt, output, ok = self._draw(rng, need)
            num_drawn += need
            kept = int(ok.sum())
            prompts[have : have + kept] = prompt[ok]
            outputs[have : have + kept] = output[ok]
            have += kept
            if have < num and num_drawn > 1000 and have < _MIN_ACCEPTANCE * num_drawn:
                raise ConfigError("sharegpt lengths", self.mu, "the filter rejects > 99.9%")
        return prompts, outputs


class EOSStoppedLengths:
    """Output lengths when the server stops at the model's end-of-sequence token.

    A benchmark client asks for ``max_tokens`` (the dataset's output length) and, unless it sets
    ``ignore_eos``, the model may stop earlier, at its natural answer length. Each request
    generates ``min(requested, natural)`` tokens, ``natural`` drawn from ``natural`` (e.g. the
    output lengths a measured run reported).
    """

    def __init__(self, base: LengthSampler, natural: LengthDistribution) -> None:
        self.base, self.natural = base, natural

    def sample(self, rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
        prompts, outputs = self.base.sample(rng, num)
        return prompts, np.minimum(outputs, self.natural.sample(rng, num))
