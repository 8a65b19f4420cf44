"""The synthetic LiDAR: beam geometry, range window, noise, dropouts, labels."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception_nodes.geometry.sim.lidar import LidarBeamModel, render_lidar
from perception_nodes.geometry.sim.scene import Scene, make_scene


def test_beam_directions():
    model = LidarBeamModel(n_beams=4, fov_up=2.0, fov_down=-10.0, n_azimuth=8)
    dirs, beam, azi = model.directions()
    assert dirs.shape == (32, 3) and beam.max() == 3 and azi.max() == 7
    torch.testing.assert_close(torch.linalg.norm(dirs, dim=1), torch.ones(32))
    elev = torch.rad2deg(torch.asin(dirs[:, 2])).view(4, 8)[:, 0]
    torch.testing.assert_close(elev, torch.tensor([2.0, -2.0, -6.0, -10.0]), atol=1e-4, rtol=0)


def test_flat_ground_ranges_and_noise():
    scene = Scene()
    model = LidarBeamModel(n_beams=16, fov_up=-5.0, fov_down=-25.0, n_azimuth=256, range_noise=0.05,
                           dropout=0.1, max_range=15.0)
    scan = render_lidar(scene, model, origin=(0.0, 0.0, 1.73), seed=3)
    # every non-dropped beam hits the ground within the window: ~90 % of beams whose ground range <= 15 m
    ranges = 1.73 / np.sin(np.radians(np.linspace(5.0, 25.0, 16)))
    expected = 256 * int(np.sum(ranges <= 15.0))
    assert 0.85 * expected < scan.num_points < 0.95 * expected
    np.testing.assert_allclose(scan.surface_points[:, 2], 0.0, atol=1e-4)
    err = (np.linalg.norm(scan.points - scan.origin, axis=1)
           - np.linalg.norm(scan.surface_points - scan.origin, axis=1))
    assert abs(err.std() - 0.05) < 0.005 and abs(err.mean()) < 0.005
    assert (scan.classes == 0).all() and (scan.instances == 0).all()
    assert scan.points.dtype == np.float32 and ((scan.intensity >= 0) & (scan.intensity <= 1)).all()


def test_deterministic_and_labels_consistent():
    scene = make_scene(2)
    model = LidarBeamModel(n_beams=32, n_azimuth=512)
    a, b = render_lidar(scene, model, seed=5), render_lidar(scene, model, seed=5)
    np.testing.assert_array_equal(a.points, b.points)
    c = render_lidar(scene, model, seed=6)
    assert not np.array_equal(a.points.shape, c.points.shape) or not np.array_equal(a.points, c.points)
    # every instance id maps to exactly one class (trees: trunk and crown share an id but differ in class)
    inst_cls = {(int(i), int(k)) for i, k in zip(a.instances, a.classes)}
    things = {i for i, _ in inst_cls if i > 0}
    assert len(things) > 5 and len(set(a.classes.tolist())) >= 4
    assert all(k == 0 for i, k in inst_cls if i == 0)
    r = np.linalg.norm(a.points - a.origin, axis=1)
    assert r.min() >= 1.0 - 0.2 and r.max() <= 80.0 + 0.2
    assert math.isclose(a.origin[2], 1.73)


def test_bad_beam_model():
    with pytest.raises(ValueError, match='fov_up'):
        LidarBeamModel(fov_up=-30.0)
    with pytest.raises(ValueError, match='n_beams'):
        LidarBeamModel(n_beams=0)
