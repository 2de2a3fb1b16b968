"""Fit the efficiency curves and collective costs to measured tables; write ``calibration.json``.

Run ``python -m servesim.perf.calibrate [--data ../shared/data] [--out path]``. It reads the
shared measurements in place, fits per GPU family on the TRAIN models only, reports the error on
the held-out models (never seen by the fit), then refits on all models for the shipped file.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from servesim.perf.calibrate_data import (
    GEMM_OPS,
    CommSample,
    ComputeSample,
    read_apex_comm,
    read_vidur_compute,
    read_vidur_network,
    require_data_dir,
)
from servesim.perf.calibrate_defaults import (
    ATTENTION_DEFAULTS,
    DEFAULT_GPU,
    HOST_OVERHEAD,
    HOST_PROFILES,
    REFERENCE_GPUS,
)
from servesim.perf.calibrate_legacy import (
    FUSED_NORM,
    fit_structured_gemm,
    fused_add_norm_curve,
    heldout_rows,
    structured_gemm_predict,
)
from servesim.perf.calibration import CALIBRATION_PATH, ElementwiseCurve, GemmCurve
from servesim.perf.kernels import gemm_time_s

log = logging.getLogger(__name__)

# Held out of every fit: the shapes the validation runs use (70B Llama) and one mid-size model.
HELDOUT_MODELS = ("Llama-2-70b-hf", "Meta-Llama-3-70B", "internlm-20b")
M_HALF_MAX = 32.0
COMM_SIZE_BUCKETS = ((0, 64e3), (64e3, 1e6), (1e6, 16e6), (16e6, math.inf))


def _gemm_arrays(samples: Sequence[ComputeSample]) -> tuple[np.ndarray, ...]:
    m = np.array([s.num_tokens for s in samples], dtype=float)
    k = np.array([s.k for s in samples], dtype=float)
    n = np.array([s.n for s in samples], dtype=float)
    t = np.array([s.time_s for s in samples], dtype=float)
    return m, k, n, t


def _gemm_predict(
    curve: GemmCurve, samples: Sequence[ComputeSample], peak: float, bw: float
) -> np.ndarray:
    m, k, n, _ = _gemm_arrays(samples)
    flops = 2.0 * m * k * n
    nbytes = 2.0 * (k * n + m * k + m * n)
    return gemm_time_s(curve, flops, nbytes, m, k, n, peak, bw)


def fit_gemm(samples: Sequence[ComputeSample], peak: float, bw: float) -> GemmCurve:
    """Least squares in log time (relative error) over the GEMM samples."""
    _, _, _, t = _gemm_arrays(samples)

    def curve_of(p: np.ndarray) -> GemmCurve:
        return GemmCurve(
            e_max=float(p[0]),
            m_half=float(math.exp(p[1])),
            kn_half=float(math.exp(p[2])),
            mem_eff=float(p[3]),
            launch_s=float(p[4]) * 1e-6,
            blend=float(p[5]),
        )

    def residual(p: np.ndarray) -> np.ndarray:
        return np.log(_gemm_predict(curve_of(p), samples, peak, bw)) - np.log(t)

    # m_half is capped at 32 tokens: left free, the fit uses a huge half-point to mimic the
    # memory floor of small GEMMs through the compute term, which then wrongly caps the gain
    # of weight-only quantisation (fewer weight bytes) at small batch.
    start = np.array([0.75, math.log(16.0), math.log(80.0), 0.85, 3.0, 4.0])
    lower = [0.05, 0.0, 0.0, 0.2, 0.0, 1.0]
    upper = [1.0, math.log(M_HALF_MAX), 12.0, 1.0, 100.0, 50.0]
    result = least_squares(residual, start, bounds=(lower, upper))
    return curve_of(result.x)


def _elementwise_predict(
    curve: ElementwiseCurve, samples: Sequence[ComputeSample], bw: float
) -> np.ndarray:
    nbytes = np.array([s.num_bytes for s in samples], dtype=float)
    return curve.launch_s + nbytes / (bw * curve.mem_eff)


def fit_elementwise(samples: Sequence[ComputeSample], bw: float) -> ElementwiseCurve:
    """Memory efficiency and launch latency of one memory-bound op class."""
    t = np.array([s.time_s for s in samples], dtype=float)

    def residual(p: np.ndarray) -> np.ndarray:
        curve = ElementwiseCurve(mem_eff=float(p[0]), launch_s=float(p[1]) * 1e-6)
        return np.log(_elementwise_predict(curve, samples, bw)) - np.log(t)

    result = least_squares(residual, [0.6, 4.0], bounds=([0.02, 0.0], [1.0, 200.0]))
    return ElementwiseCurve(mem_eff=float(result.x[0]), launch_s=float(result.x[1]) * 1e-6)


def _mape(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - actual) / actual) * 100.0)


def _split(samples: Sequence[ComputeSample]) -> tuple[list[ComputeSample], list[ComputeSample]]:
    train = [s for s in samples if s.model not in HELDOUT_MODELS]
    test = [s for s in samples if s.model in HELDOUT_MODELS]
    return train, test


def _elementwise_classes(samples: Sequence[ComputeSample]) -> dict[str, list[ComputeSample]]:
    from servesim.perf.calibrate_data import ELEMENTWISE_OPS

    classes: dict[str, list[ComputeSample]] = {}
    for s in samples:
        if s.op in ELEMENTWISE_OPS and s.time_s > 0:
            classes.setdefault(ELEMENTWISE_OPS[s.op], []).append(s)
    return classes


def fit_compute_gpu(
    samples: Sequence[ComputeSample], gpu: str
) -> tuple[dict, dict[str, float], list[dict]]:
    """Fit one GPU on train models.

    Returns the all-data fit, the held-out MAPE per op class (GEMMs: the structured model the
    stack prices them with) and the held-out rows per (op class, token regime) with the
    roofline curve's error on the same rows as ``before``.
    """
    peak, bw = REFERENCE_GPUS[gpu]
    gemm_all = [s for s in samples if s.op in GEMM_OPS and s.time_s > 0]
    train, test = _split(gemm_all)
    heldout: dict[str, float] = {}
    rows: list[dict] = []
    if test:
        before = _gemm_predict(fit_gemm(train, peak, bw), test, peak, bw)
        after = structured_gemm_predict(fit_structured_gemm(train, gpu), test, gpu)
        actual = _gemm_arrays(test)[3]
        heldout["gemm"] = _mape(after, actual)
        rows += heldout_rows(gpu, "gemm", test, after, actual, before)
        for op in GEMM_OPS:
            sel = np.array([s.op == op for s in test])
            heldout[op] = _mape(after[sel], actual[sel])
            part = [s for s in test if s.op == op]
            rows += heldout_rows(gpu, op, part, after[sel], actual[sel], before[sel])
    final = {
        "gemm": asdict(fit_gemm(gemm_all, peak, bw)),
        "gemm_fit": fit_structured_gemm(gemm_all, gpu).to_dict(),
        "elementwise": {},
    }
    for name, group in sorted(_elementwise_classes(samples).items()):
        ew_train, ew_test = _split(group)
        ew = fit_elementwise(ew_train, bw)
        if ew_test:
            actual = np.array([s.time_s for s in ew_test])
            pred = _elementwise_predict(ew, ew_test, bw)
            heldout[name] = _mape(pred, actual)
            rows += heldout_rows(gpu, name, ew_test, pred, actual, None)
        final["elementwise"][name] = asdict(fit_elementwise(group, bw))
    final["elementwise"][FUSED_NORM] = fused_add_norm_curve(final["elementwise"])
    return final, heldout, rows


def fit_comm_lines(samples: Sequence[CommSample]) -> tuple[tuple[float, float], ...]:
    """Two alpha-beta lines (small-message and bulk protocol), fitted in log time."""
    x = np.array([s.num_bytes for s in samples])
    t = np.array([s.time_s for s in samples])
    small = t[x <= np.quantile(x, 0.2)]
    big = x >= np.quantile(x, 0.8)
    bw0 = float(np.median(x[big] / t[big]))
    start = [
        math.log(float(np.min(small))),
        math.log(bw0 / 4),
        math.log(float(np.min(small)) * 2),
        math.log(bw0),
    ]

    def residual(p: np.ndarray) -> np.ndarray:
        a1, b1, a2, b2 = np.exp(p)
        pred = np.minimum(a1 + x / b1, a2 + x / b2)
        return np.log(pred) - np.log(t)

    p = np.exp(least_squares(residual, start).x)
    return ((float(p[0]), float(p[1])), (float(p[2]), float(p[3])))


def comm_groups(
    samples: Sequence[CommSample],
) -> dict[tuple[str, str, str, str, int], list[CommSample]]:
    """Samples grouped by (source, gpu, topology, collective, num_gpus)."""
    groups: dict[tuple[str, str, str, str, int], list[CommSample]] = {}
    for s in samples:
        if s.time_s > 0:
            groups.setdefault((s.source, s.gpu, s.topology, s.collective, s.num_gpus), []).append(s)
    return groups


def comm_bucket_mape(
    lines: tuple[tuple[float, float], ...], samples: Sequence[CommSample]
) -> dict[str, float]:
    """MAPE of a fitted collective per message-size bucket (and overall as ``all``)."""
    x = np.array([s.num_bytes for s in samples])
    t = np.array([s.time_s for s in samples])
    pred = np.min([a + x / b for a, b in lines], axis=0)
    out = {"all": _mape(pred, t)}
    for lo, hi in COMM_SIZE_BUCKETS:
        mask = (x >= lo) & (x < hi)
        if mask.any():
            label = f"{int(lo / 1e3)}KB-" + ("" if math.isinf(hi) else f"{int(hi / 1e3)}KB")
            out[label] = _mape(pred[mask], t[mask])
    return out


def heldout_comm_mape(samples: Sequence[CommSample]) -> dict[str, float]:
    """MAPE per size bucket on message sizes the fit never saw.

    Sizes are sorted and split alternately: the lines are fitted on every other distinct size
    and scored on the sizes in between, so the figure measures interpolation across sizes, which
    is what the simulator does with every message it prices.
    """
    sizes = sorted({s.num_bytes for s in samples})
    if len(sizes) < 8:
        return {}
    train_sizes = set(sizes[::2])
    train = [s for s in samples if s.num_bytes in train_sizes]
    test = [s for s in samples if s.num_bytes not in train_sizes]
    return comm_bucket_mape(fit_comm_lines(train), test)


def fit_collectives(data_dir: Path) -> list[dict]:
    """One entry per (gpu, topology, collective, group size); apex_plus wins over vidur."""
    samples = read_apex_comm(data_dir) + read_vidur_network(data_dir)
    chosen: dict[tuple[str, str, str, int], dict] = {}
    for (source, gpu, topo, coll, n), group in sorted(comm_groups(samples).items()):
        key = (gpu, topo, coll, n)
        if key in chosen and chosen[key]["source"].startswith("apex_plus"):
            continue
        lines = fit_comm_lines(group)
        errors = comm_bucket_mape(lines, group)
        chosen[key] = {
            "heldout_mape_by_size": heldout_comm_mape(group),
            "gpu": gpu,
            "topology": topo,
            "collective": coll,
            "num_gpus": n,
            "lines": [list(line) for line in lines],
            "source": source,
            "mape": errors["all"],
            "mape_by_size": errors,
        }
    return [chosen[k] for k in sorted(chosen)]


def _gpu_entry(data_dir: Path, gpu: str) -> dict:
    """One reference GPU's section: its GEMM and elementwise fits with their held-out MAPE
    when vidur measured it, else the documented default efficiencies (``DEFAULT_GPU``)."""
    peak, bw = REFERENCE_GPUS[gpu]
    samples = read_vidur_compute(data_dir, gpu)
    entry: dict = {
        "ref_peak_flops_per_s": peak,
        "ref_hbm_bytes_per_s": bw,
        "attention": ATTENTION_DEFAULTS.get(gpu, DEFAULT_GPU["attention"]),
    }
    if samples:
        final, heldout_mape, rows = fit_compute_gpu(samples, gpu)
        entry.update(final)
        entry["calibrated"] = True
        entry["heldout_mape"] = heldout_mape
        entry["heldout_rows"] = rows
        entry["source"] = (
            f"vidur data/profiling/compute/{gpu} (microsoft/vidur 7d47513, MIT); "
            f"held-out models {', '.join(HELDOUT_MODELS)}; 16-bit-activation GEMMs by the "
            "structured GEMM model fitted to them (calibrate_legacy)"
        )
    else:
        entry.update({k: v for k, v in DEFAULT_GPU.items() if k != "attention"})
        entry["calibrated"] = False
        entry["source"] = "no measured GEMM table: documented default efficiencies"
    return entry


def update_legacy(path: Path, gpus: dict) -> None:
    """Replace the ``gpus`` and ``default_gpu`` sections of the calibration file ``path``.

    A read-modify-write under an exclusive ``fcntl`` lock on the file, the lock
    ``bench/refit_family.py`` takes, so refits of other families can run at the same time.
    """
    import fcntl
    import json

    from servesim.perf.calibrate_stacks import write_calibration

    with open(path, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        document = json.loads(handle.read())
        document["gpus"] = gpus
        document["default_gpu"] = DEFAULT_GPU
        write_calibration(document, path)


def build_document(
    data_dir: Path,
    *,
    kernel_stacks: bool = True,
    heldout: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The whole calibration file as a JSON-ready dict.

    Args:
        data_dir: the shared data folder (holds ``profiling/``).
        kernel_stacks: also fit the aiconfigurator tables (kernel stacks and power; minutes).
        heldout: score held-out shapes and leave-one-GPU-out for the kernel stacks.
        progress: called with a line per fitted (stack, GPU, family).
    """
    document = {
        "version": 2,
        "source": "servesim.perf.calibrate over ../shared/data/profiling (vidur, apex_plus: MIT; "
        "aiconfigurator: Apache-2.0)",
        "gpus": {gpu: _gpu_entry(data_dir, gpu) for gpu in REFERENCE_GPUS},
        "default_gpu": DEFAULT_GPU,
        "collectives": fit_collectives(data_dir),
        "host": HOST_OVERHEAD,
        "host_profiles": HOST_PROFILES,
    }
    if kernel_stacks:
        from servesim.perf.calibrate_stacks import kernel_sections

        document.update(kernel_sections(data_dir, heldout=heldout, progress=progress))
    return document


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: fit and write the calibration file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None, help="shared data folder (holds profiling/)")
    parser.add_argument("--out", default=str(CALIBRATION_PATH), help="calibration JSON to write")
    parser.add_argument("--no-heldout", action="store_true", help="skip the held-out reports")
    parser.add_argument(
        "--legacy-only",
        action="store_true",
        help="refit only the legacy stack's sections (gpus, default_gpu) of --out in place",
    )
    args = parser.parse_args(argv)
    from servesim.perf.calibrate_stacks import write_calibration

    if args.legacy_only:
        data_dir = require_data_dir(args.data)
        gpus = {gpu: _gpu_entry(data_dir, gpu) for gpu in REFERENCE_GPUS}
        update_legacy(Path(args.out), gpus)
        log.info("updated gpus, default_gpu in %s", args.out)
        return 0
    document = build_document(
        require_data_dir(args.data), heldout=not args.no_heldout, progress=log.info
    )
    write_calibration(document, Path(args.out))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
