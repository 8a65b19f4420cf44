"""Depth images -> 3D points in the camera optical frame (the depth_image_proc convention), vectorised.

Depth encodings (what ``io.image.decode_image`` returns for sensor_msgs/Image ``16UC1`` / ``32FC1`` and
for ``compressedDepth`` CompressedImages):

- ``uint16``: millimetres (``16UC1``), 0 = no measurement;
- ``float32`` / ``float64``: metres (``32FC1``), NaN = no measurement; 0, negative and infinite values
  are invalid too (depth_image_proc keeps any finite float, which turns 0 into a point at the centre).

The image must be rectified (``image_rect``, as depth_image_proc's ``point_cloud_xyz`` needs): the camera
model's distortion coefficients are zero and ``P`` describes the projection. Pixel centres are at integer
coordinates (image_geometry). A pixel ``(u, v)`` with depth ``z`` is the point ``X`` with ``Z = z`` that
``P`` projects onto ``(u, v)``: ``X = P[:, :3]^-1 ([u z, v z, z] - P[:, 3])``. For a depth camera
(``P = [K | 0]``) that is depth_image_proc's ``x = (u - cx) z / fx``, ``y = (v - cy) z / fy``; a stereo
``P`` with a baseline term is inverted consistently with how ``geometry.projection`` projects.
"""
from __future__ import annotations

import numpy as np

from perception_nodes.frame import CameraModel

__all__ = ['MM_PER_M', 'depth_to_points', 'depth_in_meters']

MM_PER_M = 1000.0


def depth_in_meters(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((H, W) float64 metres, (H, W) bool valid) from a uint16 (mm) or float (m) depth image."""
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise ValueError(f'depth image must be (H, W), got shape {d.shape}')
    if d.dtype == np.uint16:
        return d.astype(np.float64) / MM_PER_M, d > 0
    if d.dtype in (np.float32, np.float64):
        z = d.astype(np.float64)
        with np.errstate(invalid='ignore'):
            return z, np.isfinite(z) & (z > 0)
    raise ValueError(f'depth image of dtype {d.dtype}: expected uint16 (16UC1, mm) or float32 (32FC1, m)')


def depth_to_points(depth: np.ndarray, camera: CameraModel, rgb: np.ndarray | None = None,
                    max_depth: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 3) float32 points in the camera's optical frame for the valid pixels, row-major order.

    ``rgb``: an (H, W, 3) image registered to the depth image (same size): the colour of each point is
    returned as (N, 3) (its dtype kept), else None. ``max_depth`` (metres): farther pixels are dropped.
    """
    z, valid = depth_in_meters(depth)
    h, w = z.shape
    if (w, h) != (camera.width, camera.height):
        raise ValueError(f'depth image is {w}x{h} but camera {camera.frame_id!r} is '
                         f'{camera.width}x{camera.height}')
    if not camera.is_rectified:
        raise ValueError(f'camera {camera.frame_id!r} has {camera.distortion_model} distortion: depth images '
                         'must be rectified (image_rect) to turn into points')
    P = np.asarray(camera.P, dtype=np.float64)
    if not np.allclose(P[2], [0.0, 0.0, 1.0, 0.0]):
        raise ValueError(f'camera {camera.frame_id!r}: P third row is {P[2].tolist()}, expected [0, 0, 1, 0]')
    if abs(np.linalg.det(P[:, :3])) < 1e-12:
        raise ValueError(f'camera {camera.frame_id!r}: P[:, :3] is singular')
    if max_depth is not None:
        if not max_depth > 0:
            raise ValueError(f'max_depth must be positive, got {max_depth}')
        valid &= z <= max_depth
    colors = None
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape[:2] != (h, w) or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f'rgb image of shape {rgb.shape} is not registered to the {w}x{h} depth image '
                             f'(expected ({h}, {w}, 3))')
    rows, cols = np.nonzero(valid)
    zv = z[rows, cols]
    homogeneous = np.stack([cols * zv, rows * zv, zv], axis=1) - P[:, 3]
    points = (homogeneous @ np.linalg.inv(P[:, :3]).T).astype(np.float32)
    if rgb is not None:
        colors = rgb[rows, cols]
    return points, colors
