"""The GEMM fit's residual grouped by DeepGEMM's block configuration (offline report).

``python -m servesim.perf.fitting.gemm_deepgemm`` prints the shipped SGLang fp8_block fit's
residual (m > 256, without its grid and its single-wave scales) grouped by the configuration
DeepGEMM's heuristic picks (``servesim.perf.opmodels.deepgemm``): the evidence docs/cost-model.md
cites for the slow shapes of that table.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from servesim.perf.opmodels.deepgemm import block_config


def residual_by_config(
    m: np.ndarray, n: np.ndarray, log_ratio: np.ndarray, num_sms: int
) -> dict[tuple[int, int, int], tuple[int, float]]:
    """(block_m, block_n, min(waves, 3)) -> (rows, median log(measured / predicted))."""
    groups: dict[tuple[int, int, int], list[float]] = {}
    for a, b, r in zip(m, n, log_ratio, strict=True):
        c = block_config(int(a), int(b), num_sms)
        groups.setdefault((c.block_m, c.block_n, min(c.waves, 3)), []).append(float(r))
    return {key: (len(v), float(np.median(v))) for key, v in sorted(groups.items())}


def main(argv: list[str]) -> int:
    """Print the shipped SGLang fp8_block fit's residual (m > 256, no grid) by configuration."""
    from servesim.core.paths import shared_data_dir
    from servesim.perf.calibration import CALIBRATION_PATH
    from servesim.perf.fitting.gemm import load_rows, predict, with_datasheet
    from servesim.perf.fitting.tables import aic_root
    from servesim.specs.catalog import get_gpu

    data = shared_data_dir()
    if data is None:
        print("no shared data folder", file=sys.stderr)
        return 1
    stacks = json.loads(CALIBRATION_PATH.read_text())["kernel_stacks"]["sglang-0.5"]
    for key, folder, catalog in (("h100", "h100_sxm", "h100-sxm"), ("h200", "h200_sxm", "h200")):
        rows = load_rows(aic_root(data), folder, "sglang", "0.5.14")
        if rows is None:
            continue
        gpu = with_datasheet(get_gpu(catalog))
        params = {
            "fp8_block": {
                **stacks[key]["gemm"]["fp8_block"],
                "correction": None,
                "single_wave_scales": [],
            }
        }
        sel = (rows["op"] == "gemm") & (rows["dtype"] == "fp8_block") & (rows["m"] > 256)
        part = {name: col[sel] for name, col in rows.items()}
        ratio = np.log(part["latency_s"] / predict(params, gpu, part))
        print(f"{catalog}: rows, median measured / formula by (block_m, block_n, waves)")
        for (bm, bn, w), (count, med) in residual_by_config(
            part["m"], part["n"], ratio, gpu.num_sms or 132
        ).items():
            waves = "3+" if w == 3 else str(w)
            print(f"  {bm:3d} x {bn:3d}, {waves} wave(s): {count:5d} {np.exp(med):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
