"""Workload presets usable with no data files: length distributions fitted to real traces.

Each preset is a Gaussian copula over two quantile tables (prompt and output tokens), fitted
by ``fit_lengths`` to a public trace, plus a default arrival process with a stated rate. The
fitted parameters live in ``presets_fitted.json`` next to this file, written by
``bench/fit_presets.py`` (re-run it to reproduce them); each entry records its source file and
the fit quality (p50/p90/p99 of samples from the fit against the data).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from servesim.core.errors import UnknownNameError
from servesim.workload.arrivals import ArrivalProcess, GammaArrivals, PoissonArrivals
from servesim.workload.datasets import ShareGPTBenchLengths
from servesim.workload.lengths import GaussianCopulaLengths, LengthSampler, QuantileLength

FITTED_FILE = Path(__file__).with_name("presets_fitted.json")

# Quantile-table probabilities: every percentile plus a finer tail, so p99.9 and the observed
# maximum are reproduced (tails drive KV-cache pressure and TTFT outliers).
TABLE_PROBS: tuple[float, ...] = (0.0, *(i / 100 for i in range(1, 100)), 0.995, 0.999, 1.0)


@dataclass(frozen=True, slots=True)
class Preset:
    """A named workload: fitted (prompt, output) lengths and a default arrival process.

    Attributes:
        name: registry key (``servesim workload list``).
        description: one line for humans.
        source: the data file the lengths were fitted to (and its repository).
        lengths: the fitted sampler.
        arrival_kind: ``"poisson"`` or ``"gamma"``.
        rate_per_s: default mean arrival rate.
        cv: inter-arrival coefficient of variation (gamma only; 1.0 for Poisson).
        rate_source: why this default rate.
        fit_quality: {"prompt"|"output": {"p50"|"p90"|"p99": [fitted, real]}} (empty for a
            parametric model).
    """

    name: str
    description: str
    source: str
    lengths: LengthSampler
    arrival_kind: str
    rate_per_s: float
    cv: float
    rate_source: str
    fit_quality: dict[str, Any]

    def arrivals(self, rate_per_s: float | None = None) -> ArrivalProcess:
        """The default arrival process, optionally at another mean rate."""
        rate = rate_per_s if rate_per_s is not None else self.rate_per_s
        if self.arrival_kind == "gamma":
            return GammaArrivals(rate, self.cv)
        return PoissonArrivals(rate)


def fit_lengths(prompt: np.ndarray, output: np.ndarray) -> dict[str, Any]:
    """Fit quantile tables and the normal-score correlation to observed (prompt, output) rows.

    Returns a JSON-ready dict: ``probs``, ``prompt_values``, ``output_values``, ``rho``.
    """
    from scipy.special import ndtri  # lazily: scipy costs ~0.8 s to import
    from scipy.stats import rankdata

    probs = np.asarray(TABLE_PROBS)
    n = len(prompt)
    # Normal scores of mid-ranks (ties averaged): the Gaussian-copula correlation estimate.
    z_p = ndtri((rankdata(prompt) - 0.5) / n)
    z_o = ndtri((rankdata(output) - 0.5) / n)
    rho = float(np.corrcoef(z_p, z_o)[0, 1])
    return {
        "probs": [float(p) for p in probs],
        "prompt_values": [float(v) for v in np.quantile(prompt, probs)],
        "output_values": [float(v) for v in np.quantile(output, probs)],
        "rho": round(rho, 6),
    }


def lengths_from_fit(fit: dict[str, Any]) -> GaussianCopulaLengths:
    """Build the sampler from a ``fit_lengths`` result."""
    probs = fit["probs"]
    return GaussianCopulaLengths(
        QuantileLength(probs, fit["prompt_values"]),
        QuantileLength(probs, fit["output_values"]),
        fit["rho"],
    )


# Old name -> new name. ``sharegpt`` was always Sarathi-Serve/Vidur's 8k-filtered ShareGPT
# (about 2,380 prompt / 447 output tokens on average), not the ShareGPT that ``vllm bench
# serve`` samples (``sharegpt-vllm-bench``); the fitted file keeps the key bench/fit_presets.py
# writes, renamed on load.
RENAMED = {"sharegpt": "sharegpt-vidur"}


def _sharegpt_vllm_bench() -> Preset:
    return Preset(
        name="sharegpt-vllm-bench",
        description="ShareGPT_V3 as vllm bench serve samples it (prompt <= 1024, total <= 2048)",
        source="published vllm bench serve totals (servesim.workload.datasets); no data file",
        lengths=ShareGPTBenchLengths(),
        arrival_kind="poisson",
        rate_per_s=1.0,
        cv=1.0,
        rate_source="vllm bench serve's default is inf (use --request-rate); 1 req/s for "
        "an open-loop run",
        fit_quality={},
    )


@cache
def _load() -> dict[str, Preset]:
    raw = json.loads(FITTED_FILE.read_text(encoding="utf-8"))
    out: dict[str, Preset] = {"sharegpt-vllm-bench": _sharegpt_vllm_bench()}
    for key, entry in raw["presets"].items():
        name = RENAMED.get(key, key)
        out[name] = Preset(
            name=name,
            description=entry["description"],
            source=entry["source"],
            lengths=lengths_from_fit(entry["fit"]),
            arrival_kind=entry["arrival"]["kind"],
            rate_per_s=entry["arrival"]["rate_per_s"],
            cv=entry["arrival"].get("cv", 1.0),
            rate_source=entry["arrival"]["why"],
            fit_quality=entry["fit_quality"],
        )
    return out


def preset_names() -> list[str]:
    """Names of all presets, sorted (deprecated names not included: see ``RENAMED``)."""
    return sorted(_load())


def get_preset(name: str) -> Preset:
    """The preset called ``name``; unknown names raise with a suggestion.

    An old name (``RENAMED``) still works and warns (``DeprecationWarning``) with the new one.
    """
    presets = _load()
    key = name.lower()
    if key in RENAMED:
        warnings.warn(
            f"workload preset {key!r} is now {RENAMED[key]!r} (Vidur's filtered ShareGPT; "
            "vllm bench serve's ShareGPT is 'sharegpt-vllm-bench')",
            DeprecationWarning,
            stacklevel=2,
        )
        key = RENAMED[key]
    try:
        return presets[key]
    except KeyError:
        raise UnknownNameError("workload preset", name, presets) from None
