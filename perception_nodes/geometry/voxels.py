"""Voxel grids: the grid specification, voxelization and occupancy targets (POP-3D Sec. 3.2).

A point at ``p`` lies in voxel ``floor((p - lower) / voxel_size)`` (half-open cells ``[lo, hi)``); points
outside ``[lower, upper)`` or with NaN/inf coordinates belong to no voxel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class GridSpec:
    """An axis-aligned voxel grid: ``shape`` voxels spanning ``lower`` .. ``upper`` metres."""

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, 'lower', tuple(float(v) for v in self.lower))
        object.__setattr__(self, 'upper', tuple(float(v) for v in self.upper))
        object.__setattr__(self, 'shape', tuple(int(v) for v in self.shape))
        if len(self.lower) != 3 or len(self.upper) != 3 or len(self.shape) != 3:
            raise ValueError('GridSpec needs three lower, upper and shape values')
        if any(s <= 0 for s in self.shape):
            raise ValueError(f'GridSpec shape must be positive, got {self.shape}')
        if any(u <= lo for lo, u in zip(self.lower, self.upper)):
            raise ValueError(f'GridSpec upper {self.upper} must exceed lower {self.lower}')

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return tuple((u - lo) / s for lo, u, s in zip(self.lower, self.upper, self.shape))

    def voxel_indices(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer (N, 3) voxel coordinates of points and a (N,) mask of points inside the grid."""
        lower = torch.tensor(self.lower, dtype=points.dtype, device=points.device)
        size = torch.tensor(self.voxel_size, dtype=points.dtype, device=points.device)
        shape = torch.tensor(self.shape, device=points.device)
        idx = torch.floor((points - lower) / size).long()
        inside = ((idx >= 0) & (idx < shape)).all(dim=1) & torch.isfinite(points).all(dim=1)
        return idx, inside

    def inside_linear(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) mask of the points inside the grid and the linear index of those points (as voxel_indices).

        The bounds are tested on the floored float coordinates (NaN and inf fail them), and only the
        points inside are converted and combined: a third of :meth:`voxel_indices` + :meth:`linear_index`.
        """
        lower = torch.tensor(self.lower, dtype=points.dtype, device=points.device)
        size = torch.tensor(self.voxel_size, dtype=points.dtype, device=points.device)
        shape = torch.tensor(self.shape, dtype=points.dtype, device=points.device)
        cell = (points - lower).div_(size).floor_()
        ok = (cell >= 0).logical_and_(cell < shape)
        inside = ok[:, 0] & ok[:, 1] & ok[:, 2]
        return inside, self.linear_index(cell[inside].long())

    def linear_index(self, idx: torch.Tensor) -> torch.Tensor:
        """Row-major (x, y, z) linear index of (N, 3) voxel coordinates."""
        _, y, z = self.shape
        return (idx[:, 0] * y + idx[:, 1]) * z + idx[:, 2]

    def unravel(self, linear: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`linear_index`: (V,) -> (V, 3) long."""
        _, y, z = self.shape
        return torch.stack([linear // (y * z), (linear // z) % y, linear % z], dim=1)

    def voxel_centers(self, idx: torch.Tensor) -> torch.Tensor:
        """Metric (V, 3) centres of (V, 3) voxel coordinates (float32)."""
        lower = torch.tensor(self.lower, device=idx.device)
        size = torch.tensor(self.voxel_size, device=idx.device)
        return lower + (idx.float() + 0.5) * size


@dataclass
class Voxelization:
    """Occupied voxels of a point cloud."""

    coords: torch.Tensor          # (V, 3) long voxel coordinates, sorted by linear index
    point_to_voxel: torch.Tensor  # (N,) long row into coords, -1 for points outside the grid
    counts: torch.Tensor          # (V,) long points per voxel
    labels: torch.Tensor | None = None  # (V,) long majority label (ties: the smallest label)

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])


