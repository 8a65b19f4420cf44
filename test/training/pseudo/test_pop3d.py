"""POP-3D targets: occupancy on the POP-3D and fine grids, feature points, sparse ray-cast labels."""
from __future__ import annotations

import numpy as np
import torch

from perception_nodes.geometry.occupancy import FREE, IGNORE, ray_cast_labels
from perception_nodes.geometry.voxels import FINE_GRID, POP3D_GRID, GridSpec
from training.pseudo.pop3d import Pop3DConfig, occupancy_targets, pop3d_targets, ray_cast_targets


def test_occupancy_known_answer_on_the_pop3d_grid():
    assert POP3D_GRID.shape == (100, 100, 8) and POP3D_GRID.voxel_size == (1.024, 1.024, 1.0)
    pts = np.array([[0.1, 0.1, 0.1], [0.2, 0.3, 0.5], [-51.2, -51.2, -5.0], [60.0, 0.0, 0.0],
                    [1.1, 0.0, 0.0]])
    occ = occupancy_targets(pts)
    # voxel of (0.1, 0.1, 0.1): x, y index 50, z index 5 -> linear (50 * 100 + 50) * 8 + 5
    np.testing.assert_array_equal(occ.occupied, [0, (50 * 100 + 50) * 8 + 5, (51 * 100 + 50) * 8 + 5])
    dense = occ.dense()
    assert dense.shape == (100, 100, 8) and dense.sum() == 3 and dense[50, 50, 5] and dense[0, 0, 0]


def test_ray_cast_sparse_equals_dense_and_unlabelled_returns():
    grid = GridSpec((-4.0, -4.0, -2.0), (4.0, 4.0, 2.0), (8, 8, 4))
    pts = np.array([[3.5, 0.5, 0.5], [0.5, 3.5, 0.5], [-3.5, -3.5, -1.5]], dtype=np.float32)
    labels = np.array([2, 5, 7])
    origin = np.zeros(3)
    rc = ray_cast_targets(pts, origin, grid, labels)
    ref = ray_cast_labels(torch.from_numpy(pts), torch.zeros(3), grid, torch.from_numpy(labels)).numpy()
    np.testing.assert_array_equal(rc.dense(), ref)
    assert (rc.label != IGNORE).all() and len(rc.index) == (ref != IGNORE).sum()
    # the third return unlabelled: its ray still frees voxels, its own voxel becomes ignored
    rc2 = ray_cast_targets(pts, origin, grid, np.array([2, 5, -1]))
    d2 = rc2.dense()
    end = grid.voxel_indices(torch.from_numpy(pts))[0][2].tolist()
    assert d2[tuple(end)] == IGNORE and ref[tuple(end)] == 7
    free_ref = ref == FREE
    assert (d2[free_ref] == FREE).all()


def test_pop3d_targets_bundle():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-20, 20, (500, 3)).astype(np.float32)
    pts[:, 2] = rng.uniform(-2, 1, 500)
    cam = rng.random(500) < 0.3
    t = pop3d_targets(pts, np.zeros(3), cam, labels=rng.integers(0, 4, 500),
                      config=Pop3DConfig(grids=(POP3D_GRID,)))
    np.testing.assert_array_equal(t.feature_points, np.flatnonzero(cam))
    assert len(t.occupancy) == 1 and len(t.ray_cast) == 1
    occ = t.occupancy[0].dense()
    labelled = t.ray_cast[0].dense() >= 0
    np.testing.assert_array_equal(occ, labelled)          # occupied voxels are exactly the labelled ones
    fine = occupancy_targets(pts, FINE_GRID)
    assert fine.grid.voxel_size == (0.2, 0.2, 0.2) and len(fine.occupied) >= len(t.occupancy[0].occupied)
