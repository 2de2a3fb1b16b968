"""The worked examples of docs/policies.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from servesim.lab import evaluate

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


def _examples() -> dict[str, str]:
    found = re.findall(r"```python\n# (\w+)\.py\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return {name: code for name, code in found}


@pytest.mark.parametrize(
    ("name", "cls"), [("spf", "ShortestPromptFirst"), ("jsq_prefix", "ShortestKVWithAffinity")]
)
def test_a_worked_example_evaluates(tmp_path: Path, tiny: str, name: str, cls: str) -> None:
    path = tmp_path / f"{name}.py"
    path.write_text(_examples()[name], encoding="utf-8")
    score = evaluate(f"{path}:{cls}", tiny, seeds=[0])
    assert score.is_valid, score.line()
