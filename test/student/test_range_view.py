from __future__ import annotations

import math

import torch

from perception_nodes.student.range_view import UNet2D, spherical_cells


def test_spherical_projection_known_answers():
    H, W, up, down = 64, 512, 3.0, -25.0
    pts = torch.tensor([
        [10.0, 0.0, 0.0],                                   # straight ahead, horizon
        [0.0, 10.0, 0.0],                                   # left (+y): yaw = +pi/2
        [-10.0, -1e-6, 0.0],                                # behind: yaw = -pi
        [10.0, 0.0, 10.0 * math.tan(math.radians(-25.0 + 1e-4))],   # bottom of the FOV
    ])
    cell, rng = spherical_cells(pts, H, W, up, down)
    row, col = cell // W, cell % W
    assert col.tolist()[:3] == [256, 128, 511]
    assert row[0].item() == math.floor(3.0 / 28.0 * H)
    assert row[3].item() == H - 1
    torch.testing.assert_close(rng[:3], torch.full((3,), 10.0))


def test_projection_clamps_out_of_fov_points_to_border_rows():
    pts = torch.tensor([[1.0, 0.0, 5.0], [1.0, 0.0, -5.0]])
    cell, _ = spherical_cells(pts, 32, 64, 3.0, -25.0)
    assert (cell // 64).tolist() == [0, 31]


def test_unet_keeps_resolution_and_width():
    net = UNet2D(6, (8, 16, 32), (1, 1, 1)).eval()
    out = net(torch.randn(1, 6, 32, 128))
    assert out.shape == (1, 8, 32, 128)
