"""Sample input bags for the main job (``ovp demo``), the replay tests and pseudo-labelling.

- :func:`write_sim_bag`: synthetic-world frames (perception_nodes.geometry.sim) as a ROS 2 bag:
  ``/velodyne_points`` (PointCloud2 x, y, z, intensity in frame ``velodyne``), per camera
  ``/camera_<i>/image_raw`` (rgb8 Image) + ``/camera_<i>/camera_info``, and ``/tf_static``
  (``velodyne`` -> ``camera_<i>``), 10 Hz from ``start_ns``; with ``truth=True`` the cloud also carries the
  ground truth as ``label`` (uint16, the ``SIM_CLASSES`` index) and ``instance`` (uint32, 0 = ground), the
  fields ``ovp eval`` reads (as ``ovp kitti-to-bag`` writes them for SemanticKITTI), and each camera its
  mono16 truth rasters ``/camera_<i>/truth/class`` and ``/camera_<i>/truth/instance`` (same stamps, 65535 =
  none: ground truth for synthetic data sets only, see ``perception_nodes.assembly``); with ``poses``,
  ``/tf`` (``fixed_frame`` -> ``velodyne``) per frame.
- :func:`write_rgbd_room_bag`: posed RGB-D views of a synthetic room (``geometry.sim.room``): 32FC1 depth
  on ``/camera/depth/image_rect`` + its CameraInfo, the registered RGB camera (with truth rasters) and
  ``/tf`` ``map`` -> ``camera`` per view (an indoor RGB-D bag for ``inputs.depth_topic``).
- :func:`write_kitti_sample_bag`: the first frames of the KITTI raw sample (``kitti_to_bag``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from perception_nodes.assembly import TRUTH_KINDS, TRUTH_NONE
from perception_nodes.frame import Frame
from perception_nodes.io.bags import BagWriter
from perception_nodes.io.camera_info import camera_info_msg
from perception_nodes.io.image import rgb_to_image_msg
from perception_nodes.io.pointcloud2 import FLOAT32, UINT16, UINT32, create_cloud, xyz_fields
from perception_nodes.io.stamps import header
from perception_nodes.io.tf_buffer import tf_message, transform_stamped_msg

SIM_LIDAR_TOPIC = '/velodyne_points'
START_NS = 1_700_000_000_000_000_000
PERIOD_NS = 100_000_000


def sim_frames(num_frames: int, num_cameras: int = 1, image_size: str | tuple[int, int] = 'small',
               beams: tuple[int, int] = (32, 1024), first_seed: int = 0) -> list[Frame]:
    """``num_frames`` synthetic frames (seeds ``first_seed`` ...); ``beams`` = (beams, azimuth steps)."""
    from perception_nodes.geometry.sim import LidarBeamModel, make_sim_frame
    model = LidarBeamModel(n_beams=int(beams[0]), n_azimuth=int(beams[1]))
    return [make_sim_frame(first_seed + i, num_cameras=num_cameras, image_size=image_size, beam_model=model)
            for i in range(num_frames)]


def truth_raster(ids: np.ndarray) -> np.ndarray:
    """(H, W) uint16 mono16 raster of integer ids: -1 (none) -> 65535; ids above 65534 are refused."""
    a = np.asarray(ids).astype(np.int64)
    if a.size and a.max() >= TRUTH_NONE:
        raise ValueError(f'truth ids must be below {TRUTH_NONE}, got {a.max()}')
    return np.where(a < 0, TRUTH_NONE, a).astype(np.uint16)


def _write_truth(bag: BagWriter, ns: str, view: Any, hdr: Any, stamp: int) -> None:
    for kind in TRUTH_KINDS:
        if kind in view.truth:
            raster = rgb_to_image_msg(truth_raster(view.truth[kind]), hdr, bag.msgs, encoding='mono16')
            bag.write(f'{ns}/truth/{kind}', 'sensor_msgs/msg/Image', raster, stamp)


def write_sim_bag(out: str | os.PathLike, frames: Sequence[Frame], storage: str = 'mcap',
                  start_ns: int = START_NS, overwrite: bool = False, truth: bool = False,
                  poses: Sequence[np.ndarray] | None = None, fixed_frame: str = 'odom') -> dict[str, int]:
    """Write synthetic frames as a bag (see the module docstring); returns message counts per topic.

    The frames are restamped ``start_ns + i * 100 ms``. ``truth``: also write the ground truth (each
    point's class and instance as ``label`` / ``instance`` fields, each camera's truth rasters).
    ``poses``: one (4, 4) ``T_fixed_lidar`` per frame, written to /tf.
    """
    if not frames:
        raise ValueError('write_sim_bag needs at least one frame')
    if poses is not None and len(poses) != len(frames):
        raise ValueError(f'{len(poses)} poses for {len(frames)} frames')
    extra = [('intensity', FLOAT32)] + ([('label', UINT16), ('instance', UINT32)] if truth else [])
    fields = xyz_fields(extra)
    with BagWriter(Path(out), storage=storage, overwrite=overwrite) as bag:
        msgs = bag.msgs
        first = frames[0]
        transforms = [transform_stamped_msg(first.frame_id, v.model.frame_id, np.linalg.inv(v.T_cam_lidar),
                                            start_ns, msgs) for v in first.cameras]
        bag.write('/tf_static', 'tf2_msgs/msg/TFMessage', tf_message(transforms, msgs), start_ns)
        for i, frame in enumerate(frames):
            stamp = start_ns + i * PERIOD_NS
            if poses is not None:
                edge = transform_stamped_msg(fixed_frame, frame.frame_id, np.asarray(poses[i]), stamp, msgs)
                bag.write('/tf', 'tf2_msgs/msg/TFMessage', tf_message([edge], msgs), stamp)
            for view in frame.cameras:
                ns = f'/{view.model.frame_id}'
                hdr = header(view.model.frame_id, stamp, msgs)
                bag.write(f'{ns}/camera_info', 'sensor_msgs/msg/CameraInfo',
                          camera_info_msg(view.model, stamp, msgs), stamp)
                bag.write(f'{ns}/image_raw', 'sensor_msgs/msg/Image', rgb_to_image_msg(view.image, hdr, msgs),
                          stamp)
                if truth:
                    _write_truth(bag, ns, view, hdr, stamp)
            intensity = frame.intensity if frame.intensity is not None else np.zeros(frame.num_points)
            points = np.concatenate([frame.points, np.asarray(intensity, np.float32)[:, None]], axis=1)
            if truth:
                points = _with_truth(points, frame)
            bag.write(SIM_LIDAR_TOPIC, 'sensor_msgs/msg/PointCloud2',
                      create_cloud(header(frame.frame_id, stamp, msgs), fields, points, msgs), stamp)
        return dict(bag.counts)


def write_rgbd_room_bag(out: str | os.PathLike, room: Any, num_views: int = 4,
                        image_size: tuple[int, int] = (120, 160), storage: str = 'mcap',
                        start_ns: int = START_NS, overwrite: bool = False) -> dict[str, int]:
    """Write posed RGB-D views of a synthetic room (module docstring); returns message counts per topic.

    View k (``geometry.sim.room.room_view``) is stamped ``start_ns + k * 100 ms``: its depth raster (z
    along the optical axis, metres; misses NaN) as 32FC1 on ``/camera/depth/image_rect``, its RGB image on
    ``/camera/rgb/image_raw`` with truth rasters, one CameraInfo per image topic (both frame ``camera``:
    registered) and ``/tf`` ``map`` -> ``camera`` (the room frame is ``map``).
    """
    from perception_nodes.geometry.sim.room import room_view
    with BagWriter(Path(out), storage=storage, overwrite=overwrite) as bag:
        msgs = bag.msgs
        for k in range(int(num_views)):
            stamp = start_ns + k * PERIOD_NS
            view = room_view(room, k, num_views, image_size)
            view.model.frame_id = 'camera'
            hdr = header('camera', stamp, msgs)
            edge = transform_stamped_msg('map', 'camera', np.linalg.inv(view.T_cam_lidar), stamp, msgs)
            bag.write('/tf', 'tf2_msgs/msg/TFMessage', tf_message([edge], msgs), stamp)
            depth = np.where(np.isfinite(view.truth['depth']), view.truth['depth'], np.nan).astype(np.float32)
            for ns in ('/camera/depth', '/camera/rgb'):
                bag.write(f'{ns}/camera_info', 'sensor_msgs/msg/CameraInfo',
                          camera_info_msg(view.model, stamp, msgs), stamp)
            bag.write('/camera/depth/image_rect', 'sensor_msgs/msg/Image',
                      rgb_to_image_msg(depth, hdr, msgs, encoding='32FC1'), stamp)
            bag.write('/camera/rgb/image_raw', 'sensor_msgs/msg/Image',
                      rgb_to_image_msg(view.image, hdr, msgs), stamp)
            _write_truth(bag, '/camera/rgb', view, hdr, stamp)
        return dict(bag.counts)


def _with_truth(xyzi: np.ndarray, frame: Frame) -> np.ndarray:
    """Structured x, y, z, intensity, label, instance rows of a frame with ground truth."""
    if frame.labels is None or frame.instances is None:
        raise ValueError('write_sim_bag(truth=True) needs frames with labels and instances')
    labels, instances = np.asarray(frame.labels), np.asarray(frame.instances)
    if labels.size and (labels.min() < 0 or labels.max() > 0xFFFF):
        raise ValueError('ground-truth labels must fit uint16 (>= 0)')
    if instances.size and instances.min() < 0:
        raise ValueError('ground-truth instances must be >= 0')
    out = np.zeros(len(xyzi), dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4'),
                                     ('label', '<u2'), ('instance', '<u4')])
    for i, name in enumerate(('x', 'y', 'z', 'intensity')):
        out[name] = xyzi[:, i]
    out['label'] = labels
    out['instance'] = instances
    return out


def write_kitti_sample_bag(src: str | os.PathLike, out: str | os.PathLike, max_frames: int = 3,
                           storage: str = 'mcap', overwrite: bool = False):
    """Write the first ``max_frames`` frames of a KITTI folder as a bag.

    See ``perception_nodes.io.kitti_bag``.
    """
    from perception_nodes.io.kitti_bag import kitti_to_bag
    return kitti_to_bag(src, out, storage=storage, max_frames=max_frames, overwrite=overwrite)
