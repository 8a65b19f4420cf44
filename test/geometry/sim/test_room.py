"""Synthetic indoor rooms: scanned points with normals and instance truth; posed cameras."""
from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.geometry.projection import pixel_indices, project_points
from perception_nodes.geometry.sim.room import (CHAIR, FLOOR, ROOM_CLASSES, TABLE, WALL, make_room,
                                                room_camera, room_view)


@pytest.fixture(scope='module')
def room():
    return make_room(3, n_objects=8, rays=(360, 180), voxel_size=0.05)


def test_room_points_and_truth(room):
    n = len(room.points)
    assert n > 5000 and room.normals.shape == (n, 3) and room.colors.shape == (n, 3)
    np.testing.assert_allclose(np.linalg.norm(room.normals, axis=1), 1.0, atol=1e-5)
    assert set(np.unique(room.classes)) <= set(range(len(ROOM_CLASSES)))
    assert {FLOOR, WALL, TABLE, CHAIR} <= set(room.classes.tolist())
    floor = room.classes == FLOOR
    assert np.abs(room.points[floor, 2]).max() < 0.05 and (np.abs(room.normals[floor, 2]) > 0.99).all()
    walls = room.classes == WALL
    assert (np.abs(room.normals[walls, 2]) < 0.01).all()
    np.testing.assert_array_equal(room.instance_class[room.instances], room.classes)
    assert room.object_mask.sum() == (~np.isin(room.classes, [FLOOR, WALL])).sum()
    lx, ly = room.size
    assert room.points[:, 0].min() > -0.06 and room.points[:, 0].max() < lx + 0.06
    # voxel-downsampled: no two points closer than about the voxel size
    from scipy.spatial import cKDTree
    d, _ = cKDTree(room.points).query(room.points, k=2)
    assert np.median(d[:, 1]) > 0.02
    again = make_room(3, n_objects=8, rays=(360, 180), voxel_size=0.05)
    np.testing.assert_array_equal(again.points, room.points)


def test_room_view_rasters_and_visibility(room):
    view = room_view(room, 1, num_views=4, image_size=(60, 80))
    model, T_room_cam = room_camera(room, 1, 4, (60, 80))
    np.testing.assert_allclose(view.T_cam_lidar, np.linalg.inv(T_room_cam))
    assert view.image.shape == (60, 80, 3) and view.truth['class'].shape == (60, 80)
    assert (view.truth['class'] >= 0).mean() > 0.95                     # a closed room: little void
    proj = project_points(__import__('torch').from_numpy(room.points), [model],
                          __import__('torch').from_numpy(view.T_cam_lidar)[None])
    inside = proj.in_image[0].numpy()
    vis = view.truth['visible']
    assert not (vis & ~inside).any() and 0.2 * inside.sum() < vis.sum() < inside.sum()
    rows, cols = pixel_indices(proj.uv[0], (60, 80))
    agree = view.truth['instance'][rows.numpy()[vis], cols.numpy()[vis]] == room.instances[vis]
    assert agree.mean() > 0.9
