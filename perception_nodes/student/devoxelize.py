"""Point <-> cell transfers with static shapes: scatter-mean into cells, gather back to points.

Invalid points (padding, outside the grid, non-finite) are routed to one extra "trash" cell that is
dropped, so the graph never depends on data-dependent shapes (exports to ONNX ScatterElements/Gather).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Samples:
    """What a backbone hands the dense-grid heads: positions (M, 3), features (M, F), validity (M,)."""

    xyz: torch.Tensor
    features: torch.Tensor
    valid: torch.Tensor


def scatter_mean(features: torch.Tensor, cell: torch.Tensor, valid: torch.Tensor,
                 num_cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``features`` (N, F) per cell id ``cell`` (N,) over ``valid`` points.

    Returns (num_cells, F) means (0 for empty cells) and (num_cells,) point counts. ``features`` must
    be finite (the model zeroes non-finite inputs first): invalid rows are multiplied by 0.
    """
    cell = torch.where(valid, cell, torch.full_like(cell, num_cells))
    weight = valid.to(features.dtype).unsqueeze(1)
    stacked = torch.cat([features * weight, weight], dim=1)
    index = cell.unsqueeze(1).expand(-1, stacked.shape[1])
    sums = torch.zeros(num_cells + 1, stacked.shape[1], dtype=features.dtype, device=features.device)
    sums = sums.scatter_add(0, index, stacked)[:num_cells]
    count = sums[:, -1]
    return sums[:, :-1] / count.clamp(min=1.0).unsqueeze(1), count


def gather_cells(cell_features: torch.Tensor, cell: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Voxel/pixel-to-point devoxelization by nearest cell: (N, F) features, zero for invalid points."""
    safe = torch.where(valid, cell, torch.zeros_like(cell))
    return cell_features[safe] * valid.to(cell_features.dtype).unsqueeze(1)


def grid_cells(points_xyz: torch.Tensor, lower: tuple[float, ...], voxel: tuple[float, ...],
               shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat cell id (x-major: (ix * Y + iy) * Z + iz) and inside mask of points in a dense grid."""
    lo = torch.tensor(lower, dtype=points_xyz.dtype, device=points_xyz.device)
    size = torch.tensor(voxel, dtype=points_xyz.dtype, device=points_xyz.device)
    idx = torch.floor((points_xyz - lo) / size).long()
    inside = (idx[:, 0] >= 0) & (idx[:, 0] < shape[0]) & (idx[:, 1] >= 0) & (idx[:, 1] < shape[1]) \
        & (idx[:, 2] >= 0) & (idx[:, 2] < shape[2])
    idx = idx.clamp(min=0)
    cell = (idx[:, 0] * shape[1] + idx[:, 1]) * shape[2] + idx[:, 2]
    return cell, inside
