"""The frame assembler: one synchronized message set -> :class:`~perception_nodes.frame.Frame`.

The one place where messages become frames, for bags (``io.bag_source`` synchronizes a bag's messages) and
for the ROS nodes (message_filters synchronizes live topics) alike. The rules, documented once:

- **Cloud**: the header stamp must be a valid time (``sec >= 0``, ``0 <= nanosec < 1e9``) and ``frame_id``
  non-empty; the leading ``/`` of a frame id is stripped (ROS 1 style), and ``inputs.lidar_frame`` replaces
  it when set. ``x, y, z`` are required; points with a non-finite coordinate are dropped (counted
  ``nonfinite_points``). Intensity comes from the first of the fields :data:`INTENSITY_FIELDS`
  (``intensity``, ``i``, ``reflectivity``); non-finite intensities (and values beyond float32) become 0.
  Ground-truth ``label`` and ``instance`` fields are carried into ``Frame.labels`` / ``Frame.instances``
  (evaluation, pseudo-labels) as int64 (integer fields, or float fields holding whole numbers); a field
  that cannot hold ids is left out (``bad_ground_truth``) and the frame goes on.
  A cloud that breaks these rules skips the frame (``bad_cloud``, with the reason).
- **Cameras**, each on its own: no image in the set (``camera/no_image``), no or a bad CameraInfo
  (``camera/no_camera_info``, ``camera/bad_camera_info``), no LiDAR-to-camera transform at the cloud stamp
  (``camera/no_transform``), or an image that cannot be decoded, is not RGB-like, or does not have the
  CameraInfo's size (``camera/bad_image``) drops **that camera**; the frame survives with the others and
  lists the dropped ones in ``Frame.missing_cameras``. The camera frame is the CameraInfo's frame_id, else
  the image's (leading ``/`` stripped). An image's size is checked against its CameraInfo from the message
  fields / the compressed header BEFORE decoding (a decompression bomb costs nothing), and it becomes the
  (H, W, 3) uint8 RGB the teacher sees by the one rule of ``io.image.to_teacher_rgb`` (mono replicated,
  16-bit scaled by its effective bit depth, float intensities stretched).
- **Time offsets**: a camera's ``time_offset_ns`` (image stamp minus LiDAR stamp of the same instant) is
  subtracted before synchronization; ``CameraView.stamp_ns`` keeps the image's own stamp.
- **Ego motion** (``inputs.fixed_frame``, e.g. ``odom``): ``T_cam_lidar = T(cam <- fixed at the image
  stamp) · T(fixed <- lidar at the cloud stamp)``, tf2's lookup through a fixed frame; without it, one
  lookup at the cloud stamp (right for rigidly mounted sensors triggered together).
- **Depth clouds** (``inputs.depth_topic``, offline): the cloud may be a rectified depth image
  (sensor_msgs/Image 16UC1 in mm or 32FC1 in m, or a compressedDepth CompressedImage) with its CameraInfo
  (``SyncedSet.cloud_info``); its valid pixels become the points in the depth camera's optical frame
  (``io.depth.depth_to_points``, the depth_image_proc convention), pixels beyond ``depth_max_range``
  (when > 0) dropped; the frame id is the CameraInfo's, else the image's. No CameraInfo, or one that does
  not fit the image, is a bad cloud. Depth clouds have no intensity.
- **Ground truth for synthetic data sets only**: per camera, optional (H, W) mono16 rasters (topics
  ``<image namespace>/truth/class`` and ``.../truth/instance``, :func:`truth_topics`, stamped like their
  image; 65535 = none) become ``CameraView.truth['class' | 'instance']`` int64 arrays with -1 for none.
  They exist so that synthetic teachers (``teacher.oracle``) and evaluations can run on bags of the
  synthetic world; a raster that does not decode or has another size than the image is left out
  (``camera/bad_truth``), the camera is kept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from perception_nodes import stats as reasons
from perception_nodes.frame import CameraView, Frame
from perception_nodes.io.camera_info import camera_model_from_msg
from perception_nodes.io.image import decode_image
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.stats import Stats

__all__ = ['INTENSITY_FIELDS', 'CameraInput', 'SyncedSet', 'StampShift', 'FrameAssembler', 'camera_inputs',
           'camera_info_topic', 'camera_name', 'normalize_frame_id', 'valid_stamp_ns', 'Lookup',
           'TRUTH_KINDS', 'TRUTH_NONE', 'BAD_TRUTH', 'truth_topics', 'decode_truth']

INTENSITY_FIELDS = ('intensity', 'i', 'reflectivity')
_NS = 1_000_000_000
TRUTH_KINDS = ('class', 'instance')     # synthetic ground-truth rasters per camera (module docstring)
TRUTH_NONE = 65535                      # mono16 value of "no class / instance" (-1)
BAD_TRUTH = 'camera/bad_truth'

# (target_frame, source_frame, stamp_ns) -> (4, 4) matrix taking source-frame points into the target frame.
Lookup = Callable[[str, str, int], np.ndarray]


@dataclass(frozen=True)
class CameraInput:
    """One configured camera: its topics, its name (overlay topic) and its time offset."""

    name: str
    image_topic: str
    info_topic: str
    time_offset_ns: int = 0

    @property
    def compressed(self) -> bool:
        """image_transport naming: ``.../compressed`` carries sensor_msgs/CompressedImage."""
        return self.image_topic.rstrip('/').endswith('/compressed')

    @property
    def image_type(self) -> str:
        return 'sensor_msgs/msg/CompressedImage' if self.compressed else 'sensor_msgs/msg/Image'


@dataclass
class SyncedSet:
    """What a synchronizer hands over: a cloud and, per configured camera, its image (None if none)."""

    cloud: Any
    images: Sequence[Any | None] = ()
    infos: Mapping[str, Any] = field(default_factory=dict)   # camera name -> latest CameraInfo
    truth: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # camera -> {kind: mono16 Image}
    cloud_info: Any = None                                   # CameraInfo of a depth-image cloud


class StampShift:
    """A message seen with its header stamp moved by ``-offset_ns`` (for synchronizers); ``original`` kept.

    Used to apply per-camera time offsets without modifying the received message.
    """

    def __init__(self, msg: Any, offset_ns: int, stamp_factory: Callable[[int], Any]) -> None:
        self.original = msg
        shifted = stamp_ns(msg.header.stamp) - int(offset_ns)
        self.header = type('ShiftedHeader', (), {'stamp': stamp_factory(shifted),
                                                 'frame_id': msg.header.frame_id})()


def unwrap(msg: Any) -> Any:
    """Return the received message behind a :class:`StampShift` (or the message itself)."""
    return getattr(msg, 'original', msg)


def stamp_ns(stamp: Any) -> int:
    """Nanoseconds of a header stamp; ValueError unless ``sec >= 0`` and ``0 <= nanosec < 1e9``."""
    try:
        sec, nanosec = (int(stamp.sec), int(stamp.nanosec)) if hasattr(stamp, 'sec') else \
            (int(stamp.secs), int(stamp.nsecs))
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f'not a time stamp: {stamp!r}') from None
    if sec < 0 or not 0 <= nanosec < _NS:
        raise ValueError(f'invalid stamp sec={sec} nanosec={nanosec} (needs sec >= 0, 0 <= nanosec < 1e9)')
    return sec * _NS + nanosec


def valid_stamp_ns(stamp: Any) -> int | None:
    """:func:`stamp_ns`, or None for an invalid stamp."""
    try:
        return stamp_ns(stamp)
    except ValueError:
        return None


def normalize_frame_id(frame_id: Any) -> str:
    """Return a tf2 frame id: the string without a leading ``/`` (ROS 1 style)."""
    return str(frame_id).strip().lstrip('/')


def camera_info_topic(image_topic: str) -> str:
    """Return the CameraInfo topic of: ``/cam/image_raw[/compressed]`` -> ``/cam/camera_info``."""
    topic = image_topic.rstrip('/')
    if topic.endswith('/compressed'):
        topic = topic[:-len('/compressed')]
    parent = topic.rsplit('/', 1)[0]
    return f'{parent}/camera_info'


def truth_topics(image_topic: str) -> dict[str, str]:
    """Return the synthetic ground-truth raster topics of a camera: ``<namespace>/truth/<kind>``.

    ``/camera_0/image_raw`` -> ``{'class': '/camera_0/truth/class', 'instance': '/camera_0/truth/instance'}``
    (the namespace is the one of :func:`camera_info_topic`).
    """
    parent = camera_info_topic(image_topic).rsplit('/', 1)[0]
    return {kind: f'{parent}/truth/{kind}' for kind in TRUTH_KINDS}


def decode_truth(msg: Any, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int64 ids of a mono16 truth raster (:data:`TRUTH_NONE` -> -1); ValueError if not (H, W)."""
    from perception_nodes.io.image import image_to_array
    if str(getattr(msg, 'encoding', '')) not in ('mono16', '16UC1'):
        raise ValueError(f'truth raster encoding {getattr(msg, "encoding", None)!r}: expected mono16')
    raw = image_to_array(msg, expected_size=tuple(shape))
    out = raw.astype(np.int64)
    out[raw == TRUTH_NONE] = -1
    return out


