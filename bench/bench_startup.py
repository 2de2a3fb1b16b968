"""Whole-process and in-process cost of short commands: what a user (or a search loop that
starts a process per evaluation) pays before and around the simulation itself.

Figures are CPU seconds (user + system) of each child process, median of ``--repeat`` runs,
in two columns: as this environment runs Python (``PYTHONDONTWRITEBYTECODE=1`` here: every
module compiled from source at each start) and with bytecode cached (what an installed
package runs: ``pip install .``, the README's quick start, compiles every module at install,
even with ``PYTHONDONTWRITEBYTECODE`` set; here a throwaway ``PYTHONPYCACHEPREFIX`` filled by
one warm-up run). The first column minus the second is compiling servesim's ~25,000 lines.

- ``servesim --help`` (start-up alone; issue target <= 0.5 CPU-s);
- ``servesim gpus --json`` (one light command);
- the Vidur reference scenario as a whole process and in-process: Vidur's README example,
  Llama-3-8B on one A100 (servesim's llama-3.1-8b: the same layers), 512 synthetic requests
  with Splitwise conversation lengths (servesim's ``azure-conv`` preset: the Azure 2023
  conversation trace Splitwise published) at Poisson 6.45 req/s, Sarathi scheduler with
  512-token chunks and a 512-sequence cap. Issue targets: <= 0.6 s whole process, <= 0.1 s
  in-process;
- 10,000 default requests near saturation as a whole process: ``servesim simulate --rate 3
  --num-requests 10000`` (Llama-3.1-8B on one H100, vLLM 0.6's scheduler and host costs,
  the ``sharegpt-vidur`` preset; issue target <= 1.5 s). ``bench/bench_engine.py`` times the
  same traffic in-process with a bare roofline plan (no host profile), so its figure is lower.

    python bench/bench_startup.py [--repeat 5]
    python bench/bench_startup.py --breakdown   # where the Vidur scenario's start-up goes

``--breakdown`` runs the scenario once in a child and prints each package's own import CPU
time (module bodies, children excluded; with ``PYTHONDONTWRITEBYTECODE`` this includes
compiling them), what is left for parsing, simulating and printing, and how much of it all
creating dataclasses and pydantic model classes took (a pydantic model's class statement
builds its validator; the first one also imports most of pydantic).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

VIDUR_FLAGS = [
    "--model", "llama-3.1-8b", "--gpu", "a100-80gb",
    "--workload", "azure-conv", "--rate", "6.45", "--num-requests", "512",
    "--scheduler", "sarathi", "--chunk-size", "512", "--max-num-seqs", "512",
    "--seed", "0",
]  # fmt: skip
SATURATED_FLAGS = ["--rate", "3", "--num-requests", "10000", "--seed", "0"]


def _child_cpu_s(argv: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) one child process spends running ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _cached_bytecode_env(folder: str) -> dict[str, str]:
    """The environment with bytecode written to (and read from) ``folder``."""
    env = os.environ.copy()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = folder
    return env


def _in_process_s(repeat: int) -> list[float]:
    """CPU seconds of the Vidur scenario through ``servesim.api.simulate`` in this process,
    after one warm-up run (imports and memos paid once)."""
    from servesim.api import simulate
    from servesim.config import SimConfig

    cfg = SimConfig.from_dict(
        {
            "model": "llama-3.1-8b",
            "hardware": {"gpu": "a100-80gb"},
            "scheduler": {"kind": "sarathi", "chunk_size": 512, "max_num_seqs": 512},
            "workload": {"preset": "azure-conv", "rate_per_s": 6.45, "num_requests": 512},
            "seed": 0,
        }
    )
    simulate(cfg)
    out = []
    for _ in range(repeat):
        start = time.process_time()
        simulate(cfg)
        out.append(time.process_time() - start)
    return out


# Run in a child by --breakdown: times every module's exec (children excluded) through a
# meta-path finder that wraps the loaders, then runs ``servesim simulate`` as ``main`` would.
_BREAKDOWN_CHILD = """
import collections, importlib.abc, io, contextlib, sys, time
own = collections.defaultdict(float)
stack = []
class Timed(importlib.abc.Loader):
    def __init__(self, inner, name):
        self.inner, self.name = inner, name
    def __getattr__(self, attr):
        return getattr(self.inner, attr)
    def create_module(self, spec):
        return self.inner.create_module(spec)
    def exec_module(self, module):
        start = time.process_time()
        stack.append(0.0)
        try:
            self.inner.exec_module(module)
        finally:
            spent = time.process_time() - start
            own[self.name] += spent - stack.pop()
            if stack:
                stack[-1] += spent
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = Timed(spec.loader, name)
                return spec
        return None
