"""The host-CPU catalog's published figures (cores, clocks, channels), each re-read in a public
source for issue 13; the derived peaks are checked in tests/engine/test_hybrid_cpu.py."""

from __future__ import annotations

import pytest

from servesim.specs.catalog.cpus import cpu_names, get_cpu

# (catalog name, cores, base clock GHz, memory channels x MT/s) as the sources state them
PUBLISHED = (
    ("xeon-8480+", 56, 2.0, 8 * 4800),
    ("epyc-9654", 96, 2.4, 12 * 4800),
    ("xeon-8259cl", 24, 2.5, 6 * 2933.33),
    ("epyc-7r32", 48, 2.8, 8 * 3200),
)


@pytest.mark.parametrize(("name", "cores", "ghz", "channel_mts"), PUBLISHED)
def test_published_figures_and_their_check(
    name: str, cores: int, ghz: float, channel_mts: float
) -> None:
    cpu = get_cpu(name)
    assert (cpu.num_cores, cpu.base_clock_hz) == (cores, ghz * 1e9)
    assert cpu.memory_bandwidth_bytes_per_s == pytest.approx(channel_mts * 1e6 * 8, rel=1e-4)
    assert "Checked:" in cpu.source, name


def test_every_catalog_cpu_is_covered() -> None:
    assert sorted(n for n, *_ in PUBLISHED) == cpu_names()
