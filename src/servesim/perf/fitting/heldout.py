"""Error statistics, shape-wise hold-out splits and the log-grid correction fit.

Held-out error is always measured on whole shapes the fit never saw (every row of one hidden
size, one head configuration, one message size), never on random rows of a seen shape: a user's
new model is a new shape, not a new row of an old one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from servesim.perf.opmodels.grid import LogGrid


@dataclass(frozen=True, slots=True)
class ErrorStats:
    """How predictions compare with measurements on a set of rows.

    Attributes:
        num_points: rows scored.
        mape: mean absolute percentage error.
        median_signed: median of (pred - actual) / actual in percent (negative: too fast).
    """

    num_points: int
    mape: float
    median_signed: float

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form (rounded)."""
        return {
            "n": self.num_points,
            "mape": round(self.mape, 2),
            "median_signed": round(self.median_signed, 2),
        }


def error_stats(pred: np.ndarray, actual: np.ndarray) -> ErrorStats:
    """MAPE and median signed error of ``pred`` against ``actual`` (both > 0)."""
    pred = np.asarray(pred, dtype=float)
    actual = np.asarray(actual, dtype=float)
    if pred.size == 0:
        return ErrorStats(0, float("nan"), float("nan"))
    rel = (pred - actual) / actual
    return ErrorStats(
        int(pred.size), float(np.mean(np.abs(rel)) * 100.0), float(np.median(rel) * 100.0)
    )


def holdout_folds(keys: Sequence[object], num_folds: int = 4) -> list[np.ndarray]:
    """Boolean test masks, one per fold, each holding out whole ``keys`` (shapes).

    Distinct keys are sorted and dealt round-robin into folds, so each fold's held-out shapes
    lie between shapes the fit saw (interpolation, which is what a new model's shape needs) and
    every row is scored exactly once across the folds.
    """
    unique = sorted(set(keys), key=repr)
    fold_of = {k: i % num_folds for i, k in enumerate(unique)}
    assignment = np.array([fold_of[k] for k in keys])
    return [assignment == f for f in range(min(num_folds, len(unique)))]


def _strides(shape: Sequence[int]) -> np.ndarray:
    """Row-major strides of a grid of ``shape`` (the flat cell index is sum(index * stride))."""
    strides = np.ones(len(shape), dtype=int)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    return strides


def _cell_positions(
    logc: np.ndarray, axes_t: tuple[tuple[float, ...], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Per point and axis, the lower grid index and the weight of the upper neighbour."""
    n = logc.shape[0]
    lows = np.zeros((n, len(axes_t)), dtype=int)
    ws = np.zeros((n, len(axes_t)))
    for d, axis in enumerate(axes_t):
        a = np.asarray(axis)
        if len(a) == 1:
            continue
        x = np.clip(logc[:, d], a[0], a[-1])
        lo = np.clip(np.searchsorted(a, x, side="right") - 1, 0, len(a) - 2)
        lows[:, d] = lo
        ws[:, d] = (x - a[lo]) / (a[lo + 1] - a[lo])
    return lows, ws


def _data_matrix(
    lows: np.ndarray, ws: np.ndarray, shape: Sequence[int], strides: np.ndarray
) -> Any:
    """(N, cells) sparse interpolation matrix: each point's weight on its 2^D corner cells."""
    from scipy.sparse import coo_matrix

    n = lows.shape[0]
    rows, cols, vals = [], [], []
    for mask in range(1 << len(shape)):
        weight = np.ones(n)
        index = np.zeros(n, dtype=int)
        skip = False
        for d in range(len(shape)):
            upper = (mask >> d) & 1
            if shape[d] == 1:
                if upper:
                    skip = True
                    break
                continue
            weight = weight * (ws[:, d] if upper else 1.0 - ws[:, d])
            index = index + (lows[:, d] + upper) * strides[d]
        if skip:
            continue
        keep = weight > 0
        rows.append(np.nonzero(keep)[0])
        cols.append(index[keep])
        vals.append(weight[keep])
    num_cells = int(np.prod(shape))
    return coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, num_cells)
    )


def _smoothing_matrix(shape: Sequence[int], strides: np.ndarray, scale: float) -> Any:
    """Second differences along each axis, plus a weak pull of every cell to zero."""
    from scipy.sparse import coo_matrix

    num_cells = int(np.prod(shape))
    reg_rows, reg_cols, reg_vals = [], [], []
    r = 0
    for cell in range(num_cells):
        idx = np.unravel_index(cell, shape)
        for d in range(len(shape)):
            if 0 < idx[d] < shape[d] - 1:
                for off, v in ((-1, 1.0), (0, -2.0), (1, 1.0)):
                    reg_rows.append(r)
                    reg_cols.append(cell + off * strides[d])
                    reg_vals.append(v * scale)
                r += 1
        reg_rows.append(r)
        reg_cols.append(cell)
        reg_vals.append(0.1 * scale)
        r += 1
    return coo_matrix((reg_vals, (reg_rows, reg_cols)), shape=(r, num_cells))


