"""Voxel grids: the grid specification and voxelization."""
from __future__ import annotations

from dataclasses import dataclass

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


# The two protocols of the seed papers.
POP3D_GRID = GridSpec(lower=(-51.2, -51.2, -5.0), upper=(51.2, 51.2, 3.0), shape=(100, 100, 8))
FINE_GRID = GridSpec(lower=(-51.2, -51.2, -5.0), upper=(51.2, 51.2, 3.0), shape=(512, 512, 40))
