"""Voxelization and POP-3D occupancy targets against a dictionary reference."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from perception_nodes.geometry.voxels import (FINE_GRID, POP3D_GRID, GridSpec, dense_occupancy,
                                              majority_label, voxelize)

GRID = GridSpec(lower=(-2.0, -2.0, -1.0), upper=(2.0, 2.0, 1.0), shape=(8, 8, 4))


def test_protocol_grids():
    assert POP3D_GRID.voxel_size == pytest.approx((1.024, 1.024, 1.0))
    assert FINE_GRID.voxel_size == pytest.approx((0.2, 0.2, 0.2))


def test_voxelize_matches_dict_reference():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-2.5, 2.5, (3000, 3)).astype(np.float32)
    pts[5] = np.nan
    labels = rng.integers(0, 4, 3000)
    vox = voxelize(torch.from_numpy(pts), GRID, torch.from_numpy(labels))
    ref: dict[tuple, list[int]] = {}
    size = np.array(GRID.voxel_size)
    for i, p in enumerate(pts):
        if not np.all(np.isfinite(p)):
            assert vox.point_to_voxel[i] == -1
            continue
        idx = tuple(int(v) for v in np.floor((p - np.array(GRID.lower)) / size))
        if all(0 <= a < s for a, s in zip(idx, GRID.shape)):
            ref.setdefault(idx, []).append(i)
            assert tuple(vox.coords[vox.point_to_voxel[i]].tolist()) == idx
        else:
            assert vox.point_to_voxel[i] == -1
    assert vox.num_voxels == len(ref)
    for row, coord in enumerate(vox.coords.tolist()):
        members = ref[tuple(coord)]
        assert vox.counts[row] == len(members)
        counts = Counter(labels[members].tolist())
        top = max(counts.values())
        assert vox.labels[row] == min(k for k, v in counts.items() if v == top)


def test_majority_label_ties_and_large_ids():
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    labels = torch.tensor([65535, 7, 7, 65535, 3, 2, 40])
    assert majority_label(groups, labels, 4).tolist() == [7, 2, 40, -1]


def test_dense_occupancy():
    pts = torch.tensor([[-1.9, -1.9, -0.9], [1.99, 1.99, 0.99], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0],
                        [2.0, 0.0, 0.0]])
    occ = dense_occupancy(pts, GRID)
    assert occ.shape == (8, 8, 4) and occ.dtype == torch.bool
    assert occ.sum() == 3
    assert occ[0, 0, 0] and occ[7, 7, 3] and occ[4, 4, 2]


def test_empty_and_bad_input():
    vox = voxelize(torch.zeros(0, 3), GRID, torch.zeros(0, dtype=torch.long))
    assert vox.num_voxels == 0 and vox.labels.shape == (0,)
    assert not dense_occupancy(torch.zeros(0, 3), GRID).any()
    with pytest.raises(ValueError, match=r'\(N, 3\)'):
        voxelize(torch.zeros(4, 2), GRID)
    with pytest.raises(ValueError, match='labels'):
        voxelize(torch.zeros(4, 3), GRID, torch.zeros(3))
    with pytest.raises(ValueError, match='upper'):
        GridSpec((0, 0, 0), (0, 1, 1), (1, 1, 1))


def test_inside_linear_equals_voxel_indices_and_linear_index():
    """Issue 14: the fast bounds test selects exactly the points and indices the per-axis path does."""
    rng = np.random.default_rng(1)
    pts = rng.uniform(-2.6, 2.6, (5000, 3)).astype(np.float32)
    pts[:40] = np.round(pts[:40] * 2) / 2                       # on cell faces and the grid's bounds
    pts[40:48] = [[np.nan, 0, 0], [0, np.inf, 0], [0, 0, -np.inf], [2.0, 0, 0], [-2.0, -2.0, -1.0],
                  [1e30, 0, 0], [-1e30, 0, 0], [0, 0, 1.0]]
    for dtype in (torch.float32, torch.float64):
        points = torch.from_numpy(pts).to(dtype)
        idx, inside = GRID.voxel_indices(points)
        fast_inside, lin = GRID.inside_linear(points)
        assert torch.equal(fast_inside, inside)
        assert torch.equal(lin, GRID.linear_index(idx[inside]))


def _sorting_majority(groups, labels, num_groups):
    """The sorting path of majority_label (torch.unique of (group, label) pairs), as the reference."""
    out = torch.full((num_groups,), -1, dtype=torch.long)
    values, compact = torch.unique(labels.long(), return_inverse=True)
    n_lab = int(values.numel())
    pair, count = torch.unique(groups * n_lab + compact, return_counts=True)
    best = torch.zeros(num_groups, dtype=torch.long).scatter_reduce(0, pair // n_lab, count, reduce='amax')
    winner = count == best[pair // n_lab]
    big = torch.full((num_groups,), n_lab, dtype=torch.long).scatter_reduce(
        0, (pair // n_lab)[winner], (pair % n_lab)[winner], reduce='amin')
    out[big < n_lab] = values[big[big < n_lab]]
    return out


@pytest.mark.parametrize('seed, top', [(0, 5), (1, 300), (2, 70000), (3, 2**40)])
def test_counting_majority_equals_the_sorting_path(seed, top):
    """Issue 14: the bincount majority (small label ids) equals the sort-based one, ties included."""
    rng = np.random.default_rng(seed)
    groups = torch.from_numpy(rng.integers(0, 50, 3000))
    labels = torch.from_numpy(rng.choice(rng.integers(0, top, 6), 3000))
    assert torch.equal(majority_label(groups, labels, 60), _sorting_majority(groups, labels, 60))
