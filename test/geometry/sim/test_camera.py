"""Synthetic camera renders and the first-surface visibility truth."""
from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.frame import CameraModel
from perception_nodes.geometry.sim.camera import first_surface_visible, render_camera
from perception_nodes.geometry.sim.frame import kitti_like_camera, mount
from perception_nodes.geometry.sim.scene import SIM_COLORS, SKY_COLOR, Scene


def test_wall_depth_is_exact():
    # a wall 10 m ahead of a camera looking along +x (mount at yaw 0 maps the optical axis to +x)
    scene = Scene(boxes=[[10.5, 0.0, 5.0, 1.0, 100.0, 10.0, 0.0]], box_class=[2], box_instance=[1])
    cam = kitti_like_camera((60, 200))
    T_world_cam = mount(0.0, (0.0, 0.0, 0.0))
    T_world_cam[:3, 3] = [0.0, 0.0, 2.0]
    render = render_camera(scene, cam, T_world_cam)
    assert render.rgb.shape == (60, 200, 3) and render.rgb.dtype == np.uint8
    wall = render.class_image == 2
    assert wall.mean() > 0.3
    np.testing.assert_allclose(render.depth[wall], 10.0, atol=1e-4)
    assert (render.instance_image[wall] == 1).all()
    # below the horizon the ground (class 0) at depth 2 f / (v - cy)
    ground = render.class_image == 0
    v = np.nonzero(ground)[0]
    np.testing.assert_allclose(render.depth[ground], 2.0 * cam.K[1, 1] / (v - cam.K[1, 2]), rtol=1e-4)
    # the wall faces the camera: flat colour times shading, tinted per instance, never sky
    assert not (render.rgb[wall] == SKY_COLOR).all(axis=1).any()
    assert (render.rgb[wall].astype(int) <= SIM_COLORS[2].astype(int) * 1.2 + 1).all()


def test_sky_and_bad_cameras():
    render = render_camera(Scene(), kitti_like_camera((20, 40)), mount(0.0))
    sky = render.class_image == -1
    assert sky.any() and np.isinf(render.depth[sky]).all() and (render.rgb[sky] == SKY_COLOR).all()
    K = np.array([[10.0, 0, 5], [0, 10, 5], [0, 0, 1]])
    with pytest.raises(ValueError, match='pinhole'):
        render_camera(Scene(), CameraModel('c', 10, 10, K, D=[0.1, 0, 0, 0, 0]), np.eye(4))
    with pytest.raises(ValueError, match='zero-size'):
        render_camera(Scene(), CameraModel('c', 0, 10, K), np.eye(4))
    with pytest.raises(ValueError, match='T_world_cam'):
        render_camera(Scene(), CameraModel('c', 10, 10, K), np.eye(3))


def test_first_surface_visible():
    scene = Scene(boxes=[[5.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.0]], box_class=[1], box_instance=[1])
    cam = np.array([0.0, 0.0, 1.0])
    pts = np.array([[4.5, 0.0, 1.0],      # front face of the box: visible
                    [10.0, 0.0, 0.0],     # ground behind the box, ray passes through the box: hidden
                    [10.0, 5.0, 0.0],     # ground off to the side: visible
                    [5.5, 0.0, 1.0]])     # back face: hidden
    assert first_surface_visible(scene, cam, pts).tolist() == [True, False, True, False]
    assert first_surface_visible(scene, cam, np.zeros((0, 3))).shape == (0,)
