"""Projection into many cameras: distortion against OpenCV, batching, bad input."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from perception_nodes.frame import CameraModel, CameraView, Frame
from perception_nodes.geometry.projection import pixel_indices, project_frame, project_points

K = np.array([[500.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])


def _points(n: int = 2000, seed: int = 0, spread: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.uniform(1.0, 30.0, n)
    return np.stack([rng.uniform(-spread, spread, n) * z, rng.uniform(-spread, spread, n) * z, z], axis=1)


@pytest.mark.parametrize('model, coeffs', [
    ('plumb_bob', [-0.28, 0.07, 0.0012, -0.0007, -0.01]),
    ('rational_polynomial', [0.5, -0.2, 0.001, 0.002, 0.03, 0.8, -0.1, 0.05]),
])
def test_rational_distortion_matches_opencv(model, coeffs):
    pts = _points()
    cam = CameraModel('c', 640, 480, K, D=coeffs, distortion_model=model)
    proj = project_points(torch.from_numpy(pts), [cam], torch.eye(4, dtype=torch.float64)[None],
                          min_depth=0.0)
    ref, _ = cv2.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, np.array(coeffs))
    ok = proj.in_image[0].numpy()
    assert ok.sum() > 300
    np.testing.assert_allclose(proj.uv[0].numpy()[ok], ref.reshape(-1, 2)[ok], atol=1e-6)


def test_equidistant_matches_opencv_fisheye():
    pts = _points(spread=2.0)
    coeffs = np.array([0.05, -0.01, 0.003, -0.0005])
    cam = CameraModel('f', 640, 480, K, D=coeffs, distortion_model='equidistant')
    proj = project_points(torch.from_numpy(pts), [cam], np.eye(4)[None], min_depth=0.0)
    ref, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, coeffs)
    assert proj.in_image[0].sum() > 150
    # every point is in front and within 90 degrees: all coordinates, in the image or not, must agree
    np.testing.assert_allclose(proj.uv[0].numpy(), ref.reshape(-1, 2), atol=1e-6)


def test_rectified_uses_P_with_baseline():
    P = np.array([[700.0, 0, 600, 45.0], [0, 700.0, 180, -0.3], [0, 0, 1, 0.005]])
    cam = CameraModel('r', 1200, 370, K=P[:, :3], D=np.zeros(5), P=P)
    pts = _points(500, seed=1, spread=0.3)
    proj = project_points(torch.from_numpy(pts), [cam], np.eye(4)[None])
    hom = (P @ np.c_[pts, np.ones(len(pts))].T).T
    np.testing.assert_allclose(proj.uv[0].numpy(), hom[:, :2] / hom[:, 2:], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(proj.depth[0].numpy(), pts[:, 2])


def test_many_cameras_equal_one_at_a_time():
    rng = np.random.default_rng(3)
    pts = torch.from_numpy(rng.uniform(-20, 20, (3000, 3)))
    cams = [CameraModel('a', 640, 480, K),
            CameraModel('b', 320, 200, K * [[0.5], [0.5], [1]], D=[-0.2, 0.05, 0, 0, 0]),
            CameraModel('c', 640, 480, K, D=[0.02, -0.01, 0.0, 0.0], distortion_model='equidistant'),
            CameraModel('d', 800, 600, K, D=[0.1, 0.01, 0.001, 0.0, 0.0, 0.2, 0.0, 0.0],
                        distortion_model='rational_polynomial')]
    Ts = []
    for i in range(len(cams)):
        c, s = np.cos(i * 1.3), np.sin(i * 1.3)
        T = np.eye(4)
        T[:3, :3] = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
        T[:3, 3] = [0.1 * i, -0.2, 0.3]
        Ts.append(T)
    joint = project_points(pts, cams, np.stack(Ts))
    assert joint.uv.shape == (4, 3000, 2) and joint.in_image.dtype == torch.bool
    for i, cam in enumerate(cams):
        single = project_points(pts, [cam], Ts[i][None])
        assert torch.equal(single.in_image[0], joint.in_image[i])
        ok = single.in_image[0]
        assert torch.allclose(single.uv[0][ok], joint.uv[i][ok])
    assert joint.in_image.any(dim=1).all()


def test_points_behind_never_wrap_in_and_nan_and_range():
    cam = CameraModel('c', 640, 480, K, D=[0.4, 0.3, 0, 0, 0.2])  # a fold-free but strong polynomial
    pts = torch.tensor([[0.0, 0.0, -5.0], [0.1, 0.1, -0.5], [float('nan'), 0.0, 5.0], [0.0, 0.0, 5.0],
                        [0.0, 0.0, 50.0], [0.0, 0.0, 0.05]])
    proj = project_points(pts, [cam], torch.eye(4)[None], max_range=20.0)
    assert proj.in_image[0].tolist() == [False, False, False, True, False, False]
    assert torch.isnan(proj.depth[0, 2]) and proj.depth[0, 0] == -5.0
    # the same with a rectified camera and in several cameras at once
    rect = CameraModel('r', 640, 480, K)
    both = project_points(pts, [rect, cam], torch.eye(4)[None].repeat(2, 1, 1), max_range=20.0)
    assert both.in_image.tolist() == [[False, False, False, True, False, False]] * 2


def test_fold_back_of_distortion_does_not_wrap_far_field_in():
    cam = CameraModel('c', 640, 480, K, D=[-0.45, 0.0, 0.0, 0.0, 0.0])  # r_d = r - 0.45 r^3 peaks at r=0.86
    x = torch.linspace(0.0, 3.0, 301)
    pts = torch.stack([x, torch.zeros_like(x), torch.ones_like(x)], dim=1)
    proj = project_points(pts, [cam], torch.eye(4)[None])
    u = proj.uv[0, :, 0]
    inside = proj.in_image[0]
    assert not inside[x > 0.87].any()           # beyond the fold the polynomial comes back into the image
    assert ((u >= -0.5) & (u < 639.5))[x > 1.6].any()
    assert inside[(x < 0.5)].all()


def test_pixel_convention_edges():
    cam = CameraModel('c', 4, 3, np.array([[1.0, 0, 1.5], [0, 1.0, 1.0], [0, 0, 1]]))
    # u = x + 1.5: u in [-0.5, 3.5) is inside
    xs = torch.tensor([-2.0, -2.0001, 1.9999, 2.0])
    pts = torch.stack([xs, torch.zeros(4), torch.ones(4)], dim=1).double()
    proj = project_points(pts, [cam], torch.eye(4)[None].double())
    assert proj.in_image[0].tolist() == [True, False, True, False]
    rows, cols = pixel_indices(proj.uv[0], (3, 4))
    assert cols.tolist() == [0, 0, 3, 3] and rows.tolist() == [1, 1, 1, 1]


def test_bad_input():
    pts = torch.zeros(5, 3)
    with pytest.raises(ValueError, match='zero-size'):
        project_points(pts, [CameraModel('z', 0, 480, K)], torch.eye(4)[None])
    with pytest.raises(ValueError, match='singular'):
        project_points(pts, [CameraModel('s', 640, 480, np.zeros((3, 3)))], torch.eye(4)[None])
    with pytest.raises(ValueError, match='singular'):
        project_points(pts, [CameraModel('s', 640, 480, np.diag([1.0, 0.0, 1.0]), D=[0.1, 0, 0, 0, 0])],
                       torch.eye(4)[None])
    with pytest.raises(ValueError, match='T_cam_lidar'):
        project_points(pts, [CameraModel('a', 640, 480, K)], torch.eye(4)[None].repeat(2, 1, 1))
    with pytest.raises(ValueError, match=r'\(N, 3\)'):
        project_points(torch.zeros(5, 4), [CameraModel('a', 640, 480, K)], torch.eye(4)[None])
    empty = project_points(torch.zeros(0, 3), [CameraModel('a', 640, 480, K)], torch.eye(4)[None])
    assert empty.uv.shape == (1, 0, 2) and empty.in_image.shape == (1, 0)
    no_cam = project_points(pts, [], torch.zeros(0, 4, 4))
    assert no_cam.uv.shape == (0, 5, 2)


def test_project_frame_matches_project_points():
    cam = CameraModel('a', 640, 480, K)
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    pts = np.random.default_rng(0).uniform(-10, 10, (100, 3)).astype(np.float32)
    frame = Frame(0, 'lidar', pts, cameras=[CameraView('a', np.zeros((480, 640, 3), np.uint8), cam, T)])
    a = project_frame(frame)
    b = project_points(torch.from_numpy(pts), [cam], T[None])
    assert torch.equal(a.in_image, b.in_image) and a.image_sizes == [(480, 640)]
