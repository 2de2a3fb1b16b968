"""A catalog name resolves from its own file without parsing the others, to the same object
the full catalog holds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from servesim.core.errors import UnknownNameError
from servesim.specs.catalog import models


def test_a_name_parses_one_file() -> None:
    # In a fresh process (this one's catalog caches are shared with other tests).
    code = (
        "from servesim.specs.catalog import models\n"
        "spec = models.resolve_model('Llama-2-7B')\n"  # case-insensitive, like the full lookup
        "print(spec.name, models._entry.cache_info().currsize,"
        " models._catalog.cache_info().currsize)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["llama-2-7b", "1", "0"]


def test_a_name_needs_no_full_catalog_and_gives_its_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed = {m.name: m for m in models.list_models()}

    def no_catalog() -> None:
        raise AssertionError("the full catalog was parsed")

    monkeypatch.setattr(models, "_catalog", no_catalog)
    assert models.resolve_model("llama-2-7b") is listed["llama-2-7b"]
    assert models.resolve_model(" Qwen3-32B ") is listed["qwen3-32b"]


def test_repo_ids_and_unknown_names_still_use_the_full_catalog() -> None:
    assert models.resolve_model("meta-llama/Llama-2-7b-hf") is models.resolve_model("llama-2-7b")
    assert models.resolve_model("llama2-7b") is models.resolve_model("llama-2-7b")  # an alias
    with pytest.raises(UnknownNameError, match="did you mean llama-2-7b"):
        models.resolve_model("llama-2-7")
