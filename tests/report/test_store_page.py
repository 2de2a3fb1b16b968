"""``servesim report STORE``: the plan page drawn from a ``plan --store`` file alone.

A finished search's page is the same bytes as the one ``plan --report`` wrote; a search
stopped by Ctrl-C gets a page saying how many plans have no result; a store without the page
record (the Python API, an older servesim) still gets a page, saying what it cannot know.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

import servesim.planner.search as search_module
from servesim.planner.store import PlanStore
from servesim.report.plan_store import is_store_file
from tests.report.conftest import PLAN_RUN, run_cli

# PLAN_RUN's space: 1x a100 tp1, 1x and 2x h100 tp1, 1x h100 tp2
NUM_PLANS = 4


def _plan(store: Path, page: Path | None = None) -> int:
    argv = [*PLAN_RUN, "--store", str(store)]
    return run_cli(argv + (["--report", str(page)] if page is not None else []))


def _incomplete(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    start = text.find('<p id="incomplete">')
    return "" if start < 0 else text[start + 19 : text.index("</p>", start)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(store, page) of PLAN_RUN run to the end with --store and --report."""
    folder = tmp_path_factory.mktemp("stored")
    store, page = folder / "plans.duckdb", folder / "plan.html"
    assert _plan(store, page) == 0
    return store, page


def test_the_page_from_a_finished_store_is_the_search_page(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    store, page = finished
    assert is_store_file(store) and not is_store_file(page)
    assert run_cli(["report", str(store), "--out", str(tmp_path / "again.html")]) == 0
    assert (tmp_path / "again.html").read_bytes() == page.read_bytes()
    # the record written before the search carries the hash the search registered
    db = PlanStore(store, read_only=True)
    try:
        ((digest, _, stored),) = db.searches()
        record = db.page(digest)
    finally:
        db.close()
    assert record is not None and stored == NUM_PLANS
    assert len(record["plan_keys"]) == NUM_PLANS and record["num_plans"] == NUM_PLANS
    assert _incomplete(page) == ""


def test_default_page_lands_beside_the_store(finished: tuple[Path, Path], tmp_path: Path) -> None:
    store, page = finished
    copy = tmp_path / "s.duckdb"
    shutil.copy(store, copy)
    assert run_cli(["report", str(copy), "--search", _digest(copy)[:8]]) == 0
    assert (tmp_path / "s.html").read_bytes() == page.read_bytes()
    assert run_cli(["report", str(copy), "--search", "zzzz"]) == 2  # matches no search
    assert run_cli(["report", str(tmp_path), "--search", "ab"]) == 2  # not a store


def _digest(store: Path) -> str:
    db = PlanStore(store, read_only=True)
    try:
        return db.searches()[0][0]
    finally:
        db.close()


def test_interrupted_search_page_counts_missing_plans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during the second simulation: the page says which share has no result; the
    same command then resumes, and the page from the store is the page it writes."""
    real = search_module.evaluate_plan
    calls = {"n": 0}

    def interrupted(task):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(task)

    store = tmp_path / "plans.duckdb"
    monkeypatch.setattr(search_module, "evaluate_plan", interrupted)
    assert _plan(store) == 130
    monkeypatch.setattr(search_module, "evaluate_plan", real)
    stored = PlanStore(store, read_only=True)
    try:
        num_stored = len(stored.results())
    finally:
        stored.close()
    assert 1 <= num_stored < NUM_PLANS  # the first simulation (and any plan it pruned)
    assert run_cli(["report", str(store), "--out", str(tmp_path / "partial.html")]) == 0
    note = _incomplete(tmp_path / "partial.html")
    missing = NUM_PLANS - num_stored
    assert note.startswith(f"Incomplete search: {missing} of {NUM_PLANS} plans have no result")
    assert f"cover the {num_stored} plans stored" in note
    # resumed to the end: the store's page is the search's page again
    assert _plan(store, tmp_path / "plan.html") == 0
    assert run_cli(["report", str(store), "--out", str(tmp_path / "full.html")]) == 0
    assert (tmp_path / "full.html").read_bytes() == (tmp_path / "plan.html").read_bytes()


def test_a_store_without_page_record_says_what_it_cannot_know(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    store, page = finished
    copy = tmp_path / "api.duckdb"
    shutil.copy(store, copy)
    con = duckdb.connect(str(copy))
    con.execute("DROP TABLE pages")  # as the Python API or an older servesim left it
    con.close()
    assert run_cli(["report", str(copy)]) == 0
    text = (tmp_path / "api.html").read_text(encoding="utf-8")
    assert _incomplete(tmp_path / "api.html").startswith(
        "The store does not say how many plans this search has (no page record)"
    )
    assert "<th>GPUs available</th><td>not recorded in the store</td>" in text
    # the ranking is the default objective's, so the winner is the search's
    winner = page.read_text(encoding="utf-8").split("<h2>Winner</h2>")[1].split("</table>")[0]
    assert winner in text
