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
from dataclasses import dataclass, field
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
    strides: tuple[int, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        size = math.prod(len(a) for a in self.axes)
        if size != len(self.values):
            raise ValueError(f"grid of {size} points holds {len(self.values)} values")
        # row-major strides, cached: ``factor`` runs on the simulator's hot path
        object.__setattr__(self, "strides", tuple(_strides(self.axes)))

    def factor(self, *coords: float) -> float:
        """exp(interpolated log ratio) at ``coords`` (raw values, not log2; each > 0)."""
        if len(coords) != len(self.axes):
            raise ValueError(f"grid has {len(self.axes)} axes, got {len(coords)} coordinates")
        # Multilinear interpolation, one axis at a time: each axis splits every corner into
        # its lower and upper neighbour (one corner when the point sits on a grid line or
        # beyond the edge, where the edge value holds).
        corners: list[tuple[int, float]] = [(0, 1.0)]
        for axis, x, stride in zip(self.axes, coords, self.strides, strict=True):
            lx = math.log2(x)
            n = len(axis)
            if n == 1 or lx <= axis[0]:
                continue
            if lx >= axis[-1]:
                offset = (n - 1) * stride
                corners = [(i + offset, w) for i, w in corners]
                continue
            lo = _bisect(axis, lx)
            up = (lx - axis[lo]) / (axis[lo + 1] - axis[lo])
            low_index = lo * stride
            if up == 0.0:
                corners = [(i + low_index, w) for i, w in corners]
                continue
            down = 1.0 - up
            corners = [
                pair
                for i, w in corners
                for pair in ((i + low_index, w * down), (i + low_index + stride, w * up))
            ]
        values = self.values
        return math.exp(sum(w * values[i] for i, w in corners))

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
