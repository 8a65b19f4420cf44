"""Convert KITTI raw / KITTI object / SemanticKITTI folders into a ROS 2 bag.

Topics (frames are stamped ``i / rate_hz`` seconds; bag log time = header stamp):

- ``/velodyne_points`` sensor_msgs/PointCloud2, frame ``velodyne``: x, y, z, intensity (float32)
  and, with SemanticKITTI ``.label`` files, ``label`` (uint16 semantic id) and ``instance`` (uint16);
- ``/camera_2/image_raw`` sensor_msgs/Image rgb8 and ``/camera_2/camera_info`` (K = P2[:, :3],
  P = P2 with its baseline term, no distortion, frame ``camera_2``), when the layout has images;
- the extrinsics as the tf edge ``velodyne -> camera_2`` carrying ``T_velo_cam = inv(T_cam_velo)``,
  ``T_cam_velo = R0_rect · Tr_velo_to_cam``, so ``lookup('camera_2', 'velodyne')`` gives ``T_cam_velo``
  and ``P2 · T_cam_velo`` projects LiDAR points into image 2. ``camera_2`` is thus the rectified
  reference camera frame, as ``CameraModel`` documents for KITTI's P2.

One calibration for all frames (KITTI raw, a SemanticKITTI sequence): one ``/tf_static`` message.
Several (the KITTI object benchmark: every frame from another drive, another calibration and even
image size): the edge is published on ``/tf`` at every frame's stamp, and a CameraInfo accompanies
every image, so each frame's lookup at its own stamp returns its own calibration exactly (a static
transform would be overwritten by the next frame's before a streaming reader is done with it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception_nodes.io.bags import BagWriter
from perception_nodes.io.camera_info import camera_info_msg
from perception_nodes.io.image import rgb_to_image_msg
from perception_nodes.io.kitti import (KittiCalib, KittiFrameFiles, find_kitti_frames, read_calib,
                                       read_image_rgb, read_semantic_labels, read_velodyne)
from perception_nodes.io.pointcloud2 import FLOAT32, UINT16, create_cloud, xyz_fields
from perception_nodes.io.stamps import header
from perception_nodes.io.tf_buffer import tf_message, transform_stamped_msg

__all__ = ['LIDAR_TOPIC', 'IMAGE_TOPIC', 'CAMERA_INFO_TOPIC', 'LIDAR_FRAME', 'CAMERA_FRAME', 'KittiBagInfo',
           'kitti_layout', 'kitti_to_bag']

LIDAR_TOPIC = '/velodyne_points'
IMAGE_TOPIC = '/camera_2/image_raw'
CAMERA_INFO_TOPIC = '/camera_2/camera_info'
LIDAR_FRAME = 'velodyne'
CAMERA_FRAME = 'camera_2'
CLOUD_FIELDS = xyz_fields([('intensity', FLOAT32)])
LABELLED_FIELDS = xyz_fields([('intensity', FLOAT32), ('label', UINT16), ('instance', UINT16)])


@dataclass
class KittiBagInfo:
    path: Path
    layout: str                    # 'raw' | 'object' | 'semantic'
    frames: int
    storage: str
    rate_hz: float
    topics: dict[str, int] = field(default_factory=dict)   # topic -> messages written
    calibrations: int = 0          # distinct calibrations among the converted frames
    tf_mode: str = 'none'          # 'static' (/tf_static once), 'per_frame' (/tf every frame) or 'none'
    points: int = 0                # LiDAR points written, all frames


def kitti_layout(root: str | os.PathLike) -> str:
    """'raw', 'object' or 'semantic' (ValueError for anything else)."""
    root = Path(root)
    if (root / 'velodyne_points' / 'data').is_dir():
        return 'raw'
    if (root / 'training' / 'velodyne').is_dir():
        return 'object'
    if (root / 'velodyne').is_dir() and (root / 'calib').is_dir():
        return 'object'
    if (root / 'sequences').is_dir() or (root / 'velodyne').is_dir():
        return 'semantic'
    raise ValueError(f'{root}: not a KITTI raw, KITTI object or SemanticKITTI folder')


def _calib_key(calib: KittiCalib) -> bytes:
    return calib.P2.tobytes() + calib.T_cam_velo.tobytes()


def _cloud(files: KittiFrameFiles, stamp: int):
    scan = read_velodyne(files.velodyne)
    if files.label is None:
        return create_cloud(header(LIDAR_FRAME, stamp), CLOUD_FIELDS, scan), len(scan)
    semantic, instance = read_semantic_labels(files.label, len(scan))
    points = np.zeros(len(scan), dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4'),
                                        ('label', '<u2'), ('instance', '<u2')])
    for j, name in enumerate(('x', 'y', 'z', 'intensity')):
        points[name] = scan[:, j]
    points['label'], points['instance'] = semantic, instance
    return create_cloud(header(LIDAR_FRAME, stamp), LABELLED_FIELDS, points), len(scan)


def kitti_to_bag(src: str | os.PathLike, out: str | os.PathLike, rate_hz: float = 10.0,
                 storage: str = 'mcap', max_frames: int | None = None, progress: bool = False,
                 overwrite: bool = False) -> KittiBagInfo:
    """Convert the KITTI folder ``src`` into the ROS 2 bag ``out`` (written atomically)."""
    from tqdm import tqdm

    if not rate_hz > 0:
        raise ValueError(f'rate must be positive, got {rate_hz}')
    if max_frames is not None and max_frames < 1:
        raise ValueError(f'max_frames must be at least 1, got {max_frames}')
    layout = kitti_layout(src)
    frames = find_kitti_frames(src)[:max_frames]
    if not frames:
        raise ValueError(f'{src}: no velodyne scans found')
    calib_cache: dict[Path, KittiCalib] = {}
    calibs: list[KittiCalib | None] = []
    for f in frames:
        if f.image is not None and f.calib is None:
            raise ValueError(f'{src}: frame {f.name} has an image but no calibration file')
        if f.image is None or f.calib is None:
            calibs.append(None)
            continue
        if f.calib not in calib_cache:
            calib_cache[f.calib] = read_calib(f.calib)
        calibs.append(calib_cache[f.calib])
    distinct = {_calib_key(c) for c in calibs if c is not None}
    tf_mode = 'none' if not distinct else 'static' if len(distinct) == 1 else 'per_frame'
    info = KittiBagInfo(Path(out), layout, len(frames), storage, float(rate_hz), calibrations=len(distinct),
                        tf_mode=tf_mode)
    with BagWriter(out, storage=storage, overwrite=overwrite) as bag:
        if tf_mode == 'static':
            calib = next(c for c in calibs if c is not None)
            edge = transform_stamped_msg(LIDAR_FRAME, CAMERA_FRAME, np.linalg.inv(calib.T_cam_velo), 0)
            bag.write('/tf_static', 'tf2_msgs/msg/TFMessage', tf_message([edge]), 0)
        for i, (f, calib) in enumerate(tqdm(list(zip(frames, calibs)), desc='kitti-to-bag', unit='frame',
                                            disable=not progress)):
            stamp = round(i * 1e9 / rate_hz)
            if calib is not None and f.image is not None:
                if tf_mode == 'per_frame':
                    T_velo_cam = np.linalg.inv(calib.T_cam_velo)
                    edge = transform_stamped_msg(LIDAR_FRAME, CAMERA_FRAME, T_velo_cam, stamp)
                    bag.write('/tf', 'tf2_msgs/msg/TFMessage', tf_message([edge]), stamp)
                rgb = read_image_rgb(f.image)
                model = calib.camera_model(rgb.shape[1], rgb.shape[0], frame_id=CAMERA_FRAME)
                bag.write(CAMERA_INFO_TOPIC, 'sensor_msgs/msg/CameraInfo', camera_info_msg(model, stamp),
                          stamp)
                bag.write(IMAGE_TOPIC, 'sensor_msgs/msg/Image',
                          rgb_to_image_msg(rgb, header(CAMERA_FRAME, stamp)), stamp)
            cloud, n = _cloud(f, stamp)
            info.points += n
            bag.write(LIDAR_TOPIC, 'sensor_msgs/msg/PointCloud2', cloud, stamp)
        info.topics = dict(bag.counts)
    return info
