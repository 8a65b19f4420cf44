"""The pipeline's grids against their former (slower) implementations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.geometry.voxels import GridSpec, majority_label, voxelize
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.pipeline.grids import student_voxels

GRID = GridSpec(lower=(-4.0, -4.0, -2.0), upper=(4.0, 4.0, 2.0), shape=(10, 10, 4))


def _reference_student_voxels(p_occupied, grid, points, labels):
    """Majority label per voxel over every point, then the occupied voxels (the former code)."""
    occupied = torch.nonzero(torch.as_tensor(p_occupied) > 0.5)
    vox = voxelize(points, grid)
    per_voxel = torch.full((int(np.prod(grid.shape)),), UNKNOWN_LABEL, dtype=torch.int64)
    known = (labels.long() != UNKNOWN_LABEL) & (vox.point_to_voxel >= 0)
    majority = majority_label(vox.point_to_voxel[known], labels.long()[known], vox.num_voxels)
    per_voxel[grid.linear_index(vox.coords)] = torch.where(majority < 0, UNKNOWN_LABEL, majority)
    return grid.voxel_centers(occupied).float().numpy(), per_voxel[grid.linear_index(occupied)].numpy()


@pytest.mark.parametrize('seed, fill', [(0, 0.3), (1, 0.9), (2, 0.0), (3, 1.0)])
def test_student_voxels_equal_the_all_points_majority(seed, fill):
    rng = np.random.default_rng(seed)
    points = torch.from_numpy(rng.uniform(-5, 5, (3000, 3)).astype(np.float32))
    points[:7] = float('nan')
    labels = torch.from_numpy(rng.integers(0, 4, 3000))
    labels[rng.random(3000) < 0.2] = UNKNOWN_LABEL
    p = rng.random(GRID.shape) * (rng.random(GRID.shape) < fill)
    got = student_voxels(p, GRID, points, labels)
    centers, want = _reference_student_voxels(p, GRID, points, labels)
    assert np.array_equal(got.centers, centers) and np.array_equal(got.labels, want)
    assert got.labels.dtype == np.int64 and got.centers.shape == (len(want), 3)
