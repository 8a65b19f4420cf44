"""Project LiDAR points into any number of cameras at once (Affinity3D Eq. 1; POP-3D Eq. 5).

Pixel convention (OpenCV / ROS image_geometry): the centre of pixel (row r, column c) is at
``(u, v) = (c, r)``; the image covers ``-0.5 <= u < W - 0.5`` and ``-0.5 <= v < H - 0.5``, and the pixel
holding ``(u, v)`` is ``(floor(v + 0.5), floor(u + 0.5))`` (see :func:`pixel_indices`).

Camera models (see :class:`perception_nodes.frame.CameraModel`):
- rectified (no distortion): ``P @ [X, 1]`` (``P`` may carry a stereo baseline term, KITTI's P2 does);
- ``plumb_bob`` / ``rational_polynomial``: OpenCV's ``projectPoints`` model
  (k1, k2, p1, p2[, k3[, k4, k5, k6[, s1, s2, s3, s4]]]) followed by ``K``;
- ``equidistant``: OpenCV's ``fisheye`` model (k1..k4) followed by ``K``.

Strong radial distortion polynomials fold back at large field angles, which would wrap points from
outside the field of view into the image; a point counts as in the image only where the polynomial is
still increasing (the radius is found once per camera by dense sampling).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from perception_nodes.frame import CameraModel, Frame

_FOLD_SAMPLES = 4096
_FOLD_MAX_RADIUS = 20.0  # normalised radius (tan of ~87 deg) beyond which nothing is considered


@dataclass
class Projection:
    """Points projected into M cameras: only entries with ``in_image`` are meaningful."""

    uv: torch.Tensor        # (M, N, 2) pixel coordinates (u right, v down)
    depth: torch.Tensor     # (M, N) z in each camera frame, metres
    in_image: torch.Tensor  # (M, N) bool: finite, in front (depth > min_depth), inside the image, in range
    image_sizes: list[tuple[int, int]] = field(default_factory=list)  # (H, W) per camera

    @property
    def num_cameras(self) -> int:
        return int(self.uv.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.uv.shape[1])


def pixel_indices(uv: torch.Tensor, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) long tensors of the pixels holding ``uv`` (..., 2), clamped into the image."""
    h, w = int(image_size[0]), int(image_size[1])
    uv = torch.nan_to_num(uv, nan=-1.0, posinf=1e9, neginf=-1e9)
    cols = torch.floor(uv[..., 0] + 0.5).clamp(0, max(w - 1, 0)).long()
    rows = torch.floor(uv[..., 1] + 0.5).clamp(0, max(h - 1, 0)).long()
    return rows, cols


def _check_camera(i: int, cam: CameraModel) -> None:
    if cam.width <= 0 or cam.height <= 0:
        raise ValueError(f'camera {i} ({cam.frame_id!r}) has a zero-size image {cam.width}x{cam.height}')
    mat = cam.P[:, :3] if cam.is_rectified else cam.K
    if not np.all(np.isfinite(mat)) or abs(np.linalg.det(mat)) < 1e-12 or mat[2, 2] == 0:
        kind = 'P[:, :3]' if cam.is_rectified else 'K'
        raise ValueError(f'camera {i} ({cam.frame_id!r}) has a singular or non-finite {kind}: {mat.tolist()}')
    if cam.distortion_model == 'equidistant' and not cam.is_rectified and cam.D.size != 4:
        raise ValueError(f'camera {i}: equidistant distortion needs 4 coefficients, got {cam.D.size}')
    if cam.distortion_model in ('plumb_bob', 'rational_polynomial') and not cam.is_rectified:
        if cam.D.size not in (4, 5, 8, 12, 14):
            raise ValueError(f'camera {i}: {cam.distortion_model} needs 4, 5, 8, 12 or 14 coefficients, '
                             f'got {cam.D.size}')
        if cam.D.size == 14 and np.any(cam.D[12:]):
            raise ValueError(f'camera {i}: the tilted sensor model (tau_x, tau_y) is not supported')


def _rational_coeffs(cam: CameraModel) -> np.ndarray:
    """k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4 (zeros where the model has fewer)."""
    out = np.zeros(12)
    d = cam.D[:12]
    out[:d.size] = d
    return out


def _distort_rational(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply OpenCV's projectPoints distortion; c is (M, 12) broadcast over the (M, N) x, y."""
    k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4 = (c[:, i:i + 1] for i in range(12))
    r2 = x * x + y * y
    r4 = r2 * r2
    r6 = r4 * r2
    radial = (1 + k1 * r2 + k2 * r4 + k3 * r6) / (1 + k4 * r2 + k5 * r4 + k6 * r6)
    xy = x * y
    xd = x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x * x) + s1 * r2 + s2 * r4
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * xy + s3 * r2 + s4 * r4
    return xd, yd