def camera_name(image_topic: str) -> str:
    """Return a topic token naming a camera: its image topic's namespace joined with ``_``.

    ``/kitti/camera_color_left/image_raw`` -> ``kitti_camera_color_left``; characters other than letters,
    digits and ``_`` become ``_`` and a leading digit gets a ``_`` prefix.
    """
    parts = [p for p in str(image_topic).strip('/').split('/') if p]
    if parts and parts[-1] == 'compressed':
        parts = parts[:-1]
    if len(parts) > 1 and parts[-1].startswith('image'):
        parts = parts[:-1]
    name = re.sub(r'[^A-Za-z0-9_]', '_', '_'.join(parts)) or 'camera'
    return f'_{name}' if name[0].isdigit() else name


def camera_inputs(image_topics: Sequence[str], info_topics: Sequence[str] = (), names: Sequence[str] = (),
                  time_offsets_s: Sequence[float] = ()) -> list[CameraInput]:
    """Return the configured cameras; derived names are made unique (``_2``, ``_3``, ... on a clash)."""
    cameras: list[CameraInput] = []
    used: set[str] = set()
    for i, topic in enumerate(image_topics):
        name = names[i] if names else camera_name(topic)
        base, k = name, 2
        while name in used:
            name, k = f'{base}_{k}', k + 1
        used.add(name)
        info = info_topics[i] if info_topics else camera_info_topic(topic)
        offset = int(round(float(time_offsets_s[i]) * 1e9)) if time_offsets_s else 0
        cameras.append(CameraInput(name, topic, info, offset))
    return cameras