def fit_log_grid(
    coords: np.ndarray,
    log_ratio: np.ndarray,
    axes: Sequence[Sequence[float]],
    ridge: float = 0.05,
) -> LogGrid:
    """Least-squares multilinear grid through ``log_ratio`` at ``coords`` (raw values).

    Args:
        coords: (N, D) raw coordinates (> 0); log2 is taken here.
        log_ratio: (N,) log(measured / formula).
        axes: per axis, grid points in log2 units (ascending).
        ridge: smoothing weight: pulls each grid value towards its neighbours (second
            differences) and towards 0 where no data constrains it.
    """
    from scipy.sparse import vstack
    from scipy.sparse.linalg import lsqr

    axes_t = tuple(tuple(float(x) for x in a) for a in axes)
    shape = [len(a) for a in axes_t]
    num_cells = int(np.prod(shape))
    strides = _strides(shape)
    logc = np.log2(np.asarray(coords, dtype=float))
    n = logc.shape[0]
    lows, ws = _cell_positions(logc, axes_t)
    a_data = _data_matrix(lows, ws, shape, strides)
    a_reg = _smoothing_matrix(shape, strides, ridge * np.sqrt(max(n, 1) / num_cells))
    matrix = vstack([a_data, a_reg]).tocsr()
    rhs = np.concatenate([np.asarray(log_ratio, dtype=float), np.zeros(a_reg.shape[0])])
    solution = lsqr(matrix, rhs, atol=1e-10, btol=1e-10, iter_lim=20000)[0]
    return LogGrid(axes=axes_t, values=tuple(float(v) for v in solution))


def grid_factors(grid: LogGrid, coords: np.ndarray) -> np.ndarray:
    """Vectorised ``grid.factor`` over (N, D) raw coordinates (for fitting and scoring)."""
    return np.array([grid.factor(*row) for row in np.asarray(coords, dtype=float)])


# ---- the family protocol and the generic reports ----------------------------------------------
# Each operator family's fitting module (``servesim.perf.fitting.<family>``) provides:
#   load_rows(root, gpu_folder, framework, version) -> Rows | None
#   fit(rows, gpu) -> dict                      (JSON-ready parameters for one GPU and stack)
#   predict(params, gpu, rows) -> np.ndarray    (seconds, through the runtime opmodel)
# ``Rows`` is a dict of equal-length numpy arrays holding at least ``latency_s`` (measured
# seconds), ``shape_key`` (the hold-out unit: one model shape), ``op``, ``dtype`` and ``regime``
# (labels of the report rows), plus whatever columns the family's formula needs.
Rows = dict[str, np.ndarray]


def take(rows: Rows, mask: np.ndarray) -> Rows:
    """The subset of ``rows`` where ``mask`` holds."""
    return {k: v[mask] for k, v in rows.items()}


def concat(parts: Sequence[Rows]) -> Rows:
    """Rows of several tables stacked (same columns)."""
    keys = parts[0].keys()
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def group_report(pred: np.ndarray, rows: Rows, **labels: str) -> list[dict]:
    """Error statistics per (op, dtype, regime), plus ``labels`` on every row."""
    out = []
    groups = sorted(set(zip(rows["op"], rows["dtype"], rows["regime"], strict=True)), key=repr)
    for op, dtype, regime in groups:
        mask = (rows["op"] == op) & (rows["dtype"] == dtype) & (rows["regime"] == regime)
        stats = error_stats(pred[mask], rows["latency_s"][mask])
        out.append({**labels, "op": op, "dtype": dtype, "regime": regime, **stats.to_dict()})
    return out


def crossval_predictions(module: object, rows: Rows, gpu: object, num_folds: int = 4) -> np.ndarray:
    """Each row predicted by a fit that never saw its shape (``num_folds`` shape-wise folds)."""
    pred = np.full(rows["latency_s"].shape, np.nan)
    for test in holdout_folds(list(rows["shape_key"]), num_folds):
        params = module.fit(take(rows, ~test), gpu)  # type: ignore[attr-defined]
        pred[test] = module.predict(params, gpu, take(rows, test))  # type: ignore[attr-defined]
    return pred
