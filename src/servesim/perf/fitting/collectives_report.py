"""Report of the collectives fit (split from ``fitting.collectives``): shape-wise held-out error
per (GPU, stack, op, dtype, regime) and the H100 fits carried to the other GPUs.

Run: ``python -m servesim.perf.fitting.collectives`` (its ``main`` calls this module's).
"""

from __future__ import annotations

import json
from pathlib import Path

from servesim.perf.fitting import collectives as fitting
from servesim.perf.fitting.heldout import crossval_predictions, error_stats, group_report

STACKS = (
    ("h100_sxm", "vllm", "0.24.0"),
    ("h100_sxm", "sglang", "0.5.14"),
    ("h100_sxm", "nccl", "2.29.2"),
    ("h200_sxm", "vllm", "0.24.0"),
    ("h200_sxm", "sglang", "0.5.14"),
    ("h200_sxm", "nccl", "2.29.2"),
    ("a100_sxm", "vllm", "0.14.0"),
    ("a100_sxm", "nccl", "2.27.3"),
    ("l40s", "vllm", "0.22.0"),
    ("l40s", "nccl", "2.27.3"),
)
# leave-one-GPU-out: the H100 fit of each kernel family applied to the other GPUs' data sheets
TRANSFER = (
    (
        ("h100_sxm", "vllm", "0.24.0"),
        (
            ("h200_sxm", "vllm", "0.24.0"),
            ("a100_sxm", "vllm", "0.14.0"),
            ("l40s", "vllm", "0.22.0"),
        ),
    ),
    (("h100_sxm", "sglang", "0.5.14"), (("h200_sxm", "sglang", "0.5.14"),)),
    (
        ("h100_sxm", "nccl", "2.29.2"),
        (
            ("h200_sxm", "nccl", "2.29.2"),
            ("a100_sxm", "nccl", "2.27.3"),
            ("l40s", "nccl", "2.27.3"),
        ),
    ),
)


def crossval_report(root: Path) -> list[dict]:
    """Shape-wise (message size) 4-fold held-out error per (GPU, stack, op, dtype, regime)."""
    from servesim.specs.catalog.gpus import get_gpu

    out = []
    for folder, framework, version in STACKS:
        rows = fitting.load_rows(root, folder, framework, version)
        if rows is None:
            continue
        gpu = get_gpu(fitting.GPU_FOLDERS[folder])
        pred = crossval_predictions(fitting, rows, gpu)
        stack = f"{framework} {version}"
        out += group_report(pred, rows, gpu=folder, stack=stack)
        total = error_stats(pred, rows["latency_s"]).to_dict()
        size = len(json.dumps(fitting.fit(rows, gpu), sort_keys=True))
        out.append(
            {
                "gpu": folder,
                "stack": stack,
                "op": "ALL",
                "dtype": "",
                "regime": "",
                **total,
                "json_bytes": size,
            }
        )
    return out


def transfer_report(root: Path) -> list[dict]:
    """Fit on the H100 stack, predict the other GPUs through their link bandwidth and latency."""
    from servesim.specs.catalog.gpus import get_gpu

    out = []
    for (src_folder, src_fw, src_ver), targets in TRANSFER:
        src = fitting.load_rows(root, src_folder, src_fw, src_ver)
        if src is None:
            continue
        params = fitting.fit(src, get_gpu(fitting.GPU_FOLDERS[src_folder]))
        for folder, framework, version in targets:
            rows = fitting.load_rows(root, folder, framework, version)
            if rows is None:
                continue
            pred = fitting.predict(params, get_gpu(fitting.GPU_FOLDERS[folder]), rows)
            for op in sorted(set(rows["op"])):
                mask = rows["op"] == op
                stats = error_stats(pred[mask], rows["latency_s"][mask]).to_dict()
                out.append(
                    {
                        "source": f"{src_folder} {src_fw} {src_ver}",
                        "target": folder,
                        "stack": f"{framework} {version}",
                        "op": op,
                        **stats,
                    }
                )
            total = error_stats(pred, rows["latency_s"]).to_dict()
            out.append(
                {
                    "source": f"{src_folder} {src_fw} {src_ver}",
                    "target": folder,
                    "stack": f"{framework} {version}",
                    "op": "ALL",
                    **total,
                }
            )
    return out


def _print_table(entries: list[dict], columns: list[str]) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for e in entries:
        print("| " + " | ".join(str(e.get(c, "")) for c in columns) + " |")


def main() -> None:
    """Print the held-out and leave-one-GPU-out tables (markdown)."""
    from servesim.core.paths import shared_data_dir
    from servesim.perf.fitting.tables import aic_root

    data_dir = shared_data_dir()
    if data_dir is None:
        raise SystemExit("shared data not found (set $SERVESIM_SHARED_DATA)")
    root = aic_root(data_dir)
    print("## Held-out (4-fold, whole message sizes) error\n")
    _print_table(
        crossval_report(root),
        ["gpu", "stack", "op", "dtype", "regime", "n", "mape", "median_signed", "json_bytes"],
    )
    print("\n## Leave-one-GPU-out (fit on H100, link-bandwidth/latency transfer)\n")
    _print_table(
        transfer_report(root), ["source", "target", "stack", "op", "n", "mape", "median_signed"]
    )