def _theta_d(theta: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    t2 = theta * theta
    return theta * (1 + t2 * (c[:, 0:1] + t2 * (c[:, 1:2] + t2 * (c[:, 2:3] + t2 * c[:, 3:4]))))


def _distort_equidistant(x: torch.Tensor, y: torch.Tensor,
                         c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply OpenCV's fisheye (equidistant) model: theta_d = theta (1 + k1 theta^2 + ... + k4 theta^8)."""
    r = torch.sqrt(x * x + y * y)
    theta = torch.atan(r)
    scale = torch.where(r > 1e-12, _theta_d(theta, c) / r.clamp_min(1e-12), torch.ones_like(r))
    return x * scale, y * scale


def _fold_radius(cam: CameraModel) -> float:
    """Largest normalised radius (rational) or angle (equidistant) where distortion is still monotonic."""
    c = torch.tensor(cam.D, dtype=torch.float64)[None]
    if cam.distortion_model == 'equidistant':
        grid = torch.linspace(0, np.pi / 2, _FOLD_SAMPLES, dtype=torch.float64)[None]
        rd = _theta_d(grid, c)[0]
    else:
        coeffs = torch.tensor(_rational_coeffs(cam), dtype=torch.float64)[None]
        coeffs[:, 2:4] = 0  # radial part only
        coeffs[:, 8:] = 0
        grid = torch.linspace(0, _FOLD_MAX_RADIUS, _FOLD_SAMPLES, dtype=torch.float64)[None]
        rd, _ = _distort_rational(grid, torch.zeros_like(grid), coeffs)
        rd = rd[0]
    grid = grid[0]
    bad = torch.nonzero(torch.diff(rd) <= 0)
    if len(bad) == 0:
        return float(grid[-1]) if cam.distortion_model == 'equidistant' else float('inf')
    return float(grid[int(bad[0])])


def _as_transforms(T_cam_lidar, m: int, dtype: torch.dtype, device) -> torch.Tensor:
    if isinstance(T_cam_lidar, (list, tuple)):
        T_cam_lidar = np.stack([np.asarray(t, dtype=np.float64) for t in T_cam_lidar]) if len(T_cam_lidar) \
            else np.zeros((0, 4, 4))
    T = torch.as_tensor(T_cam_lidar, device=device).to(dtype)
    if T.ndim == 2:
        T = T[None]
    if T.shape != (m, 4, 4):
        raise ValueError(f'T_cam_lidar must be ({m}, 4, 4) for {m} cameras, got {tuple(T.shape)}')
    if not torch.isfinite(T).all():
        raise ValueError('T_cam_lidar holds non-finite values')
    return T


def project_points(points: torch.Tensor, cameras: Sequence[CameraModel], T_cam_lidar: torch.Tensor,
                   max_range: float | None = None, min_depth: float = 0.1) -> Projection:
    """Project (N, 3) LiDAR-frame points into M cameras (Affinity3D Eq. 1: p = K T_cam_lidar P).

    ``T_cam_lidar`` is (M, 4, 4) (numpy, torch or a list). ``max_range`` (metres) drops points farther than
    that from the camera centre; ``min_depth`` drops points closer than that along the optical axis, so
    points behind a camera never wrap into its image. NaN/inf points are never in the image.
    Computes in ``points``' dtype (float32 input -> float32 results) and device.
    """
    points = torch.as_tensor(points)
    if not points.is_floating_point():
        points = points.float()
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got {tuple(points.shape)}')
    cameras = list(cameras)
    for i, cam in enumerate(cameras):
        _check_camera(i, cam)
    m, n = len(cameras), points.shape[0]
    dtype, device = points.dtype, points.device
    T = _as_transforms(T_cam_lidar, m, dtype, device)
    sizes = [(cam.height, cam.width) for cam in cameras]
    if m == 0 or n == 0:
        return Projection(uv=torch.zeros(m, n, 2, dtype=dtype, device=device),
                          depth=torch.zeros(m, n, dtype=dtype, device=device),
                          in_image=torch.zeros(m, n, dtype=torch.bool, device=device), image_sizes=sizes)

    finite = torch.isfinite(points.sum(dim=1))          # NaN or inf anywhere makes the sum non-finite
    all_finite = bool(finite.all())
    pts = points if all_finite else torch.where(finite[:, None], points, torch.zeros_like(points))
    uv = torch.empty(m, n, 2, dtype=dtype, device=device)
    depth = torch.empty(m, n, dtype=dtype, device=device)
    valid = torch.empty(m, n, dtype=torch.bool, device=device)

    groups: dict[str, list[int]] = {'rectified': [], 'rational': [], 'equidistant': []}
    for i, cam in enumerate(cameras):
        key = 'rectified' if cam.is_rectified else (
            'equidistant' if cam.distortion_model == 'equidistant' else 'rational')
        groups[key].append(i)

    if groups['rectified']:
        # one matmul per camera: rows P[:, :3] @ T[:3] (homogeneous pixel) and T[2] (depth)
        idx = torch.tensor(groups['rectified'], device=device)
        P = torch.as_tensor(np.stack([cameras[i].P for i in groups['rectified']]), device=device).to(dtype)
        Tg = T[idx]
        A = torch.cat([P[:, :, :3] @ Tg[:, :3, :], Tg[:, 2:3, :]], dim=1)          # (G, 4, 4)
        A[:, :3, 3] += P[:, :, 3]
        out = torch.baddbmm(A[:, None, :, 3], pts.expand(len(idx), n, 3), A[:, :, :3].transpose(1, 2))
        z = out[..., 3]
        w = out[..., 2]
        ok = (z > min_depth) & (w > 1e-9 * z.abs())
        w = torch.where(ok, w, torch.ones_like(w))
        uv[idx] = out[..., :2] / w[..., None]
        depth[idx] = z
        valid[idx] = ok
        if max_range is not None:
            xyz = torch.matmul(pts, Tg[:, :3, :3].transpose(1, 2)) + Tg[:, None, :3, 3]
            valid[idx] &= torch.linalg.norm(xyz, dim=-1) <= max_range
    distorted = groups['rational'] + groups['equidistant']
    if distorted:
        idx = torch.tensor(distorted, device=device)
        Tg = T[idx]
        xyz = torch.matmul(pts, Tg[:, :3, :3].transpose(1, 2)) + Tg[:, None, :3, 3]
        z = xyz[..., 2]
        ok = z > min_depth
        if max_range is not None:
            ok &= torch.linalg.norm(xyz, dim=-1) <= max_range
        depth[idx] = z
        valid[idx] = ok
        safe_z = torch.where(ok, z, torch.ones_like(z))
        x_all, y_all = xyz[..., 0] / safe_z, xyz[..., 1] / safe_z
        row_of = {cam: r for r, cam in enumerate(distorted)}
    for key, distort in (('rational', _distort_rational), ('equidistant', _distort_equidistant)):
        if not groups[key]:
            continue
        ids = groups[key]
        idx = torch.tensor(ids, device=device)
        if key == 'rational':
            coeffs = np.stack([_rational_coeffs(cameras[i]) for i in ids])
        else:
            coeffs = np.stack([cameras[i].D for i in ids])
        c = torch.as_tensor(coeffs, device=device).to(dtype)
        rows = torch.tensor([row_of[i] for i in ids], device=device)
        xi, yi = x_all[rows], y_all[rows]
        xd, yd = distort(xi, yi, c)
        fold = torch.tensor([_fold_radius(cameras[i]) for i in ids], device=device, dtype=dtype)[:, None]
        radius = torch.sqrt(xi * xi + yi * yi)
        if key == 'equidistant':
            radius = torch.atan(radius)
        valid[idx] &= radius <= fold
        K = torch.as_tensor(np.stack([cameras[i].K for i in ids]), device=device).to(dtype)
        hom = torch.stack([xd, yd, torch.ones_like(xd)], dim=-1)
        pix = torch.einsum('mij,mnj->mni', K, hom)
        uv[idx] = pix[..., :2] / pix[..., 2:3]
        valid[idx] &= torch.isfinite(uv[idx]).all(dim=-1)

    hw = torch.tensor(sizes, dtype=dtype, device=device)  # (M, 2) = (H, W)
    u, v = uv[..., 0], uv[..., 1]
    inside = (u >= -0.5) & (u < hw[:, 1:2] - 0.5) & (v >= -0.5) & (v < hw[:, 0:1] - 0.5)
    in_image = valid & inside
    if not all_finite:
        in_image &= finite[None]
        depth = torch.where(finite[None], depth, torch.full_like(depth, float('nan')))
    return Projection(uv=uv, depth=depth, in_image=in_image, image_sizes=sizes)


def project_frame(frame: Frame, device: str | torch.device = 'cpu', max_range: float | None = None,
                  min_depth: float = 0.1) -> Projection:
    """:func:`project_points` for all cameras of a :class:`~perception_nodes.frame.Frame`."""
    points = torch.as_tensor(frame.points, device=device)
    cams = [view.model for view in frame.cameras]
    if cams:
        T = torch.as_tensor(np.stack([view.T_cam_lidar for view in frame.cameras]), device=device)
    else:
        T = torch.zeros(0, 4, 4, device=device)
    return project_points(points, cams, T, max_range=max_range, min_depth=min_depth)
