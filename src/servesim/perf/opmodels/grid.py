"""A measured correction on a coarse log2 grid: multilinear interpolation of log time ratios.

A mechanistic formula (roofline with overlap, wave quantisation, fixed costs) gets the shape
of an operator right; what is left, kernel selection and tile effects a formula cannot know,
is stored as log(measured / formula) on a few grid points per axis, fitted offline to the
measured tables. Between points the correction is interpolated; outside the measured range the
edge value holds (the formula alone extrapolates, the correction does not grow).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LogGrid:
    """log-ratio corrections on the grid ``axes`` (log2 coordinates, ascending per axis).

    Attributes:
        axes: per axis, the grid points in log2 units.
        values: log(measured / formula) at every grid point, row-major (last axis fastest).
    """

    axes: tuple[tuple[float, ...], ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        size = math.prod(len(a) for a in self.axes)
        if size != len(self.values):
            raise ValueError(f"grid of {size} points holds {len(self.values)} values")

    def factor(self, *coords: float) -> float:
        """exp(interpolated log ratio) at ``coords`` (raw values, not log2; each > 0)."""
        if len(coords) != len(self.axes):
            raise ValueError(f"grid has {len(self.axes)} axes, got {len(coords)} coordinates")
        corners: list[tuple[int, float]] = []  # (lower index, weight of upper) per axis
        for axis, x in zip(self.axes, coords, strict=True):
            lx = math.log2(x)
            n = len(axis)
            if n == 1 or lx <= axis[0]:
                corners.append((0, 0.0))
                continue
            if lx >= axis[-1]:
                corners.append((n - 2, 1.0))
                continue
            lo = _bisect(axis, lx)
            corners.append((lo, (lx - axis[lo]) / (axis[lo + 1] - axis[lo])))
        total = 0.0
        strides = _strides(self.axes)
        num_axes = len(self.axes)
        for mask in range(1 << num_axes):
            weight = 1.0
            index = 0
            for d in range(num_axes):
                lo, w = corners[d]
                upper = (mask >> d) & 1
                if len(self.axes[d]) == 1:
                    if upper:
                        weight = 0.0
                        break
                    continue
                weight *= w if upper else 1.0 - w
                index += (lo + upper) * strides[d]
            if weight:
                total += weight * self.values[index]
        return math.exp(total)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (values rounded to 4 decimals of log ratio: 0.01% in time)."""
        return {
            "axes": [list(a) for a in self.axes],
            "values": [round(v, 4) for v in self.values],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogGrid:
        """Inverse of ``to_dict``."""
        return cls(
            axes=tuple(tuple(float(x) for x in a) for a in data["axes"]),
            values=tuple(float(v) for v in data["values"]),
        )


def _bisect(axis: Sequence[float], x: float) -> int:
    """Index i with axis[i] <= x < axis[i+1] (axis ascending, axis[0] < x < axis[-1])."""
    lo, hi = 0, len(axis) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if axis[mid] <= x:
            lo = mid
        else:
            hi = mid
    return lo


def _strides(axes: Sequence[Sequence[float]]) -> list[int]:
    strides = [1] * len(axes)
    for d in range(len(axes) - 2, -1, -1):
        strides[d] = strides[d + 1] * len(axes[d + 1])
    return strides


def optional_grid(data: Mapping[str, Any] | None) -> LogGrid | None:
    """A grid from its dict, or None when the calibration has none."""
    return LogGrid.from_dict(data) if data else None
