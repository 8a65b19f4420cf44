"""The pipeline's grid outputs: the 2D navigation grid and 3D semantic voxels, from geometry or the student.

- geometry: :func:`geometric_nav_grid` casts the LiDAR rays (``geometry.occupancy``); :func:`semantic_voxels`
  labels the occupied voxels of a grid with the majority known label of their points;
- the student's occupancy head (POP-3D Eq. 2-3): :func:`student_voxels` keeps the voxels it predicts
  occupied (p(occupied) > 0.5), labelled by the voxel language head when the model exports it (classified
  against the CLIP text embeddings) else by the majority label of their points; :func:`student_nav_grid`
  marks a column occupied when an in-band voxel is, free otherwise.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from perception_nodes.classify import classify
from perception_nodes.geometry.occupancy import NavGridSpec, navigation_grid_fast
from perception_nodes.geometry.voxels import GridSpec, _check_points, majority_label, voxelize
from perception_nodes.outputs import UNKNOWN_LABEL, OccupancyGrid2D, SemanticVoxels


def nav_spec(grids: Any) -> NavGridSpec:
    """Return the NavGridSpec of a ``GridsConfig``."""
    return NavGridSpec(resolution=grids.nav_resolution, size_xy=tuple(grids.nav_size), z_min=grids.nav_z_min,
                       z_max=grids.nav_z_max)


def voxel_spec(grids: Any) -> GridSpec:
    """Return the semantic-voxel GridSpec of a ``GridsConfig``."""
    return GridSpec(tuple(grids.voxel_lower), tuple(grids.voxel_upper), tuple(grids.voxel_shape))


def geometric_nav_grid(points: torch.Tensor, labels: torch.Tensor | None, spec: NavGridSpec,
                       obstacle: Sequence[int] | None = None) -> OccupancyGrid2D:
    """Ray-cast navigation grid from every LiDAR return (``geometry.occupancy.navigation_grid_fast``).

    Occupied cells are exactly those holding an in-band (obstacle-class, when ``obstacle`` is given) return;
    free cells match the exact all-rays cast (test/geometry checks both against the slow reference).
    """
    return navigation_grid_fast(points, torch.zeros(3), spec, labels if obstacle is not None else None,
                                obstacle)


def semantic_voxels(points: torch.Tensor, labels: torch.Tensor, grid: GridSpec,
                    voxelized: Any = None) -> SemanticVoxels:
    """Occupied voxels of ``grid`` labelled with the majority known label of their points (else unknown).

    ``voxelized``: ``voxelize(points, grid)`` when the caller has it already (it needs no label).
    """
    vox = voxelized if voxelized is not None else voxelize(points, grid)
    labels = labels.to(vox.point_to_voxel.device).long()
    known = (labels != UNKNOWN_LABEL) & (vox.point_to_voxel >= 0)
    vox_labels = majority_label(vox.point_to_voxel[known], labels[known], vox.num_voxels)
    vox_labels = torch.where(vox_labels < 0, torch.full_like(vox_labels, UNKNOWN_LABEL), vox_labels)
    return SemanticVoxels(centers=grid.voxel_centers(vox.coords).float().cpu().numpy(),
                          labels=vox_labels.cpu().numpy(), voxel_size=np.asarray(grid.voxel_size))


def occupied_probability(occupancy_logits: np.ndarray) -> np.ndarray:
    """(X, Y, Z) p(occupied) from (X, Y, Z, 2) (free, occupied) logits."""
    logits = torch.as_tensor(np.asarray(occupancy_logits, np.float32))
    return torch.softmax(logits, dim=-1)[..., 1].numpy()


def student_voxels(p_occupied: np.ndarray, grid: GridSpec, points: torch.Tensor, labels: torch.Tensor,
                   voxel_features: np.ndarray | None = None, clip_text: torch.Tensor | None = None,
                   logit_scale: float = 100.0, unknown_threshold: float = 0.0) -> SemanticVoxels:
    """Return the voxels the occupancy head predicts occupied, labelled (module docstring).

    Majority labels are computed from the points of occupied voxels only (the same majority per voxel
    as over all points; the other voxels are not output).
    """
    occupied_mask = torch.as_tensor(p_occupied) > 0.5
    occupied = torch.nonzero(occupied_mask)
    if not len(occupied):
        vox_labels = torch.zeros(0, dtype=torch.int64)
    elif voxel_features is not None and clip_text is not None:
        feats = torch.as_tensor(np.asarray(voxel_features, np.float32))[tuple(occupied.T)]
        vox_labels = classify(feats, clip_text, logit_scale, unknown_threshold).labels
    else:
        inside, lin = grid.inside_linear(_check_points(points).cpu())
        point_labels = labels.cpu().long()[inside]
        keep = occupied_mask.reshape(-1)[lin] & (point_labels != UNKNOWN_LABEL)
        row = torch.full((int(np.prod(grid.shape)),), -1, dtype=torch.int64)
        row[grid.linear_index(occupied)] = torch.arange(len(occupied))      # occupied voxel -> output row
        majority = majority_label(row[lin[keep]], point_labels[keep], len(occupied))
        vox_labels = torch.where(majority < 0, UNKNOWN_LABEL, majority)
    return SemanticVoxels(centers=grid.voxel_centers(occupied).float().numpy(),
                          labels=vox_labels.numpy(), voxel_size=np.asarray(grid.voxel_size))


def student_nav_grid(p_occupied: np.ndarray, grid: GridSpec, z_min: float, z_max: float,
                     frame_id: str = '') -> OccupancyGrid2D:
    """Columns with an occupied voxel overlapping [z_min, z_max] are occupied (100), the rest free (0)."""
    lo, size = grid.lower[2], grid.voxel_size[2]
    z0 = lo + size * np.arange(grid.shape[2])
    band = (z0 + size > z_min) & (z0 < z_max)
    if not band.any():
        raise ValueError(f'the student grid z range [{lo}, {grid.upper[2]}] m misses the obstacle band '
                         f'[{z_min}, {z_max}] m')
    occupied = (np.asarray(p_occupied)[:, :, band] > 0.5).any(axis=2)     # (X, Y)
    data = np.where(occupied, 100, 0).astype(np.int8).T.copy()            # rows = y
    if grid.voxel_size[0] != grid.voxel_size[1]:
        raise ValueError(f'student grid cells are not square: {grid.voxel_size}')
    return OccupancyGrid2D(data=data, resolution=float(grid.voxel_size[0]),
                           origin_xy=(grid.lower[0], grid.lower[1]), frame_id=frame_id)
