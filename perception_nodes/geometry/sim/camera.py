"""Render pinhole cameras of a synthetic :class:`Scene`; per-point camera visibility truth."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from perception_nodes.frame import CameraModel
from perception_nodes.geometry.sim.scene import SIM_COLORS, SKY_COLOR, Scene

_LIGHT = np.array([0.4, 0.3, 0.87]) / np.linalg.norm([0.4, 0.3, 0.87])


@dataclass
class CameraRender:
    """What a camera sees: all (H, W); sky has depth inf and class / instance -1."""

    rgb: np.ndarray             # uint8 (H, W, 3): flat class colours, Lambert shading, per-instance tint
    depth: np.ndarray           # float32 z-depth in the camera frame
    class_image: np.ndarray     # int64
    instance_image: np.ndarray  # int64


def _check_pinhole(camera: CameraModel) -> np.ndarray:
    if camera.width <= 0 or camera.height <= 0:
        raise ValueError(f'camera {camera.frame_id!r} has a zero-size image {camera.width}x{camera.height}')
    if not camera.is_rectified or np.any(camera.P[:, 3]):
        raise ValueError('render_camera supports undistorted pinhole cameras with P = [K | 0] only')
    K = camera.K
    if abs(np.linalg.det(K)) < 1e-12:
        raise ValueError(f'camera {camera.frame_id!r} has a singular K')
    return K


def _as_pose(T_world_cam) -> np.ndarray:
    T = np.asarray(T_world_cam, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f'T_world_cam must be a finite (4, 4) matrix, got shape {T.shape}')
    return T


def _tint(instance: np.ndarray) -> np.ndarray:
    """Deterministic brightness factor in [0.8, 1.2] per instance id (so neighbouring objects differ)."""
    return 0.8 + 0.4 * ((instance.astype(np.int64) * 2654435761) % 1000) / 999.0


def render_camera(scene: Scene, camera: CameraModel, T_world_cam) -> CameraRender:
    """Ray-cast one ray per pixel centre (OpenCV convention: pixel (r, c) centre at u = c, v = r)."""
    K = _check_pinhole(camera)
    T = _as_pose(T_world_cam)
    h, w = camera.height, camera.width
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing='ij')
    pix = np.stack([u.ravel(), v.ravel(), np.ones(h * w)], axis=0)
    rays_cam = np.linalg.solve(K, pix)
    rays_cam = rays_cam / rays_cam[2:3]                  # unit z: t along the ray is z-depth
    dirs = (T[:3, :3] @ rays_cam).T
    hit = scene.intersect(torch.tensor(T[:3, 3], dtype=torch.float32),
                          torch.tensor(dirs, dtype=torch.float32))
    depth = hit.t.numpy().reshape(h, w).astype(np.float32)
    cls = hit.cls.numpy().reshape(h, w)
    inst = hit.instance.numpy().reshape(h, w)
    shade = np.clip(hit.normal.numpy() @ _LIGHT, 0, 1).reshape(h, w)
    base = SIM_COLORS[np.clip(cls, 0, None)].astype(np.float64)
    factor = (0.35 + 0.65 * shade) * np.where(inst > 0, _tint(inst), 1.0)
    rgb = np.clip(base * factor[..., None], 0, 255)
    sky = cls < 0
    rgb[sky] = SKY_COLOR
    return CameraRender(rgb=rgb.astype(np.uint8), depth=depth, class_image=cls.astype(np.int64),
                        instance_image=inst.astype(np.int64))


def first_surface_visible(scene: Scene, camera_center, surface_points: np.ndarray,
                          tolerance: float = 0.02) -> np.ndarray:
    """Flag the points that are the first surface along their camera ray.

    (N,) bool: the segment camera centre -> point meets no surface more than ``tolerance`` metres before
    the point, i.e. the point is the first surface along its camera ray (in-image-ness is not checked).
    """
    pts = torch.as_tensor(np.asarray(surface_points, dtype=np.float32)).reshape(-1, 3)
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    c = torch.as_tensor(np.asarray(camera_center, dtype=np.float32)).reshape(3)
    d = pts - c
    dist = torch.linalg.norm(d, dim=1).clamp_min(1e-6)
    hit = scene.intersect(c, d)
    return (hit.t >= 1.0 - tolerance / dist).numpy()
