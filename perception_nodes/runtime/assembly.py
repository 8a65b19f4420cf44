"""A synchronized message set -> ``Frame``: decode, check, look up extrinsics; count what is bad.

Policy (what the nodes promise):
- malformed cloud: the set is skipped (counted ``bad_cloud``);
- undecodable image, missing or bad CameraInfo: that camera is left out of the frame and listed in
  ``Frame.missing_cameras`` (counted ``bad_image`` / ``missing_camera_info`` / ``bad_camera_info``);
- no LiDAR -> camera transform at the cloud stamp: the set is skipped (counted ``tf_failures``).

Per-camera time offsets: the node subtracts ``offset`` from each image stamp before synchronizing
(``shift_stamp``), so images whose clocks lead the LiDAR still match; the frame gets the true stamp back.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from perception_nodes.frame import CameraView, Frame
from perception_nodes.io.camera_info import camera_model_from_msg
from perception_nodes.io.image import decode_image
from perception_nodes.io.messages import MessageTypes
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import ns_to_stamp, stamp_to_ns
from perception_nodes.runtime import stats as counters
from perception_nodes.runtime.extrinsics import ExtrinsicsCache, TransformUnavailable
from perception_nodes.runtime.params import CameraInput
from perception_nodes.runtime.stats import RuntimeStats

INTENSITY_FIELDS = ('intensity', 'i', 'reflectivity')


@dataclass
class SyncedSet:
    """What the synchronizer hands over: one cloud and one image per configured camera (in order)."""

    cloud: Any
    images: Sequence[Any] = ()
    infos: dict[str, Any] = field(default_factory=dict)   # camera name -> latest CameraInfo (or absent)


def shift_stamp(msg: Any, delta_ns: int, msgs: MessageTypes) -> Any:
    """Move ``msg.header.stamp`` by ``delta_ns`` in place (returns ``msg``)."""
    if delta_ns:
        msg.header.stamp = ns_to_stamp(stamp_to_ns(msg.header.stamp) + int(delta_ns), msgs)
    return msg


class CameraInfoCache:
    """Latest CameraInfo per camera (CameraInfo is latched by most drivers; it is not synchronized)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._infos: dict[str, Any] = {}

    def update(self, camera: str, msg: Any) -> None:
        with self._lock:
            self._infos[camera] = msg

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._infos)


def cloud_arrays(msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 3) float32 finite points and (N,) float32 intensity (None without such a field)."""
    names = [f.name for f in msg.fields]
    for required in ('x', 'y', 'z'):
        if required not in names:
            raise ValueError(f'cloud has no {required!r} field (fields: {names})')
    intensity_name = next((n for n in INTENSITY_FIELDS if n in names), None)
    wanted = ['x', 'y', 'z'] + ([intensity_name] if intensity_name else [])
    pts = read_points(msg, wanted)
    xyz = np.stack([pts['x'], pts['y'], pts['z']], axis=1).astype(np.float32)
    keep = np.isfinite(xyz).all(axis=1)
    xyz = xyz[keep]
    intensity = None
    if intensity_name:
        intensity = np.nan_to_num(np.asarray(pts[intensity_name], dtype=np.float32)[keep])
    return np.ascontiguousarray(xyz), intensity


class FrameAssembler:
    """Builds a ``Frame`` from a ``SyncedSet`` (None when the set must be skipped)."""

    def __init__(self, cameras: Sequence[CameraInput], extrinsics: ExtrinsicsCache,
                 stats: RuntimeStats) -> None:
        self.cameras = list(cameras)
        self.extrinsics = extrinsics
        self.stats = stats

    def assemble(self, synced: SyncedSet, index: int = 0) -> Frame | None:
        cloud = synced.cloud
        try:
            stamp_ns = stamp_to_ns(cloud.header.stamp)
            lidar_frame = str(cloud.header.frame_id)
            if not lidar_frame:
                raise ValueError('cloud header has an empty frame_id')
            points, intensity = cloud_arrays(cloud)
        except Exception as exc:  # malformed messages raise many kinds of errors; all are "bad cloud"
            self.stats.count(counters.BAD_CLOUD, problem=f'{type(exc).__name__}: {exc}')
            return None
        if len(synced.images) != len(self.cameras):
            raise ValueError(f'{len(synced.images)} images for {len(self.cameras)} configured cameras')
        views: list[CameraView] = []
        missing: list[str] = []
        for cam, image_msg in zip(self.cameras, synced.images):
            view = self._camera(cam, image_msg, synced.infos.get(cam.name), lidar_frame, stamp_ns)
            if view is None:
                missing.append(cam.name)
            elif view is _SKIP_FRAME:
                return None
            else:
                views.append(view)
        return Frame(stamp_ns=stamp_ns, frame_id=lidar_frame, points=points, intensity=intensity,
                     cameras=views, index=index, missing_cameras=missing)

    def _camera(self, cam: CameraInput, image_msg: Any, info: Any, lidar_frame: str, stamp_ns: int) -> Any:
        if info is None:
            self.stats.count(counters.MISSING_CAMERA_INFO,
                             problem=f'no CameraInfo yet on {cam.info_topic} for camera {cam.name!r}')
            return None
        try:
            model = camera_model_from_msg(info)
        except Exception as exc:
            self.stats.count(counters.BAD_CAMERA_INFO, problem=f'{cam.name}: {type(exc).__name__}: {exc}')
            return None
        try:
            image = decode_image(image_msg)
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f'decoded image has shape {image.shape}, expected (H, W, 3)')
            if (image.shape[1], image.shape[0]) != (model.width, model.height):
                raise ValueError(f'image is {image.shape[1]}x{image.shape[0]} but CameraInfo says '
                                 f'{model.width}x{model.height}')
            image_stamp = stamp_to_ns(image_msg.header.stamp) + cam.time_offset_ns
        except Exception as exc:
            self.stats.count(counters.BAD_IMAGE, problem=f'{cam.name}: {type(exc).__name__}: {exc}')
            return None
        camera_frame = model.frame_id or str(image_msg.header.frame_id)
        try:
            T = self.extrinsics.get(camera_frame, lidar_frame, stamp_ns)
        except TransformUnavailable as exc:
            self.stats.count(counters.TF_FAILURES, problem=str(exc))
            return _SKIP_FRAME
        return CameraView(name=cam.name, image=image, model=model, T_cam_lidar=T, stamp_ns=image_stamp)


_SKIP_FRAME = object()
