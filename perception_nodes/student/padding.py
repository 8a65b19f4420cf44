"""Fixed-size inputs for static-shape graphs: drop non-finite points, subsample, pad with a mask."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PaddedPoints:
    """A scan prepared for a graph with ``max_points`` rows.

    points: (max_points, F) float32, zeros after ``num_used`` rows; mask: (max_points,) float32 1/0.
    kept: (num_used,) indices into the original scan of the rows used, in order.
    finite: (num_input,) bool, False for points dropped because a coordinate was NaN/inf.
    """

    points: np.ndarray
    mask: np.ndarray
    kept: np.ndarray
    finite: np.ndarray
    num_input: int
    num_used: int
    num_nonfinite: int
    subsampled: bool


def subsample_indices(count: int, limit: int) -> np.ndarray:
    """Deterministic, evenly spaced ``limit`` of ``count`` indices (scan order keeps it spatially even)."""
    if count <= limit:
        return np.arange(count, dtype=np.int64)
    return (np.arange(limit, dtype=np.int64) * count) // limit


def pad_points(points: np.ndarray, max_points: int, columns: int = 4) -> PaddedPoints:
    """Validate, clean, subsample and pad a scan (N, >=columns) for a fixed-size graph."""
    points = np.asarray(points)
    if points.size == 0 and points.ndim <= 2:
        points = np.zeros((0, columns), dtype=np.float32)       # an empty scan, whatever its shape
    if points.ndim != 2 or points.shape[1] < columns:
        raise ValueError(f'points must be an (N, >={columns}) array (x, y, z, intensity...), '
                         f'got shape {points.shape}')
    if max_points <= 0:
        raise ValueError(f'max_points must be positive, got {max_points}')
    if not np.issubdtype(points.dtype, np.number):
        raise ValueError(f'points must be numeric, got dtype {points.dtype}')
    n = len(points)
    pts = points[:, :columns].astype(np.float32, copy=False)
    fin = np.isfinite(pts)
    finite = fin[:, 0].copy()
    for c in range(1, columns):                  # (not .all(axis=1): slow over a short axis)
        finite &= fin[:, c]
    good = np.flatnonzero(finite)
    chosen = subsample_indices(len(good), max_points)
    kept = good[chosen]
    out = np.empty((max_points, columns), dtype=np.float32)
    if len(kept) == n:                           # every point, in order: one contiguous copy
        out[:n] = pts
    else:
        out[:len(kept)] = pts[kept]
    out[len(kept):] = 0.0
    mask = np.zeros(max_points, dtype=np.float32)
    mask[:len(kept)] = 1.0
    return PaddedPoints(points=out, mask=mask, kept=kept, finite=finite, num_input=n,
                        num_used=len(kept), num_nonfinite=int(n - len(good)),
                        subsampled=len(good) > max_points)
