"""`servesim calibrate --tables DIR`: a user's own tables become a calibration that
`--calibration FILE` then prices with (tables written here from a subset of the shared data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servesim.core.paths import shared_data_dir

DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(
    DATA is None, reason="needs ../shared/data (aiconfigurator tables) to build user tables"
)


def _subset(src: Path, dst: Path, keep: dict[str, set]) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    mask = None
    for column, values in keep.items():
        cond = pc.is_in(table.column(column), value_set=__import__("pyarrow").array(sorted(values)))
        mask = cond if mask is None else pc.and_(mask, cond)
    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.filter(mask) if mask is not None else table, dst)


def _run(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "servesim.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_user_tables_calibrate_and_price(tmp_path: Path) -> None:
    aic = DATA / "profiling" / "aiconfigurator" / "h100_sxm"
    tables = tmp_path / "tables" / "h100_sxm"
    heads = {"num_heads": {8, 16, 32, 64}, "num_key_value_heads": {1, 2, 4, 8}}
    attn = aic / "attention" / "vllm" / "0.24.0"
    for name in ("context_attention_perf", "generation_attention_perf"):
        _subset(
            attn / f"{name}.parquet",
            tables / "attention" / "torch" / "2.9" / f"{name}.parquet",
            {**heads, "kv_cache_dtype": {"bfloat16"}, "window_size": {0}},
        )
    _subset(
        aic / "comm" / "nccl" / "2.29.2" / "nccl_perf.parquet",
        tables / "comm" / "torch" / "2.9" / "nccl_perf.parquet",
        {"op_name": {"all_reduce"}, "nccl_dtype": {"half"}},
    )
    out = tmp_path / "mine.json"
    proc = _run("calibrate", "--tables", str(tmp_path / "tables"), "--gpu", "h100-sxm",
                "--no-heldout", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    document = json.loads(out.read_text())
    entry = document["kernel_stacks"]["vllm-0.24"]["h100-sxm"]
    assert {"attention", "collectives"} <= set(entry)
    assert "torch 2.9" in entry["sources"]["attention"]
    query = ["--op", "decode-attention", "--seqs", "16", "--context", "4096", "--num-heads", "8"]
    proc = _run("perf", *query, "--num-kv-heads", "1", "--calibration", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert "measured" in result["source"] and result["calibration_file"] == str(out.resolve())
    # 16 x 4096 tokens x 2 x 128 x 2 B = 33.5 MB of KV on a 3.35 TB/s GPU: >= 10 us
    assert 10e-6 < result["time_s"] < 200e-6


def test_user_tables_errors(tmp_path: Path) -> None:
    proc = _run("calibrate", "--tables", str(tmp_path), "--out", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and "holds no" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("calibrate", "--tables", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "is not a folder" in proc.stderr
