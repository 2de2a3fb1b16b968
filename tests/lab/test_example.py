"""examples/policy_search.py: its parametric scheduler and its candidates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from servesim.lab import compare

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy_search.py"


def _example() -> object:
    spec = importlib.util.spec_from_file_location("policy_search_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _knobs(weight: float) -> dict[str, object]:
    path = f"{EXAMPLE}:KnobScheduler"
    options = {"prompt_weight_s_per_ktok": weight}
    return {"scheduler": {"kind": "custom", "path": path, "options": options}}


def test_a_zero_weight_knob_scheduler_is_fcfs(busy: str, pol: str) -> None:
    same = compare(pol + "Fcfs", _knobs(0.0), busy, "p99_ttft", seeds=[0])
    assert same.verdict.startswith("no difference: identical figures")
    shortest_first = compare(pol + "Fcfs", _knobs(1000.0), busy, "p99_ttft", seeds=[0])
    assert shortest_first.effects[0][2] != 0.0  # reordering the queue changes the tail


def test_candidates_are_reproducible_policy_mappings() -> None:
    module = _example()
    first = [module.candidate(np.random.default_rng(0), i) for i in range(3)]  # type: ignore[attr-defined]
    again = [module.candidate(np.random.default_rng(0), i) for i in range(3)]  # type: ignore[attr-defined]
    assert first == again
    assert first[0]["scheduler"]["path"] == f"{EXAMPLE}:KnobScheduler"


def test_the_admission_example_runs_every_candidate(tiny: str, capsys: object) -> None:
    path = EXAMPLE.with_name("admission_shedding.py")
    spec = importlib.util.spec_from_file_location("admission_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tiny)  # type: ignore[attr-defined]
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    for candidate in module.CANDIDATES:  # type: ignore[attr-defined]
        assert f"{candidate['name']:30} chat-small" in out
    assert "best: " in out