def _depth_cloud(msg: Any, info: Any, max_range: float) -> tuple[np.ndarray, str]:
    """(points (N, 3) float32 in the depth camera's optical frame, that frame's id) of a depth image."""
    from perception_nodes.io.depth import depth_to_points
    if info is None:
        raise ValueError('depth image without a CameraInfo (needs <image namespace>/camera_info)')
    model = camera_model_from_msg(info)
    depth = decode_image(msg, expected_size=(model.height, model.width))
    points, _ = depth_to_points(depth, model, max_depth=max_range if max_range > 0 else None)
    frame = normalize_frame_id(model.frame_id or msg.header.frame_id)
    return points, frame


def _is_image(msg: Any) -> bool:
    return hasattr(msg, 'encoding') or hasattr(msg, 'format')


def _ids(pts: np.ndarray, name: str) -> tuple[np.ndarray | None, str]:
    """Ground-truth ids as int64, or (None, why) when the field cannot hold ids (never a silent wrap).

    Integer fields are taken as they are; a float field is accepted when every value is a whole number
    within int64 (some converters store ids as float32).
    """
    values = pts[name]
    if np.issubdtype(values.dtype, np.integer):
        return np.asarray(values, dtype=np.int64), ''
    if np.issubdtype(values.dtype, np.floating):
        v = np.asarray(values, dtype=np.float64)
        if np.all(np.isfinite(v)) and np.all(v == np.round(v)) and np.all(np.abs(v) < 2.0**62):
            return v.astype(np.int64), ''
        return None, f'ground-truth field {name!r} ({values.dtype}) holds non-integer or non-finite values'
    return None, f'ground-truth field {name!r} has type {values.dtype}, not a number'