sys.meta_path.insert(0, Finder())
start = time.process_time()
import dataclasses
import pydantic._internal._model_construction as pydantic_models
classes = collections.Counter()
def timed(kind, func):
    def run(*args, **kwargs):
        begin = time.process_time()
        try:
            return func(*args, **kwargs)
        finally:
            classes[kind + " CPU"] += time.process_time() - begin
            classes[kind] += 1
    return run
dataclasses._process_class = timed("dataclasses", dataclasses._process_class)
meta = pydantic_models.ModelMetaclass
meta.__new__ = timed("pydantic models", meta.__new__)
import servesim.cli
try:
    with contextlib.redirect_stdout(io.StringIO()):
        servesim.cli.main(sys.argv[1:])
except SystemExit:
    pass
total = time.process_time() - start
by_package = collections.defaultdict(float)
for name, spent in own.items():
    parts = name.split(".")
    by_package[".".join(parts[:2]) if parts[0] == "servesim" else parts[0]] += spent
imports = sum(own.values())
print(f"{'in-process total':28s} {total:6.3f} CPU-s  ({len(own)} modules imported)")
print(f"{'imports':28s} {imports:6.3f}")
for name, spent in sorted(by_package.items(), key=lambda kv: -kv[1])[:18]:
    print(f"  {name:26s} {spent:6.3f}")
print(f"{'parse, simulate, print':28s} {total - imports:6.3f}")
print("creating classes (in the figures above)")
for kind in ("dataclasses", "pydantic models"):
    print(f"  {kind:26s} {classes[kind + ' CPU']:6.3f}  ({classes[kind]} classes)")
"""


def _breakdown() -> None:
    """Print where the Vidur scenario's CPU time goes, by imported package (one child run)."""
    argv = [sys.executable, "-c", _BREAKDOWN_CHILD, "simulate", *VIDUR_FLAGS]
    subprocess.run(argv, check=True)


def main() -> None:
    """Print the median CPU seconds of each case."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true", help="import CPU by package")
    args = parser.parse_args()
    if args.breakdown:
        _breakdown()
        return
    cli = [sys.executable, "-m", "servesim.cli"]
    cases = {
        "servesim --help": [*cli, "--help"],
        "servesim gpus --json": [*cli, "gpus", "--json"],
        "vidur scenario (whole process)": [*cli, "simulate", *VIDUR_FLAGS],
        "10k requests, 3 req/s (whole proc.)": [*cli, "simulate", *SATURATED_FLAGS],
    }
    print(f"{'':36s} {'as run here':>17s}   {'bytecode cached':>15s}")
    with tempfile.TemporaryDirectory() as pycache:
        cached = _cached_bytecode_env(pycache)
        for name, argv in cases.items():
            plain = [_child_cpu_s(argv, os.environ.copy()) for _ in range(args.repeat)]
            _child_cpu_s(argv, cached)  # writes the bytecode
            warm = [_child_cpu_s(argv, cached) for _ in range(args.repeat)]
            print(
                f"{name:36s} {statistics.median(plain):6.2f} (min {min(plain):.2f})   "
                f"{statistics.median(warm):6.2f} (min {min(warm):.2f})  CPU-s"
            )
    runs = _in_process_s(args.repeat)
    print(f"{'vidur scenario (in-process)':36s} {statistics.median(runs):6.2f} CPU-s  "
          f"(min {min(runs):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
