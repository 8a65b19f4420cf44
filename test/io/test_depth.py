"""Depth image -> points: a by-hand loop reference, a known plane, and a synthetic render round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.frame import CameraModel
from perception_nodes.geometry.sim.frame import kitti_like_camera, LIDAR_HEIGHT, mount
from perception_nodes.geometry.sim.scene import make_scene, ROAD
from perception_nodes.geometry.sim.camera import render_camera
from perception_nodes.io.depth import depth_in_meters, depth_to_points
from perception_nodes.io.image import decode_image, rgb_to_image_msg
from perception_nodes.io.stamps import header


def reference(depth: np.ndarray, camera: CameraModel, max_depth: float | None = None) -> np.ndarray:
    """depth_image_proc's point_cloud_xyz loop, plus P's translation column, one pixel at a time."""
    P = camera.P
    out = []
    for v in range(depth.shape[0]):
        for u in range(depth.shape[1]):
            d = depth[v, u]
            z = d / 1000.0 if depth.dtype == np.uint16 else float(d)
            if not np.isfinite(z) or z <= 0 or (max_depth is not None and z > max_depth):
                continue
            y = ((v - P[1, 2]) * z - P[1, 3]) / P[1, 1]
            x = ((u - P[0, 2]) * z - P[0, 1] * y - P[0, 3]) / P[0, 0]
            out.append((x, y, z))
    return np.array(out, dtype=np.float64).reshape(-1, 3)


def test_matches_a_by_hand_loop():
    rng = np.random.default_rng(0)
    K = np.array([[525.0, 0.4, 319.5], [0.0, 523.0, 239.5], [0.0, 0.0, 1.0]])
    cameras = [CameraModel('depth', 40, 30, K),                                           # P = [K | 0]
               CameraModel('stereo', 40, 30, K, P=np.c_[K, [-0.12 * 525.0, 3.0, 0.0]])]    # baseline term
    mm = rng.integers(0, 8000, (30, 40)).astype(np.uint16)
    mm[rng.random(mm.shape) < 0.2] = 0
    metres = mm.astype(np.float32) / 1000
    metres[rng.random(mm.shape) < 0.1] = np.nan
    metres[0, :3] = [np.inf, -1.0, 0.0]
    for camera in cameras:
        for depth in (mm, metres):
            for max_depth in (None, 5.0):
                points, colors = depth_to_points(depth, camera, max_depth=max_depth)
                assert points.dtype == np.float32 and colors is None
                np.testing.assert_allclose(points, reference(depth, camera, max_depth), rtol=1e-6, atol=1e-6)
    points, _ = depth_to_points(mm, cameras[0])
    valid = mm > 0
    assert len(points) == valid.sum() and points[:, 2].max() <= 7.999
    np.testing.assert_array_equal(points[:, 2], (mm[valid] / 1000).astype(np.float32))   # z is the depth
    rgb = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    _, colors = depth_to_points(mm, cameras[0], rgb=rgb)
    np.testing.assert_array_equal(colors, rgb[valid])                  # row-major, like the points


def test_known_plane():
    """A tilted plane n·X = d rendered analytically; 16UC1 quantisation moves points <= 0.5 mm along rays."""
    camera = CameraModel('cam', 64, 48, [[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    n, d = np.array([0.0, -0.6, -0.8]), -2.0           # a floor-like plane in front of the camera
    v, u = np.mgrid[0:48, 0:64]
    rays = np.stack([(u - 31.5) / 50.0, (v - 23.5) / 50.0, np.ones_like(u, dtype=float)], axis=-1)
    z = d / (rays @ n)                                  # ray (x/z, y/z, 1) meets the plane at depth z
    assert np.all(z > 0)
    exact, _ = depth_to_points(z.astype(np.float64), camera)
    np.testing.assert_allclose(exact @ n, d, atol=1e-5)
    np.testing.assert_allclose(exact.reshape(48, 64, 3), rays * z[..., None], rtol=1e-6)
    mm = np.round(z * 1000).astype(np.uint16)
    quantised, _ = depth_to_points(mm, camera)
    bound = 0.0005 * np.abs(rays @ n).reshape(-1) + 1e-6
    assert np.all(np.abs(quantised @ n - d) <= bound)
    # through a 16UC1 Image message, as a bag carries it
    msg = rgb_to_image_msg(mm, header('cam', 0), encoding='16UC1')
    np.testing.assert_array_equal(depth_to_points(decode_image(msg), camera)[0], quantised)


def test_synthetic_render_round_trip():
    scene = make_scene(3)
    camera = kitti_like_camera((94, 311), frame_id='camera')
    T_world_cam = mount(0.0)
    T_world_cam[2, 3] += LIDAR_HEIGHT
    render = render_camera(scene, camera, T_world_cam)
    hit = np.isfinite(render.depth)
    assert 0.3 < hit.mean() < 1.0                       # sky (inf depth) is not a point
    far = 60.0
    mm = np.where(hit & (render.depth < far), np.round(render.depth * 1000), 0).astype(np.uint16)
    points, colors = depth_to_points(mm, camera, rgb=render.rgb, max_depth=far)
    metres, _ = depth_to_points(render.depth, camera, max_depth=far)
    assert len(points) == len(metres) == int((hit & (render.depth <= far)).sum())
    # the points are where the ray caster hit: quantisation error <= 0.5 mm along each ray
    ray_scale = np.linalg.norm(metres / metres[:, 2:3], axis=1)
    err = np.linalg.norm(points - metres, axis=1)
    assert np.all(err <= 0.0005 * ray_scale + 1e-5)
    world = points.astype(np.float64) @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]
    keep = hit & (render.depth <= far)
    ground = render.class_image[keep] == ROAD
    assert ground.sum() > 1000 and np.abs(world[ground, 2] - scene.ground_z).max() < 2e-3
    np.testing.assert_array_equal(colors, render.rgb[keep])
    # every point is the first surface seen from the camera centre along its ray (within 2 mm: the
    # 0.5 mm quantisation plus the float32 ray caster's own error at 30+ m)
    offsets = world - T_world_cam[:3, 3]
    t = scene.intersect(torch.tensor(T_world_cam[:3, 3], dtype=torch.float32),
                        torch.tensor(offsets, dtype=torch.float32)).t.numpy()
    assert np.all(np.abs(t - 1) * np.linalg.norm(offsets, axis=1) < 2e-3)


def test_bad_input():
    camera = CameraModel('cam', 4, 3, np.diag([10.0, 10.0, 1.0]))
    with pytest.raises(ValueError, match=r'depth image is 5x3 but camera .cam. is 4x3'):
        depth_to_points(np.ones((3, 5), np.uint16), camera)
    with pytest.raises(ValueError, match='dtype int32'):
        depth_to_points(np.ones((3, 4), np.int32), camera)
    with pytest.raises(ValueError, match='must be rectified'):
        depth_to_points(np.ones((3, 4), np.uint16), CameraModel('cam', 4, 3, np.eye(3), D=[0.1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match='not registered'):
        depth_to_points(np.ones((3, 4), np.uint16), camera, rgb=np.zeros((4, 3, 3), np.uint8))
    with pytest.raises(ValueError, match='max_depth must be positive'):
        depth_to_points(np.ones((3, 4), np.float32), camera, max_depth=0)
    z, valid = depth_in_meters(np.array([[0, 1500]], np.uint16)[..., None])
    np.testing.assert_array_equal(z, [[0.0, 1.5]])
    np.testing.assert_array_equal(valid, [[False, True]])
