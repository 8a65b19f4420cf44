"""One-stop synthetic frames: a scene, a LiDAR sweep and KITTI-like cameras with ground truth."""
from __future__ import annotations

import math

import numpy as np
import torch

from perception_nodes.frame import CameraModel, CameraView, Frame
from perception_nodes.geometry.projection import project_points
from perception_nodes.geometry.sim.camera import first_surface_visible, render_camera
from perception_nodes.geometry.sim.lidar import LidarBeamModel, render_lidar
from perception_nodes.geometry.sim.scene import Scene, make_scene

KITTI_IMAGE_SIZE = (375, 1242)
SMALL_IMAGE_SIZE = (188, 621)
LIDAR_HEIGHT = 1.73
# KITTI camera 2 relative to the Velodyne (x forward, y left, z up): 0.27 m ahead, 0.06 m left, 0.08 m lower.
CAMERA_OFFSET = (0.27, 0.06, -0.08)
# optical axes of the camera ring: camera frame (x right, y down, z forward) in a forward-looking frame
_R_FWD_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def camera_yaws(num_cameras: int) -> list[float]:
    """Yaw (radians, left positive) of each camera: front, front-left, front-right, back-left, ... ."""
    if num_cameras <= 6:
        return [math.radians(a) for a in (0, 60, -60, 120, -120, 180)[:num_cameras]]
    return [2 * math.pi * i / num_cameras for i in range(num_cameras)]


def kitti_like_camera(image_size: tuple[int, int] = KITTI_IMAGE_SIZE,
                      frame_id: str = 'camera') -> CameraModel:
    """KITTI camera 2's intrinsics scaled to ``image_size`` (H, W) (~81 degree horizontal field of view)."""
    h, w = int(image_size[0]), int(image_size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f'image_size must be positive, got {image_size}')
    f = 721.5377 * w / 1242.0
    K = np.array([[f, 0.0, 609.5593 * w / 1242.0], [0.0, f, 172.854 * h / 375.0], [0.0, 0.0, 1.0]])
    return CameraModel(frame_id=frame_id, width=w, height=h, K=K, D=np.zeros(5), distortion_model='plumb_bob')


def mount(yaw: float, offset=CAMERA_OFFSET) -> np.ndarray:
    """T_lidar_cam of a camera at ``offset`` rotated by ``yaw`` about the LiDAR's z axis."""
    c, s = math.cos(yaw), math.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = rz @ _R_FWD_CAM
    T[:3, 3] = rz @ np.asarray(offset, dtype=np.float64)
    return T


def _image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, str):
        sizes = {'kitti': KITTI_IMAGE_SIZE, 'small': SMALL_IMAGE_SIZE, 'tiny': (94, 311)}
        if image_size not in sizes:
            raise ValueError(f'image_size must be (H, W) or one of {sorted(sizes)}, got {image_size!r}')
        return sizes[image_size]
    return int(image_size[0]), int(image_size[1])


def make_sim_frame(seed: int, num_cameras: int = 1, image_size=KITTI_IMAGE_SIZE,
                   beam_model: LidarBeamModel | None = None, scene: Scene | None = None,
                   lidar_height: float = LIDAR_HEIGHT, camera_offset=CAMERA_OFFSET,
                   yaws: list[float] | None = None, visibility_tolerance: float = 0.02) -> Frame:
    """Make a synthetic :class:`Frame`.

    Points in the LiDAR frame (x forward, y left, z up; ground at
    ``-lidar_height``), ``labels`` = class ids into ``SIM_CLASSES``, ``instances`` (0 = ground), and one
    :class:`CameraView` per camera with ``truth`` = {'class', 'instance', 'depth' (H, W) rasters,
    'visible' (N,) bool: in the image and the first surface along the camera ray}.

    ``image_size`` is (H, W) or 'kitti' (375x1242), 'small' (188x621), 'tiny' (94x311).
    """
    size = _image_size(image_size)
    scene = scene if scene is not None else make_scene(seed)
    origin = np.array([0.0, 0.0, lidar_height])
    scan = render_lidar(scene, beam_model, origin=origin, seed=seed)
    points = (scan.points - origin).astype(np.float32)
    T_world_lidar = np.eye(4)
    T_world_lidar[:3, 3] = origin
    yaws = camera_yaws(num_cameras) if yaws is None else list(yaws)
    views = []
    for i, yaw in enumerate(yaws):
        T_lidar_cam = mount(yaw, camera_offset)
        T_cam_lidar = np.linalg.inv(T_lidar_cam)
        model = kitti_like_camera(size, frame_id=f'camera_{i}')
        T_world_cam = T_world_lidar @ T_lidar_cam
        render = render_camera(scene, model, T_world_cam)
        proj = project_points(torch.from_numpy(points), [model], torch.from_numpy(T_cam_lidar)[None])
        in_image = proj.in_image[0].numpy()
        visible = np.zeros(len(points), dtype=bool)
        if in_image.any():
            visible[in_image] = first_surface_visible(scene, T_world_cam[:3, 3],
                                                      scan.surface_points[in_image], visibility_tolerance)
        views.append(CameraView(name=f'camera_{i}', image=render.rgb, model=model, T_cam_lidar=T_cam_lidar,
                                stamp_ns=int(seed) * 100_000_000,
                                truth={'class': render.class_image, 'instance': render.instance_image,
                                       'depth': render.depth, 'visible': visible}))
    return Frame(stamp_ns=int(seed) * 100_000_000, frame_id='velodyne', points=points,
                 intensity=scan.intensity, cameras=views, labels=scan.classes, instances=scan.instances,
                 index=int(seed))
