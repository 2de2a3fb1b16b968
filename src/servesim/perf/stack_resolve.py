"""Which fitted parameters price an operator family for a (kernel stack, GPU) pair.

Per family (``gemm``, ``attention``, ``moe``, ``collectives``) the answer is, in order:
1. **measured**: the stack has a fit measured on this very GPU;
2. **stand-in**: a stack it names as its stand-in has one (e.g. SGLang on A100 uses vLLM's);
3. **borrowed**: a calibrated GPU's fit, chosen and carried over by the stated rules of
   ``opmodels.transfer`` (donor by architecture trait; clock, SM and link rules) and applied
   to this GPU's data sheet, flagged uncalibrated;
4. nothing: the legacy formula (``vllm-0.6`` curves or documented defaults) prices it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servesim.core.errors import UnknownNameError
from servesim.perf.calibration import Calibration
from servesim.perf.opmodels.transfer import borrow
from servesim.perf.stacks import LEGACY_STACK, get_stack
from servesim.specs.catalog import get_gpu
from servesim.specs.gpu import GPUSpec

FAMILIES: tuple[str, ...] = ("gemm", "attention", "moe", "collectives")


@dataclass(frozen=True, slots=True)
class FamilySource:
    """Where one family's parameters come from.

    Attributes:
        family: the operator family.
        stack: the stack whose fit is used.
        gpu_key: the calibration key of the GPU the fit was measured on.
        how: ``measured``, ``stand-in`` or ``borrowed``.
        params: the fitted parameters (family-specific JSON).
        source: the tables the fit came from, in words.
    """

    family: str
    stack: str
    gpu_key: str
    how: str
    params: Mapping[str, Any]
    source: str = ""

    @property
    def is_calibrated(self) -> bool:
        """True when the fit was measured on this GPU (by this stack or its stand-in)."""
        return self.how != "borrowed"

    def describe(self) -> str:
        """One line: ``vllm-0.24 h100 (measured; aiconfigurator h100_sxm vllm 0.24.0)``."""
        return f"{self.stack} {self.gpu_key} ({self.how}; {self.source})"


def stack_chain(stack: str) -> list[str]:
    """The stack and its stand-ins, the legacy stack left out (it has no family fits)."""
    chain: list[str] = []
    name: str | None = stack
    while name is not None and name != LEGACY_STACK and name not in chain:
        chain.append(name)
        name = get_stack(name).stand_in
    return chain


def resolve_family(
    calibration: Calibration, stack: str, gpu: GPUSpec, family: str
) -> FamilySource | None:
    """The parameters of ``family`` for ``gpu`` under ``stack`` (None: the legacy formula)."""
    chain = stack_chain(stack)
    for position, name in enumerate(chain):
        for key, entry in calibration.kernel_stacks.get(name, {}).items():
            if entry.get("catalog_gpu") == gpu.name and family in entry:
                how = "measured" if position == 0 else "stand-in"
                return FamilySource(family, name, key, how, entry[family], _source(entry, family))
    for name in chain:
        entries = calibration.kernel_stacks.get(name, {})
        donors = _donors(entries, family)
        found = borrow(family, gpu, donors) if donors else None
        if found is not None:
            entry = entries[found.donors.get("prefill", found.donor)]
            return FamilySource(
                family, name, found.donor, "borrowed", found.params, _source(entry, family)
            )
    return None


def _donors(
    entries: Mapping[str, Mapping[str, Any]], family: str
) -> dict[str, tuple[GPUSpec, Mapping[str, Any]]]:
    """Calibration key -> (catalog spec, params) of the entries that fit ``family``."""
    out = {}
    for key, entry in entries.items():
        if family not in entry or float(entry.get("hbm_bytes_per_s", 0.0)) <= 0:
            continue
        try:
            spec = get_gpu(str(entry.get("catalog_gpu", key)))
        except UnknownNameError:
            continue  # a user's entry for a GPU this catalog does not know cannot donate
        out[key] = (spec, entry[family])
    return out


def _source(entry: Mapping[str, Any], family: str) -> str:
    sources = entry.get("sources", {})
    return str(sources.get(family, entry.get("source", "")))
