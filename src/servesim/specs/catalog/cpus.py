"""The built-in host-CPU catalog (``cpus.yaml``): a host CPU as a compute resource for
CPU-GPU hybrid serving (its memory bandwidth, FLOP rates and cores; ``servesim.perf.cpu``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from servesim.core.errors import UnknownNameError
from servesim.specs.catalog import derived

CPUS_FILE = Path(__file__).resolve().parent / "cpus.yaml"


@dataclass(frozen=True, slots=True)
class CPUSpec:
    """One host CPU socket.

    Attributes:
        name: catalog key.
        num_cores: physical cores.
        base_clock_hz: all-core clock the FLOP peaks assume.
        memory_bandwidth_bytes_per_s: theoretical DRAM bandwidth (channels x rate x 8 B).
        peak_flops_per_s: theoretical vector/matrix peak by dtype name (``fp32``, ``bf16``).
        source: where each figure comes from, with its derivation.
    """

    name: str
    num_cores: int
    base_clock_hz: float
    memory_bandwidth_bytes_per_s: float
    peak_flops_per_s: dict[str, float]
    source: str

    def flops_per_s(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype`` (fp16 runs at the bf16 rate; unknown dtypes at fp32)."""
        key = "bf16" if dtype in ("bf16", "fp16") else dtype
        return self.peak_flops_per_s.get(key, self.peak_flops_per_s["fp32"])

    def __hash__(self) -> int:  # the dict field is not hashable; the name identifies it
        return hash(self.name)


@lru_cache(maxsize=1)
def _load() -> tuple[dict[str, CPUSpec], dict[str, str]]:
    data = derived.load(CPUS_FILE)["cpus"]  # the YAML's data (catalog.json when current)
    specs: dict[str, CPUSpec] = {}
    aliases: dict[str, str] = {}
    for name, entry in data.items():
        peaks = {k: float(v) * 1e12 for k, v in entry["peak_tflops"].items()}
        if "fp32" not in peaks or not all(v > 0 for v in peaks.values()):
            raise ValueError(f"cpus.yaml: {name} needs positive peak_tflops with fp32")
        bandwidth = float(entry["memory_bandwidth_gb_per_s"]) * 1e9
        if bandwidth <= 0 or not entry.get("source"):
            raise ValueError(f"cpus.yaml: {name} needs a positive bandwidth and a source")
        specs[name] = CPUSpec(
            name=name,
            num_cores=int(entry["num_cores"]),
            base_clock_hz=float(entry["base_clock_ghz"]) * 1e9,
            memory_bandwidth_bytes_per_s=bandwidth,
            peak_flops_per_s=peaks,
            source=str(entry["source"]),
        )
        for alias in (name, *entry.get("aliases", ())):
            aliases[str(alias).lower()] = name
    return specs, aliases


def get_cpu(name: str) -> CPUSpec:
    """The catalog CPU called ``name`` (or one of its aliases, case-insensitive)."""
    specs, aliases = _load()
    key = aliases.get(name.lower())
    if key is None:
        raise UnknownNameError("cpu", name, specs)
    return specs[key]


def cpu_names() -> list[str]:
    """Catalog CPU names, sorted."""
    return sorted(_load()[0])