def _check_points(points: torch.Tensor) -> torch.Tensor:
    points = torch.as_tensor(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got {tuple(points.shape)}')
    return points if points.is_floating_point() else points.float()


def majority_label(groups: torch.Tensor, labels: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Most frequent label per group (vectorised; ties -> smallest label); (num_groups,) long.

    groups (K,) long in [0, num_groups), labels (K,) int. Groups without members get -1.
    """
    labels = labels.long()
    out = torch.full((num_groups,), -1, dtype=torch.long, device=labels.device)
    if labels.numel() == 0:
        return out
    if labels.device.type == 'cpu' and groups.device.type == 'cpu':
        counted = _majority_label_counts(groups.long().numpy(), labels.numpy(), num_groups)
        if counted is not None:
            return torch.from_numpy(counted)
    values, compact = torch.unique(labels, return_inverse=True)
    n_lab = int(values.numel())
    pair, pair_count = torch.unique(groups * n_lab + compact, return_counts=True)
    pair_group = pair // n_lab
    pair_label = pair % n_lab
    best = torch.zeros(num_groups, dtype=torch.long, device=labels.device)
    best = best.scatter_reduce(0, pair_group, pair_count, reduce='amax', include_self=True)
    winner = pair_count == best[pair_group]
    big = torch.full((num_groups,), n_lab, dtype=torch.long, device=labels.device)
    big = big.scatter_reduce(0, pair_group[winner], pair_label[winner], reduce='amin', include_self=True)
    has = big < n_lab
    out[has] = values[big[has]]
    return out


def _majority_label_counts(groups: np.ndarray, labels: np.ndarray, num_groups: int) -> np.ndarray | None:
    """:func:`majority_label` by counting (no sort) when labels are small non-negative ids; else None.

    Labels are ranked with a presence table, (group, label rank) pairs counted with one ``bincount``;
    the first (smallest) label with the most members wins, as in the sorting path.
    """
    low, top = int(labels.min()), int(labels.max())
    if low < 0 or top >= 1 << 20:
        return None
    present = np.zeros(top + 1, dtype=bool)
    present[labels] = True
    values = np.flatnonzero(present)
    if num_groups * len(values) > 1 << 23:
        return None
    rank = np.cumsum(present) - 1
    counts = np.bincount(groups * len(values) + rank[labels], minlength=num_groups * len(values))
    counts = counts.reshape(num_groups, len(values))
    best = np.argmax(counts, axis=1)
    return np.where(counts[np.arange(num_groups), best] > 0, values[best], -1).astype(np.int64)


def voxelize(points: torch.Tensor, grid: GridSpec, labels: torch.Tensor | None = None) -> Voxelization:
    """Voxels holding at least one point, with counts and (optionally) the majority label per voxel."""
    points = _check_points(points)
    inside, lin = grid.inside_linear(points)
    device = points.device
    p2v = torch.full((points.shape[0],), -1, dtype=torch.long, device=device)
    uniq, inverse, counts = torch.unique(lin, return_inverse=True, return_counts=True)
    p2v[inside] = inverse
    vox_labels = None
    if labels is not None:
        labels = torch.as_tensor(labels, device=device)
        if labels.shape != (points.shape[0],):
            raise ValueError(f'labels must be ({points.shape[0]},), got {tuple(labels.shape)}')
        vox_labels = majority_label(inverse, labels[inside], int(uniq.numel()))
    return Voxelization(coords=grid.unravel(uniq), point_to_voxel=p2v, counts=counts, labels=vox_labels)


def dense_occupancy(points: torch.Tensor, grid: GridSpec) -> torch.Tensor:
    """POP-3D occupancy target (Sec. 3.2): (X, Y, Z) bool, True where a voxel holds at least one point."""
    points = _check_points(points)
    idx, inside = grid.voxel_indices(points)
    occ = torch.zeros(grid.shape[0] * grid.shape[1] * grid.shape[2], dtype=torch.bool, device=points.device)
    occ[grid.linear_index(idx[inside])] = True
    return occ.view(grid.shape)


# The two protocols of the seed papers.
POP3D_GRID = GridSpec(lower=(-51.2, -51.2, -5.0), upper=(51.2, 51.2, 3.0), shape=(100, 100, 8))
FINE_GRID = GridSpec(lower=(-51.2, -51.2, -5.0), upper=(51.2, 51.2, 3.0), shape=(512, 512, 40))
