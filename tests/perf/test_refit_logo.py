"""``bench/refit_family.py --logo-only``: a family's leave-one-GPU-out rows recomputed from the
stored fits replace only that family's rows, in the order a full refit writes them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest


def _refit_module() -> Any:
    path = Path(__file__).resolve().parents[2] / "bench" / "refit_family.py"
    spec = importlib.util.spec_from_file_location("refit_family_logo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _row(gpu: str, family: str, mape: float) -> dict[str, Any]:
    return {"stack": "vllm-0.24", "gpu": gpu, "family": family, "mape": mape}


def _summary(gpu: str, part: str, mape: float) -> dict[str, Any]:
    return {"stack": "vllm-0.24", "gpu": gpu, "part": part, "mape": mape}


def _document() -> dict[str, Any]:
    return {
        "kernel_stacks": {"vllm-0.24": {"h100": {"gemm": {"x": 1}}}},
        "kernel_report": {
            "transfer_rules": "old",
            "heldout": [_row("h100", "attention", 3.0)],
            "leave_one_gpu_out": [
                _row("l40s", "moe", 40.0),
                _row("l40s", "attention", 24.0),
                _row("a100", "attention", 21.0),
            ],
            "leave_one_gpu_out_summary": [
                _summary("l40s", "moe", 43.0),
                _summary("l40s", "prefill_attention", 24.0),
                _summary("l40s", "decode_attention", 22.9),
            ],
        },
    }


def test_logo_rows_of_one_family_are_replaced_the_others_kept_in_refit_order() -> None:
    refit = _refit_module()
    doc = _document()
    new = [_row("l40s", "attention", 19.0), _row("a100", "attention", 18.0)]
    summary = [
        _summary("l40s", "decode_attention", 19.5),
        _summary("l40s", "prefill_attention", 19.0),
    ]
    refit.merge_logo(doc, "attention", new, summary)
    report = doc["kernel_report"]
    # sorted by (stack, gpu, family): a100 attention, l40s attention, l40s moe
    assert [(r["gpu"], r["family"], r["mape"]) for r in report["leave_one_gpu_out"]] == [
        ("a100", "attention", 18.0),
        ("l40s", "attention", 19.0),
        ("l40s", "moe", 40.0),
    ]
    # both attention parts replaced (stable order within a family: as computed), MoE kept
    assert [(r["part"], r["mape"]) for r in report["leave_one_gpu_out_summary"]] == [
        ("decode_attention", 19.5),
        ("prefill_attention", 19.0),
        ("moe", 43.0),
    ]
    assert report["heldout"] == _document()["kernel_report"]["heldout"]  # held-out untouched
    assert report["transfer_rules"] != "old"  # the rules text of the code that computed them


def test_logo_only_writes_what_the_stored_fits_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refit = _refit_module()
    seen: list[Any] = []

    def fake_report(root: Path, stacks: Any, families: tuple[str, ...]) -> tuple[list, list]:
        seen.append((root, stacks, families))
        return [_row("l40s", "gemm", 20.0)], [_summary("l40s", "gemm", 20.0)]

    monkeypatch.setattr(refit, "transfer_report", fake_report)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(_document()))
    refit._write(path, lambda d: refit.refresh_logo(d, "gemm", tmp_path))
    out = json.loads(path.read_text())
    # the fits the rows were computed from are the stored ones, and they are not changed
    assert seen == [(tmp_path, _document()["kernel_stacks"], ("gemm",))]
    assert out["kernel_stacks"] == _document()["kernel_stacks"]
    assert _row("l40s", "gemm", 20.0) in out["kernel_report"]["leave_one_gpu_out"]
    assert len(out["kernel_report"]["leave_one_gpu_out"]) == 4
    assert _summary("l40s", "gemm", 20.0) in out["kernel_report"]["leave_one_gpu_out_summary"]
