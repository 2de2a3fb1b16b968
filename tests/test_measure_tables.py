"""bench/measure_tables.py without a GPU or torch: the plan, the table writer, the timing math."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import yaml

from servesim.perf.fitting.tables import aic_root, find_tables, read_columns, select

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench() -> dict[str, ModuleType]:
    """The script's modules, imported as the script imports them (bench/ on the path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        names = (
            "measure_tables",
            "measure_tables_io",
            "measure_tables_plan",
            "measure_tables_timing",
        )
        return {name: importlib.import_module(name) for name in names}


def _gemm_row(io: ModuleType, m: int, latency_ms: float) -> dict:
    stamp = io.Stamp("torch", "2.5.1+cu124", "NVIDIA H100 80GB HBM3")
    columns = {"gemm_dtype": "bfloat16", "m": m, "n": 4096, "k": 4096, "latency": latency_ms}
    return stamp.row("gemm", "torch.nn.functional.linear", **columns)


# ---- --dry-run ---------------------------------------------------------------------------


def test_dry_run_lists_every_table_without_torch_or_pyarrow(bench, monkeypatch, capsys, tmp_path):
    # None in sys.modules makes ``import torch`` raise: the plan must never need it
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code = bench["measure_tables"].main(
        ["--out", str(tmp_path), "--quick", "--dry-run", "--gpu-name", "my_gpu"]
    )
    out = capsys.readouterr().out
    assert code == 0
    for family, table in (
        ("gemm", "gemm_perf"),
        ("attention", "context_attention_perf"),
        ("attention", "generation_attention_perf"),
        ("comm", "nccl_perf"),
    ):
        assert f"my_gpu/{family}/torch/" in out and f"/{table}.parquet" in out
    assert "gemm: 224 shapes" in out  # 2 dtypes x 7 m x 4 n x 4 k
    assert not list(tmp_path.iterdir()), "a dry run writes nothing"