def _cloud_arrays(msg: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None,
                                     int]:
    """(xyz float32 (N, 3) finite, intensity, labels, instances, number of dropped non-finite points)."""
    pts = read_points(msg)
    names = pts.dtype.names or ()
    missing = [n for n in ('x', 'y', 'z') if n not in names]
    if missing:
        raise ValueError(f'cloud has no {missing} field(s) (fields: {list(names)})')
    xyz = np.empty((len(pts), 3), dtype=np.float32)
    for i, axis in enumerate('xyz'):
        xyz[:, i] = pts[axis]
    keep = np.isfinite(xyz).all(axis=1)
    dropped = int(len(keep) - np.count_nonzero(keep))
    if dropped:
        pts, xyz = pts[keep], xyz[keep]
    intensity = None
    name = next((n for n in INTENSITY_FIELDS if n in names), None)
    if name is not None:
        with np.errstate(over='ignore', invalid='ignore'):     # float64 beyond float32 -> inf -> 0 below
            intensity = np.array(pts[name], dtype=np.float32)
        intensity[~np.isfinite(intensity)] = 0.0
    labels, bad_labels = _ids(pts, 'label') if 'label' in names else (None, '')
    instances, bad_instances = _ids(pts, 'instance') if 'instance' in names else (None, '')
    problems = [p for p in (bad_labels, bad_instances) if p]
    return xyz, intensity, labels, instances, dropped, problems


