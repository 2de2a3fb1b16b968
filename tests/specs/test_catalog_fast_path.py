"""A catalog name resolves from its own file without parsing the others, to the same object
the full catalog holds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servesim.core.errors import UnknownNameError
from servesim.specs.catalog import models


@pytest.fixture()
def cold_catalog() -> Iterator[None]:
    models._entry.cache_clear()
    models._catalog.cache_clear()
    yield
    models._entry.cache_clear()
    models._catalog.cache_clear()


def test_a_name_parses_one_file(cold_catalog: None) -> None:
    spec = models.resolve_model("Llama-2-7B")  # case-insensitive, like the full lookup
    assert spec.name == "llama-2-7b"
    assert models._entry.cache_info().currsize == 1
    assert models._catalog.cache_info().currsize == 0
    assert any(m is spec for m in models.list_models())  # the very same object


def test_a_repo_id_still_uses_the_full_catalog(cold_catalog: None) -> None:
    by_repo = models.resolve_model("meta-llama/Llama-2-7b-hf")
    assert by_repo is models.resolve_model("llama-2-7b")
    assert models._catalog.cache_info().currsize == 1


def test_unknown_names_still_suggest(cold_catalog: None) -> None:
    with pytest.raises(UnknownNameError, match="did you mean llama-2-7b"):
        models.resolve_model("llama-2-7")
