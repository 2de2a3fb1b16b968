"""The built-in GPU catalog (``gpus.yaml``): lookup by name or alias, with did-you-mean."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from servesim.core.errors import UnknownNameError
from servesim.specs.catalog import derived
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec, LinkSpec

GPUS_FILE = Path(__file__).resolve().parent / "gpus.yaml"

#: YAML key -> GPUSpec field, for the numbers that must each carry a source.
_SOURCED = {
    "memory_gib": "memory_bytes",
    "hbm_bandwidth_gb_per_s": "hbm_bandwidth_bytes_per_s",
    "tdp_w": "tdp_w",
    "idle_w": "idle_w",
    "price_per_hour_usd": "price_per_hour_usd",
    "architecture": "architecture",
    "l2_cache_mib": "l2_cache_bytes",
    "num_sms": "num_sms",
}

#: Kernel generations the cost model knows; a GPU borrows the kernel efficiencies of its own.
ARCHITECTURES = ("turing", "ampere", "ada", "hopper", "blackwell", "cdna3", "cdna4")


def _link(links: dict[str, Any], name: str) -> tuple[LinkSpec, str]:
    entry = links[name]
    spec = LinkSpec(
        name=name,
        bandwidth_bytes_per_s=float(entry["bandwidth_gb_per_s"]) * 1e9,
        latency_s=float(entry["latency_us"]) / 1e6,
    )
    return spec, str(entry["source"])


def _chip_facts(name: str, entry: dict[str, Any]) -> tuple[str, int, int]:
    """(architecture, l2_cache_bytes, num_sms), validated: the cost model divides by them."""
    arch = entry.get("architecture")
    if arch not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        raise ValueError(f"gpus.yaml: {name} has architecture {arch!r}; expected one of {known}")
    l2_mib, num_sms = entry.get("l2_cache_mib"), entry.get("num_sms")
    # bool is an int subclass: reject it explicitly so `num_sms: yes` is not read as 1.
    if isinstance(l2_mib, bool) or not isinstance(l2_mib, int | float) or l2_mib <= 0:
        raise ValueError(f"gpus.yaml: {name} needs a positive l2_cache_mib, got {l2_mib!r}")
    l2_bytes = l2_mib * 2**20
    if l2_bytes != int(l2_bytes):
        raise ValueError(f"gpus.yaml: {name} l2_cache_mib {l2_mib!r} is not whole bytes")
    if isinstance(num_sms, bool) or not isinstance(num_sms, int) or num_sms <= 0:
        raise ValueError(f"gpus.yaml: {name} needs a positive integer num_sms, got {num_sms!r}")
    return str(arch), int(l2_bytes), num_sms


def _build(name: str, entry: dict[str, Any], links: dict[str, Any]) -> GPUSpec:
    raw_sources = entry["sources"]
    missing = [k for k in (*_SOURCED, "peak_tflops") if not raw_sources.get(k)]
    if missing:
        raise ValueError(f"gpus.yaml: {name} has no source for {', '.join(missing)}")
    sources = {field: str(raw_sources[key]) for key, field in _SOURCED.items()}
    architecture, l2_cache_bytes, num_sms = _chip_facts(name, entry)
    peak = {DType.parse(d): float(v) * 1e12 for d, v in entry["peak_tflops"].items()}
    for dtype in peak:
        sources[f"peak_flops_per_s.{dtype.value}"] = str(raw_sources["peak_tflops"])
    intra, sources["intra_node_link"] = _link(links, entry["intra_node_link"])
    host, sources["host_link"] = _link(links, entry["host_link"])
    pair = None
    if entry.get("pair_link"):
        pair, sources["pair_link"] = _link(links, entry["pair_link"])
    return GPUSpec(
        name=name,
        vendor=str(entry["vendor"]),
        memory_bytes=int(entry["memory_gib"]) * 2**30,
        hbm_bandwidth_bytes_per_s=float(entry["hbm_bandwidth_gb_per_s"]) * 1e9,
        intra_node_link=intra,
        host_link=host,
        tdp_w=float(entry["tdp_w"]),
        idle_w=float(entry["idle_w"]),
        price_per_hour_usd=float(entry["price_per_hour_usd"]),
        peak_flops_per_s=peak,
        sources=sources,
        form_factor=str(entry["form_factor"]),
        pair_link=pair,
        architecture=architecture,
        l2_cache_bytes=l2_cache_bytes,
        num_sms=num_sms,
    )


@lru_cache(maxsize=1)
def _catalog() -> tuple[dict[str, GPUSpec], dict[str, str], dict[str, tuple[LinkSpec, str]]]:
    """(name -> spec, alias -> name, link name -> (link, source)), loaded once."""
    data = derived.load(GPUS_FILE)  # the YAML's data (catalog.json when current)
    links = {name: _link(data["links"], name) for name in data["links"]}
    specs: dict[str, GPUSpec] = {}
    aliases: dict[str, str] = {}
    for name, entry in data["gpus"].items():
        specs[name] = _build(name, entry, data["links"])
        for alias in entry.get("aliases", []):
            key = str(alias).lower()
            if key in aliases or key in data["gpus"]:
                raise ValueError(f"gpus.yaml: alias {alias!r} of {name} is already taken")
            aliases[key] = name
    return specs, aliases, links


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def get_gpu(name: str | GPUSpec) -> GPUSpec:
    """The GPU named ``name`` or one of its aliases (``h100``, ``H100-SXM-80GB``, ``a100``).

    Case, ``_`` and spaces are ignored; a ``GPUSpec`` is returned unchanged.

    Raises:
        UnknownNameError: no such GPU (the message suggests close names).
    """
    if isinstance(name, GPUSpec):
        return name
    specs, aliases, _ = _catalog()
    key = _key(name)
    key = aliases.get(key, key)
    if key not in specs:
        raise UnknownNameError("gpu", name, specs)
    return specs[key]


def list_gpus() -> list[GPUSpec]:
    """All built-in GPUs, sorted by name."""
    specs = _catalog()[0]
    return [specs[name] for name in sorted(specs)]


def gpu_names() -> list[str]:
    """Names of the built-in GPUs, sorted."""
    return sorted(_catalog()[0])


def get_link(name: str) -> tuple[LinkSpec, str]:
    """A named link from ``gpus.yaml`` (``nvlink4``, ``pcie5``, ...) and its source."""
    links = _catalog()[2]
    if name not in links:
        raise UnknownNameError("link", name, links)
    return links[name]
