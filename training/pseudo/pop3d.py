"""POP-3D training targets and evaluation labels (POP-3D Sec. 3.2, 4.1; Eq. 4-7).

- Occupancy targets (Sec. 3.2): a voxel holding at least one LiDAR point is occupied, every other voxel
  empty, densely over the grid (``geometry.voxels.dense_occupancy``). The POP-3D grid is 100 x 100 x 8
  over [-51.2, 51.2] x [-51.2, 51.2] x [-5, 3] m (``POP3D_GRID``); a finer grid (``FINE_GRID``, 0.2 m) is
  offered for LiDAR students. Dense targets of a fine grid are large (512 x 512 x 40 = 10.5 M voxels), so
  they are stored as the sorted linear indices of the occupied voxels (:meth:`OccupancyTargets.dense`
  rebuilds the grid).
- Feature-target points (Eq. 5-6): the points that project into at least one camera (``P_cam``). POP-3D
  applies no occlusion test; ``use_visibility=True`` (our option) keeps only visible projections.
- Ray-cast evaluation labels (Sec. 4.1, Fig. 3): voxels crossed by a LiDAR ray are free, voxels holding
  returns carry their majority label (or "occupied"), all others are ignored
  (``geometry.occupancy.ray_cast_labels``); stored sparsely (observed voxels only).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from perception_nodes.geometry.occupancy import FREE, IGNORE, OCCUPIED, ray_cast_labels
from perception_nodes.geometry.voxels import FINE_GRID, POP3D_GRID, GridSpec, dense_occupancy


@dataclass
class OccupancyTargets:
    """Occupied voxels of one grid, as sorted linear indices (row-major x, y, z)."""

    grid: GridSpec
    occupied: np.ndarray       # (V,) int64 sorted linear indices

    def dense(self) -> np.ndarray:
        """(X, Y, Z) bool occupancy target (POP-3D Eq. 4's T_occ)."""
        out = np.zeros(int(np.prod(self.grid.shape)), dtype=bool)
        out[self.occupied] = True
        return out.reshape(self.grid.shape)


@dataclass
class RayCastLabels:
    """POP-3D evaluation labels of the observed voxels: FREE (-2), OCCUPIED (-3) or a class label >= 0."""

    grid: GridSpec
    index: np.ndarray          # (V,) int64 sorted linear indices of the observed voxels
    label: np.ndarray          # (V,) int64

    def dense(self) -> np.ndarray:
        """(X, Y, Z) int64 labels, IGNORE (-1) where never observed."""
        out = np.full(int(np.prod(self.grid.shape)), IGNORE, dtype=np.int64)
        out[self.index] = self.label
        return out.reshape(self.grid.shape)


@dataclass
class Pop3DConfig:
    """Which grids and targets to build."""

    grids: tuple[GridSpec, ...] = field(default_factory=lambda: (POP3D_GRID, FINE_GRID))
    ray_cast: bool = True             # evaluation labels (costly on the fine grid: one pass per grid)
    use_visibility: bool = False      # feature targets at visible projections only (not in POP-3D)


@dataclass
class Pop3DTargets:
    """Everything POP-3D trains and evaluates on, for one sweep."""

    occupancy: list[OccupancyTargets]
    feature_points: np.ndarray        # (n,) int64 indices of the points with a feature target (P_cam)
    ray_cast: list[RayCastLabels]


def occupancy_targets(points: np.ndarray, grid: GridSpec = POP3D_GRID) -> OccupancyTargets:
    """POP-3D occupancy target of one grid (sparse form)."""
    occ = dense_occupancy(torch.as_tensor(np.asarray(points, dtype=np.float32)), grid).reshape(-1)
    return OccupancyTargets(grid, torch.nonzero(occ).reshape(-1).numpy().astype(np.int64))


def ray_cast_targets(points: np.ndarray, origin: np.ndarray, grid: GridSpec = POP3D_GRID,
                     labels: np.ndarray | None = None) -> RayCastLabels:
    """POP-3D ray-cast evaluation labels of one grid (sparse form).

    Returns with ``labels < 0`` (unlabelled) still free the voxels their rays cross; a voxel holding only
    unlabelled returns is ignored (occupied, class unknown).
    """
    pts = torch.as_tensor(np.asarray(points, dtype=np.float32))
    lab = None
    free_only = None
    if labels is not None:
        lab_np = np.asarray(labels, dtype=np.int64)
        keep = lab_np >= 0
        # unlabelled returns still free the voxels their rays cross, but cast no label
        free_only = ray_cast_labels(pts[torch.from_numpy(~keep)], torch.as_tensor(origin), grid) \
            if (~keep).any() else None
        pts, lab = pts[torch.from_numpy(keep)], torch.from_numpy(lab_np[keep])
    dense = ray_cast_labels(pts, torch.as_tensor(origin), grid, lab).reshape(-1)
    if labels is not None and free_only is not None:
        other = free_only.reshape(-1)
        dense[(dense == IGNORE) & (other == FREE)] = FREE       # crossed by an unlabelled return's ray
        dense[(dense == FREE) & (other == OCCUPIED)] = IGNORE   # holds only unlabelled returns: unknown label
    idx = torch.nonzero(dense != IGNORE).reshape(-1)
    return RayCastLabels(grid, idx.numpy().astype(np.int64), dense[idx].numpy().astype(np.int64))


def pop3d_targets(points: np.ndarray, origin: np.ndarray, in_camera: np.ndarray,
                  labels: np.ndarray | None = None, config: Pop3DConfig | None = None) -> Pop3DTargets:
    """Occupancy targets and ray-cast labels on every configured grid, and the feature-target points.

    ``in_camera`` (N,) bool: the point projects into (or, with visibility, is visible in) some camera.
    """
    config = config or Pop3DConfig()
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    cam = np.asarray(in_camera, dtype=bool).reshape(-1)
    if len(cam) != len(pts):
        raise ValueError(f'in_camera has {len(cam)} entries for {len(pts)} points')
    occ = [occupancy_targets(pts, g) for g in config.grids]
    rays = [ray_cast_targets(pts, origin, g, labels) for g in config.grids] if config.ray_cast else []
    return Pop3DTargets(occ, np.flatnonzero(cam).astype(np.int64), rays)