def test_measuring_without_torch_says_so(bench, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert bench["measure_tables"].main(["--out", str(tmp_path), "--quick"]) == 2
    assert "needs PyTorch" in capsys.readouterr().err


def test_dry_run_lists_shapes_on_request(bench, capsys, tmp_path):
    args = ["--out", str(tmp_path), "--quick", "--dry-run", "--families", "attention"]
    bench["measure_tables"].main([*args, "--list-shapes"])
    out = capsys.readouterr().out
    plan = bench["measure_tables_plan"]
    num_cases = len(plan.context_cases(plan.QUICK)) + len(plan.generation_cases(plan.QUICK))
    assert out.count("AttentionCase(") == num_cases
    assert "gemm" not in out


def test_unknown_family_is_refused(bench, tmp_path):
    with pytest.raises(SystemExit):
        bench["measure_tables"].parse_args(["--out", str(tmp_path), "--families", "gemm,moe"])


def test_gpu_folder_names(bench):
    folder = bench["measure_tables"].gpu_folder
    assert folder("NVIDIA H100 80GB HBM3") == "h100_sxm"
    assert folder("NVIDIA H200") == "h200_sxm"
    assert folder("NVIDIA A100-SXM4-80GB") == "a100_sxm"
    assert folder("NVIDIA L40S") == "l40s"
    assert folder("NVIDIA GeForce RTX 4090") == "geforce_rtx_4090"


# ---- the plan ------------------------------------------------------------------------------


def test_plan_caps_follow_the_reference_collector(bench):
    plan = bench["measure_tables_plan"]
    context = plan.context_cases(plan.FULL)
    for case in context:
        budget = 131072 // (2 if case.num_kv_heads == case.num_heads else 1)
        assert case.batch_size * case.seq_len <= budget
    assert any(c.batch_size * c.seq_len == 131072 for c in context)  # GQA reaches the cap
    for case in plan.generation_cases(plan.FULL):
        kv_bytes = 2 * case.batch_size * case.seq_len * case.num_kv_heads * case.head_dim * 2
        assert kv_bytes <= 8 << 30
    heads = plan.FULL.attn_heads
    assert (32, 8, 128) in heads and (64, 64, 128) in heads and (12, 12, 64) in heads
    assert all(h % kv == 0 for h, kv, _ in heads)


def test_comm_groups_are_powers_of_two_and_the_world(bench):
    counts = bench["measure_tables_plan"].comm_gpu_counts
    assert counts(1) == ()
    assert counts(2) == (2,)
    assert counts(8) == (2, 4, 8)
    assert counts(6) == (2, 4, 6)


# ---- the table writer ----------------------------------------------------------------------


def test_written_table_reads_back_through_the_fitting_reader(bench, tmp_path):
    io = bench["measure_tables_io"]
    rows = [_gemm_row(io, 1, 0.0123), _gemm_row(io, 4096, 0.51)]
    target = io.TableTarget("my_gpu", "gemm", "torch", "2.5.1+cu124", "gemm_perf")
    path = io.write_table(rows, target, tmp_path)
    refs = select(find_tables(tmp_path), gpu="my_gpu", family="gemm", framework="torch")
    assert [(r.version, r.table, r.path) for r in refs] == [("2.5.1+cu124", "gemm_perf", path)]
    columns = read_columns(refs[0])
    assert list(columns) == [name for name, _ in io.SCHEMAS["gemm_perf"]]
    assert columns["m"].dtype == np.int64 and columns["latency"].dtype == np.float64
    assert columns["m"].tolist() == [1, 4096]
    assert columns["latency"].tolist() == [0.0123, 0.51]  # milliseconds, as written
    assert columns["kernel_source"].tolist() == ["torch.nn.functional.linear"] * 2


def test_writer_refuses_a_row_off_the_schema(bench, tmp_path):
    io = bench["measure_tables_io"]
    target = io.TableTarget("g", "gemm", "torch", "1", "gemm_perf")
    row = _gemm_row(io, 1, 0.01)
    with pytest.raises(ValueError, match="missing \\['k'\\]"):
        io.write_table([{key: v for key, v in row.items() if key != "k"}], target, tmp_path)
    with pytest.raises(ValueError, match="unexpected \\['power'\\]"):
        io.write_table([{**row, "power": 300.0}], target, tmp_path)


def test_collection_meta_has_the_reference_fields(bench, tmp_path):
    io = bench["measure_tables_io"]
    path = io.write_collection_meta(
        tmp_path, "torch", "2.10.0", {"gemm_perf": "partial"}, {"device": "NVIDIA H200"}
    )
    meta = yaml.safe_load(path.read_text())
    assert meta == {
        "schema_version": 1,
        "provenance": "collected",
        "runtime": {"framework": "torch", "version": "2.10.0"},
        "tables": {"gemm_perf": {"status": "partial"}},
    }
    assert "# device: NVIDIA H200" in path.read_text()


def test_schemas_match_the_reference_tables(bench, shared_data):
    import pyarrow.parquet as pq

    refs = find_tables(aic_root(shared_data))
    sources = {"gemm_perf": "vllm", "context_attention_perf": "vllm"}
    sources |= {"generation_attention_perf": "vllm", "nccl_perf": "nccl"}
    for table, framework in sources.items():
        ref = select(refs, gpu="h100_sxm", framework=framework, table=table)[0]
        reference = pq.read_schema(ref.path)
        expected = [(f.name, str(f.type)) for f in reference]
        # the writer's type names are pyarrow's own (string, int64, double)
        assert list(bench["measure_tables_io"].SCHEMAS[table]) == expected
        meta = yaml.safe_load((ref.path.parent / "collection_meta.yaml").read_text())
        assert set(meta) == {"schema_version", "provenance", "runtime", "tables"}


# ---- the timing math -----------------------------------------------------------------------


class FakeTimer:
    """A device where one op call costs ``call_ms``, a graph replay saves ``launch_ms``."""

    def __init__(self, call_ms: float, launch_ms: float, can_capture: bool) -> None:
        self.call_ms = call_ms
        self.launch_ms = launch_ms
        self.can_capture = can_capture
        self.calls: list[str] = []

    def warmup(self, run, num_iters: int) -> None:
        self.calls.append(f"warmup {num_iters}")
        for _ in range(num_iters):
            run()

    def capture(self, run):
        self.calls.append("capture")
        return (lambda: self.calls.append("replay")) if self.can_capture else None

    def elapsed_ms(self, step, num_iters: int) -> float:
        self.calls.append(f"time {num_iters}")
        cost = self.call_ms if self.can_capture else self.call_ms + self.launch_ms
        return num_iters * cost


def test_time_op_divides_by_runs_and_ops_per_step(bench):
    timing = bench["measure_tables_timing"]
    timer = FakeTimer(call_ms=0.6, launch_ms=0.05, can_capture=True)
    result = timing.time_op(lambda: None, timer, ops_per_step=6, target_ms=None, min_runs=6)
    # a step of 6 calls costs 0.6 ms: 0.1 ms per call
    assert result.latency_ms == pytest.approx(0.1)
    assert result.used_cuda_graph and result.num_runs == 6
    # warm up eagerly, capture, warm up the replay, then time: aiconfigurator's order
    assert timer.calls == [
        "warmup 3",
        "capture",
        "warmup 3",
        "replay",
        "replay",
        "replay",
        "time 6",
    ]


def test_time_op_falls_back_to_eager_and_says_so(bench):
    timing = bench["measure_tables_timing"]
    timer = FakeTimer(call_ms=0.010, launch_ms=0.005, can_capture=False)
    result = timing.time_op(lambda: None, timer, target_ms=None)
    assert not result.used_cuda_graph
    assert result.latency_ms == pytest.approx(0.015)  # eager: the launch cost is in it


def test_short_kernels_get_more_replays(bench):
    timing = bench["measure_tables_timing"]
    timer = FakeTimer(call_ms=0.004, launch_ms=0.0, can_capture=True)
    result = timing.time_op(lambda: None, timer, target_ms=10.0, max_runs=1000)
    # 4 us per step: 10 ms / 4 us + 1 = 2501 steps, capped at 1000
    assert result.num_runs == 1000 and result.latency_ms == pytest.approx(0.004)
    runs_for = timing.num_runs_for
    assert runs_for(1.0, target_ms=10.0, min_runs=6, max_runs=1000) == 11
    assert runs_for(50.0, target_ms=10.0, min_runs=6, max_runs=1000) == 6
    assert runs_for(0.0, target_ms=10.0, min_runs=6, max_runs=1000) == 1000


# ---- the rows the torch side builds (torch replaced by a stub; the kernels by fakes) ---------


@pytest.fixture
def torch_side(bench, monkeypatch) -> ModuleType:
    """measure_tables_torch over a stub torch: row building and skipping, not the kernels."""
    torch = ModuleType("torch")
    for name in ("bfloat16", "float8_e4m3fn", "float32", "float64", "int32"):
        setattr(torch, name, name)
    torch.cuda = SimpleNamespace(synchronize=lambda *args: None, empty_cache=lambda: None)
    torch.nn = ModuleType("torch.nn")
    torch.nn.functional = ModuleType("torch.nn.functional")
    for name, module in (("torch", torch), ("torch.nn", torch.nn)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "torch.nn.functional", torch.nn.functional)
    # loaded under another name, so the stubbed module never shadows a real one
    spec = importlib.util.spec_from_file_location(
        "fake_torch_side", BENCH / "measure_tables_torch.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_attention_rows_use_the_reference_isl_and_step(bench, torch_side, monkeypatch):
    plan, io = bench["measure_tables_plan"], bench["measure_tables_io"]
    fake_variant = [("flash_attn_fa3", lambda: lambda: None)]
    monkeypatch.setattr(torch_side, "_context_variants", lambda case, device: fake_variant)
    monkeypatch.setattr(torch_side, "_generation_variants", lambda case, device: fake_variant)
    cases = [
        plan.AttentionCase("context", 2, 1024, 32, 8, 128),
        plan.AttentionCase("generation", 8, 4096, 32, 8, 128),
    ]
    stamp = io.Stamp("torch", "2.5.1", "NVIDIA H200")
    timer = FakeTimer(call_ms=0.02, launch_ms=0.0, can_capture=True)
    (context_table, context), (decode_table, decode) = torch_side.measure_attention(
        cases, stamp, timer, None
    )
    assert (context_table, context["isl"], context["step"]) == ("context_attention_perf", 1024, 0)
    # aiconfigurator's decode rows: isl 1, step = KV tokens before the new one
    assert (decode_table, decode["isl"], decode["step"]) == ("generation_attention_perf", 1, 4095)
    assert decode["op_name"] == "generation_attention" and decode["latency"] == pytest.approx(0.02)
    for row in (context, decode):
        io._check_row(context_table, row, 0)  # exactly the schema's columns


def test_gemm_rows_per_call_eager_label_and_skips(bench, torch_side, monkeypatch):
    plan, io = bench["measure_tables_plan"], bench["measure_tables_io"]
    stamp = io.Stamp("torch", "2.5.1", "NVIDIA L40S")

    def fake_run(case, device):
        if case.m == 8192:
            raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return "torch.nn.functional.linear", lambda: None

    monkeypatch.setattr(torch_side, "_gemm_run", fake_run)
    cases = [plan.GemmCase("bfloat16", m, 4096, 4096) for m in (16, 8192)]
    timer = FakeTimer(call_ms=0.6, launch_ms=0.06, can_capture=False)
    (_, row), (_, skipped) = torch_side.measure_gemm(cases, stamp, timer, None)
    # one step is 6 calls on distinct weights (aiconfigurator's L2 guard): per call = step / 6
    assert row["latency"] == pytest.approx(0.66 / torch_side.GEMM_COPIES)
    assert row["kernel_source"] == "torch.nn.functional.linear_eager"
    assert skipped is None  # an out-of-memory shape is skipped, not fatal
