"""The compiled engine (mypyc build, build_backend/servesim_build.py) and the pure-Python
one give identical results, bit for bit: every per-request and per-iteration column, the token
gaps and the counters of the skip-identity scenarios (every scheduler kind, plain-Python
subclasses of compiled classes among them), each run in a fresh process, once with
``SERVESIM_PURE=1``. Also the guards (servesim/_pure.py) and when the backend compiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import servesim.engine.vengine

COMPILED = not servesim.engine.vengine.__file__.endswith(".py")
ROOT = Path(__file__).resolve().parents[2]

DIGESTS = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
import servesim.engine.vengine as ve
from tests.engine import test_skip_identity as tsi

def digest(records):
    h = hashlib.sha256()
    for table in (records.requests.view(), records.iterations.view()):
        for key in sorted(table):
            h.update(key.encode() + table[key].tobytes())
    for array in records.token_gaps.arrays():
        h.update(array.tobytes())
    h.update(json.dumps(dict(records.counters), sort_keys=True).encode())
    return h.hexdigest()

out = {f"{n}/{s}": digest(tsi._run(n, s)) for n in sorted(tsi.SCENARIOS) for s in (True, False)}
print(json.dumps({"compiled": ve.__file__.endswith(".so"), "digests": out}))
"""


def _digests(pure: bool) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "SERVESIM_PURE"}
    if pure:
        env["SERVESIM_PURE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", DIGESTS, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(not COMPILED, reason="engine not compiled here (pure-Python install)")
def test_compiled_and_pure_runs_are_identical() -> None:
    compiled, pure = _digests(pure=False), _digests(pure=True)
    assert (compiled["compiled"], pure["compiled"]) == (True, False)
    assert compiled["digests"] == pure["digests"]


# ---- the guards and the build backend (these run in every install) -------------------------


def _touch(path: Path, mtime: float) -> None:
    path.write_text("")
    os.utime(path, (mtime, mtime))


def test_a_compiled_module_older_than_its_source_is_stale(tmp_path: Path) -> None:
    from servesim import _pure

    package = tmp_path / "servesim"
    (package / "engine").mkdir(parents=True)
    so = "cpython-311-x86_64-linux-gnu.so"
    _touch(package / "engine" / "vengine.py", 2000.0)
    _touch(package / "engine" / f"vengine.{so}", 1000.0)  # built before the edit
    _touch(package / "engine" / "state.py", 1000.0)
    _touch(package / "engine" / f"state.{so}", 2000.0)  # built after
    assert _pure.stale_modules(package) == ["servesim/engine/vengine.py"]


def test_the_source_only_finder_picks_the_py_beside_a_compiled_module(tmp_path: Path) -> None:
    from servesim import _pure

    (tmp_path / "vengine.py").write_text("")
    (tmp_path / "vengine.cpython-311-x86_64-linux-gnu.so").write_text("")
    finder = _pure.SourceOnlyFinder()
    spec = finder.find_spec("servesim.engine.vengine", [str(tmp_path)])
    assert spec is not None and spec.origin == str(tmp_path / "vengine.py")
    assert finder.find_spec("numpy.core", [str(tmp_path)]) is None  # not ours: untouched


def test_mypyc_attr_leaves_the_class_as_it_is() -> None:
    from servesim._mypyc import mypyc_attr

    class Plugin:
        pass

    assert mypyc_attr(allow_interpreted_subclasses=True)(Plugin) is Plugin


def _load_backend() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "servesim_build", ROOT / "build_backend" / "servesim_build.py"
    )
    assert spec is not None and spec.loader is not None
    backend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backend)
    return backend


def test_a_failed_mypyc_build_falls_back_unless_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _load_backend()

    class Failing:
        def build_wheel(self, *args: object) -> str:
            raise SystemExit(1)  # as mypy exits on a type error

    monkeypatch.setattr(backend, "_compiled_backend", Failing)
    monkeypatch.setattr(backend._setuptools, "build_wheel", lambda *a: "pure.whl")
    monkeypatch.setenv("SERVESIM_COMPILE", "1")
    monkeypatch.delenv("SERVESIM_COMPILE_STRICT", raising=False)
    assert backend.build_wheel("dist") == "pure.whl"
    monkeypatch.setenv("SERVESIM_COMPILE_STRICT", "1")  # .ci/run: a broken compile fails CI
    with pytest.raises(SystemExit):
        backend.build_wheel("dist")


def test_the_backend_asks_for_mypy_only_when_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _load_backend()
    # setuptools' own list, without running its egg_info in the checkout
    monkeypatch.setattr(backend._setuptools, "get_requires_for_build_wheel", lambda cs: ["x"])
    monkeypatch.setenv("SERVESIM_COMPILE", "0")
    assert backend.get_requires_for_build_wheel() == ["x"]
    monkeypatch.setenv("SERVESIM_COMPILE", "1")
    assert backend.get_requires_for_build_wheel() == ["x", "mypy==2.4.1"]
    # unset (or auto): compiled where a C compiler and Python's headers are found
    monkeypatch.delenv("SERVESIM_COMPILE", raising=False)
    for found, requires in ((False, ["x"]), (True, ["x", "mypy==2.4.1"])):
        monkeypatch.setattr(backend, "can_compile", lambda found=found: found)
        assert backend.get_requires_for_build_wheel() == requires
    monkeypatch.setenv("SERVESIM_COMPILE", "yes")
    with pytest.raises(SystemExit, match="SERVESIM_COMPILE='yes': must be 0, 1 or auto"):
        backend.get_requires_for_build_wheel()
