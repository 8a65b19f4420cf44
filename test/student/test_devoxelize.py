from __future__ import annotations

import torch

from perception_nodes.student.devoxelize import gather_cells, grid_cells, scatter_mean


def test_scatter_mean_against_a_loop():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(200, 3, generator=g)
    cell = torch.randint(0, 10, (200,), generator=g)
    valid = torch.rand(200, generator=g) > 0.3
    mean, count = scatter_mean(feats, cell, valid, 10)
    for c in range(10):
        sel = (cell == c) & valid
        assert count[c].item() == sel.sum().item()
        expected = feats[sel].mean(dim=0) if sel.any() else torch.zeros(3)
        torch.testing.assert_close(mean[c], expected, rtol=1e-5, atol=1e-6)


def test_invalid_points_never_reach_a_cell():
    feats = torch.ones(4, 2)
    valid = torch.tensor([True, False, False, False])
    mean, count = scatter_mean(feats, torch.tensor([0, 0, 1, 1]), valid, 2)
    assert count.tolist() == [1.0, 0.0]
    assert mean[1].tolist() == [0.0, 0.0]


def test_gather_is_nearest_cell_devoxelization():
    cells = torch.arange(12.0).reshape(4, 3)
    out = gather_cells(cells, torch.tensor([2, 0, 3]), torch.tensor([True, True, False]))
    assert out.tolist() == [[6.0, 7.0, 8.0], [0.0, 1.0, 2.0], [0.0, 0.0, 0.0]]


def test_grid_cells_agree_with_gridspec(tiny):
    grid = tiny.grid
    pts = torch.rand(500, 3) * 100 - 50
    cell, inside = grid_cells(pts, grid.lower, grid.voxel_size, grid.shape)
    idx, inside_ref = grid.voxel_indices(pts)
    assert torch.equal(inside, inside_ref)
    X, Y, Z = grid.shape
    ref = (idx[:, 0] * Y + idx[:, 1]) * Z + idx[:, 2]
    assert torch.equal(cell[inside], ref[inside_ref])