class FrameAssembler:
    """Builds Frames from synchronized sets under the module's rules; counts every drop in ``stats``."""

    def __init__(self, cameras: Sequence[CameraInput], lookup: Lookup, stats: Stats | None = None,
                 lidar_frame: str = '', fixed_frame: str = '', depth_max_range: float = 0.0) -> None:
        self.cameras = list(cameras)
        self.lookup = lookup
        self.stats = stats if stats is not None else Stats()
        self.lidar_frame = normalize_frame_id(lidar_frame) if lidar_frame else ''
        self.fixed_frame = normalize_frame_id(fixed_frame) if fixed_frame else ''
        self.depth_max_range = float(depth_max_range)

    def transform(self, camera_frame: str, image_stamp: int, lidar_frame: str,
                  cloud_stamp: int) -> np.ndarray:
        """(4, 4) LiDAR-to-camera transform under the ego-motion rule (module docstring)."""
        if not self.fixed_frame:
            T = np.asarray(self.lookup(camera_frame, lidar_frame, cloud_stamp), dtype=np.float64)
        else:
            cam = np.asarray(self.lookup(camera_frame, self.fixed_frame, image_stamp), dtype=np.float64)
            T = cam @ np.asarray(self.lookup(self.fixed_frame, lidar_frame, cloud_stamp), dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f'transform is not a finite 4x4 matrix: {T!r}')
        return T

    def assemble(self, synced: SyncedSet, index: int = 0, where: str = '') -> Frame | None:
        """Return the Frame of one set, or None when its cloud breaks the rules (counted with the reason)."""
        where = where or f'frame {index}'
        cloud = unwrap(synced.cloud)
        try:
            stamp = stamp_ns(cloud.header.stamp)
            if _is_image(cloud):
                points, depth_frame = _depth_cloud(cloud, synced.cloud_info, self.depth_max_range)
                intensity = labels = instances = None
                dropped, problems = 0, []
                lidar_frame = self.lidar_frame or depth_frame
            else:
                lidar_frame = self.lidar_frame or normalize_frame_id(cloud.header.frame_id)
                points, intensity, labels, instances, dropped, problems = _cloud_arrays(cloud)
            if not lidar_frame:
                raise ValueError('cloud header has an empty frame_id')
        except Exception as exc:  # noqa: BLE001  (malformed messages fail in many ways: all are "bad cloud")
            self.stats.count(reasons.BAD_CLOUD, problem=f'{type(exc).__name__}: {exc}', where=where)
            return None
        for problem in problems:      # ground truth is optional: the frame goes on without it
            self.stats.count(reasons.BAD_GROUND_TRUTH, problem=problem, where=where)
        if dropped:
            self.stats.count(reasons.NONFINITE_POINTS, dropped,
                             problem=f'{dropped} point(s) with a non-finite x, y or z dropped', where=where)
        images = list(synced.images) + [None] * (len(self.cameras) - len(synced.images))
        views: list[CameraView] = []
        missing: list[str] = []
        for cam, image in zip(self.cameras, images):
            view = self._camera(cam, image, synced.infos.get(cam.name), lidar_frame, stamp, where)
            if view is None:
                missing.append(cam.name)
            else:
                self._truth(view, synced.truth.get(cam.name) or {}, where)
                views.append(view)
        return Frame(stamp_ns=stamp, frame_id=lidar_frame, points=points, intensity=intensity, cameras=views,
                     labels=labels, instances=instances, index=index, missing_cameras=missing)

    def _truth(self, view: CameraView, rasters: Mapping[str, Any], where: str) -> None:
        """Attach the synthetic ground-truth rasters of a camera (module docstring); bad ones are left out."""
        for kind in TRUTH_KINDS:
            msg = rasters.get(kind)
            if msg is None:
                continue
            try:
                view.truth[kind] = decode_truth(unwrap(msg), view.image.shape[:2])
            except Exception as exc:  # noqa: BLE001  (a bad raster costs only itself)
                self.stats.count(BAD_TRUTH, problem=f'{view.name} {kind}: {type(exc).__name__}: {exc}',
                                 where=where)

    def _drop(self, reason: str, cam: CameraInput, problem: str, where: str) -> None:
        self.stats.count(reason, problem=f'{cam.name}: {problem}', where=where)

    def _camera(self, cam: CameraInput, image_msg: Any, info: Any, lidar_frame: str, stamp: int,
                where: str) -> CameraView | None:
        if image_msg is None:
            self._drop(reasons.NO_IMAGE, cam, f'no image on {cam.image_topic} within the sync slop', where)
            return None
        image_msg = unwrap(image_msg)
        if info is None:
            self._drop(reasons.NO_CAMERA_INFO, cam, f'no CameraInfo on {cam.info_topic}', where)
            return None
        try:
            model = camera_model_from_msg(info)
        except Exception as exc:  # noqa: BLE001
            self._drop(reasons.BAD_CAMERA_INFO, cam, f'{type(exc).__name__}: {exc}', where)
            return None
        try:
            image_stamp = stamp_ns(image_msg.header.stamp)
            frame = normalize_frame_id(model.frame_id or image_msg.header.frame_id)
            if not frame:
                raise ValueError('neither CameraInfo nor image name a frame_id')
        except Exception as exc:  # noqa: BLE001
            self._drop(reasons.BAD_IMAGE, cam, f'{type(exc).__name__}: {exc}', where)
            return None
        model.frame_id = frame
        try:
            T = self.transform(frame, image_stamp, lidar_frame, stamp)
        except Exception as exc:  # noqa: BLE001  (tf2 and our buffer raise several kinds)
            self._drop(reasons.NO_TRANSFORM, cam, f'{lidar_frame} -> {frame}: {type(exc).__name__}: {exc}',
                       where)
            return None
        try:
            rgb = decode_image(image_msg, expected_size=(model.height, model.width), teacher_rgb=True)
        except ValueError as exc:   # the decoders raise ValueError only (OpenCV errors included)
            self._drop(reasons.BAD_IMAGE, cam, f'{type(exc).__name__}: {exc}', where)
            return None
        return CameraView(name=cam.name, image=rgb, model=model, T_cam_lidar=T, stamp_ns=image_stamp)
