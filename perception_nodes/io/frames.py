"""Assemble synchronized :class:`~perception_nodes.frame.Frame` objects from a bag, streaming.

The LiDAR is the time reference. For every PointCloud2 (header stamp ``t``) each camera contributes
the image whose header stamp is nearest to ``t`` within ``slop_ns``, the CameraInfo nearest to that
image's stamp (so per-frame calibrations stay paired with their images), and ``T_cam_lidar`` looked up
in a :class:`~perception_nodes.io.tf_buffer.TransformBuffer` filled from /tf and /tf_static at ``t``.

Streaming: messages arrive in log-time order; a cloud waits until every camera has delivered an image
later than ``t + slop_ns`` (or until ``max_wait_ns`` of bag time have passed, or the bag ends), so only
a short window of images/infos is held. Images are decoded only when matched. The result is
deterministic. Frames with a missing camera are dropped unless ``allow_partial``; every drop, missing
camera, malformed message and non-finite point is counted in :class:`AssemblyStats`.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured

from perception_nodes.frame import CameraView, Frame
from perception_nodes.io.bags import BagError, bag_topics, iter_messages, open_bag
from perception_nodes.io.camera_info import camera_model_from_msg
from perception_nodes.io.image import decode_image
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import stamp_to_ns
from perception_nodes.io.tf_buffer import TransformBuffer, TransformError

__all__ = ['FrameAssemblyConfig', 'AssemblyStats', 'iter_frames', 'default_topics', 'camera_info_topic',
           'resolve_config']

POINTCLOUD2 = 'sensor_msgs/msg/PointCloud2'
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
MAX_WINDOW = 512          # hard cap on buffered images / infos per camera (garbage stamps stay bounded)


def camera_info_topic(image_topic: str) -> str:
    """Return the CameraInfo sibling of an image topic: /cam/image_raw[/compressed] -> /cam/camera_info."""
    topic = image_topic.rstrip('/')
    if topic.endswith('/compressed'):
        topic = topic[:-len('/compressed')]
    parent = topic.rsplit('/', 1)[0]
    return f'{parent}/camera_info'


@dataclass
class FrameAssemblyConfig:
    lidar_topic: str | None                       # None: the bag's only PointCloud2 topic
    camera_topics: list[str] | None = field(default_factory=list)   # None: default_topics' cameras
    camera_info_topics: list[str] | None = None   # default: camera_info_topic(image topic)
    slop_ns: int = 50_000_000                     # max |image stamp - cloud stamp|
    allow_partial: bool = False                   # yield frames with missing cameras (listed in the frame)
    lidar_frame: str | None = None                # override the cloud's header.frame_id
    max_wait_ns: int = 1_000_000_000              # bag time a cloud waits for late images
    tf_tolerance_ns: int = 50_000_000             # accept a tf sample this close past its history
    tf_topic: str = '/tf'
    tf_static_topic: str = '/tf_static'

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FrameAssemblyConfig:
        """From a YAML mapping (``yaml.safe_load``); unknown keys are a ValueError."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown frame assembly option(s) {unknown}; known: {sorted(known)}')
        if 'lidar_topic' not in values:
            raise ValueError('frame assembly config needs lidar_topic')
        return cls(**values)

    def info_topics(self) -> list[str]:
        if self.camera_info_topics is None:
            return [camera_info_topic(t) for t in self.camera_topics]
        if len(self.camera_info_topics) != len(self.camera_topics):
            raise ValueError(f'{len(self.camera_topics)} camera topics but {len(self.camera_info_topics)} '
                             'camera_info topics')
        return list(self.camera_info_topics)


@dataclass
class AssemblyStats:
    """What happened while assembling frames (``dropped``: frames by reason; ``missing``: camera slots)."""

    clouds: int = 0
    frames: int = 0
    partial_frames: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)       # '<image topic>: <reason>' -> count
    malformed: dict[str, int] = field(default_factory=dict)     # topic -> messages skipped
    nonfinite_points: int = 0

    def count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flat(self) -> dict[str, int]:
        """Return one level of counts.

        Keys: clouds, frames, partial_frames, nonfinite_points, dropped/<reason>,
        missing/<topic>: <reason>, malformed/<topic>.
        """
        out = {'clouds': self.clouds, 'frames': self.frames, 'partial_frames': self.partial_frames,
               'nonfinite_points': self.nonfinite_points}
        for name in ('dropped', 'missing', 'malformed'):
            out.update({f'{name}/{k}': v for k, v in getattr(self, name).items()})
        return out


@dataclass
class _Pending:
    index: int
    stamp: int
    msg: Any


def _nearest(window: deque[tuple[int, Any]], stamp: int, slop: int | None) -> tuple[int, Any] | None:
    best = None
    for item in window:
        d = abs(item[0] - stamp)
        if (slop is None or d <= slop) and (best is None or d < abs(best[0] - stamp)):
            best = item
    return best


def _to_rgb8(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'image of shape {img.shape} is not RGB')
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        raise ValueError(f'{img.dtype} image cannot be shown as RGB (depth image?)')
    if not (img.flags.c_contiguous and img.flags.writeable):   # decoded views of message bytes
        img = np.array(img, order='C')
    return img


class _Assembler:
    def __init__(self, config: FrameAssemblyConfig, stats: AssemblyStats) -> None:
        self.cfg = config
        self.stats = stats
        self.infos_topics = config.info_topics()
        self.tf = TransformBuffer(cache_ns=max(10 * config.max_wait_ns, 10_000_000_000))
        self.pending: deque[_Pending] = deque()
        self.images: dict[str, deque[tuple[int, Any]]] = {t: deque() for t in config.camera_topics}
        self.infos: dict[str, deque[tuple[int, Any]]] = {t: deque() for t in config.camera_topics}
        self.newest_image: dict[str, int] = {}
        self.info_of = dict(zip(self.infos_topics, config.camera_topics))
        self.cloud_count = 0
        self.last_done: int | None = None

    # -- intake ------------------------------------------------------------------------------
    def add(self, topic: str, log_ns: int, msg: Any) -> Iterator[Frame]:
        cfg = self.cfg
        if topic in (cfg.tf_topic, cfg.tf_static_topic):
            try:
                self.tf.add_tf_message(msg, static=topic == cfg.tf_static_topic)
            except ValueError:
                self.stats.count(self.stats.malformed, topic)
        elif topic == cfg.lidar_topic:
            self.stats.clouds += 1
            try:
                stamp = stamp_to_ns(msg.header.stamp)
            except (AttributeError, ValueError):
                self.stats.count(self.stats.malformed, topic)
                self.stats.count(self.stats.dropped, 'bad_cloud')
            else:
                self.pending.append(_Pending(self.cloud_count, stamp, msg))
            self.cloud_count += 1
        elif topic in self.images or topic in self.info_of:
            try:
                stamp = stamp_to_ns(msg.header.stamp)
            except (AttributeError, ValueError):
                self.stats.count(self.stats.malformed, topic)
                return
            if topic in self.images:
                window = self.images[topic]
                self.newest_image[topic] = max(stamp, self.newest_image.get(topic, stamp))
            else:
                window = self.infos[self.info_of[topic]]
            window.append((stamp, msg))
            if len(window) > MAX_WINDOW:
                window.popleft()
        yield from self.flush(log_ns)

    def ready(self, item: _Pending, now: int) -> bool:
        if not self.cfg.camera_topics:
            return True
        horizon = item.stamp + self.cfg.slop_ns
        if now > item.stamp + self.cfg.max_wait_ns:
            return True
        newest = self.newest_image
        return now > horizon and all(newest.get(t, -2**63) > horizon for t in self.cfg.camera_topics)

    def flush(self, now: int | None) -> Iterator[Frame]:
        while self.pending and (now is None or self.ready(self.pending[0], now)):
            item = self.pending.popleft()
            frame = self.finish(item)
            self.last_done = item.stamp
            if frame is not None:
                yield frame
        self.evict()

    def evict(self) -> None:
        oldest = self.pending[0].stamp if self.pending else self.last_done
        if oldest is None:
            return
        limit = oldest - self.cfg.slop_ns
        for window in self.images.values():
            while window and window[0][0] < limit:
                window.popleft()
        for window in self.infos.values():   # keep the newest info even when old (latched CameraInfo)
            while len(window) > 1 and window[0][0] < limit and window[1][0] <= oldest:
                window.popleft()

    # -- one frame ---------------------------------------------------------------------------
    def finish(self, item: _Pending) -> Frame | None:
        cfg, stats = self.cfg, self.stats
        cloud = item.msg
        try:
            pts = read_points(cloud)
            names = pts.dtype.names
            if not {'x', 'y', 'z'} <= set(names):
                raise ValueError(f'cloud has no x, y, z fields (fields: {list(names)})')
            xyz = structured_to_unstructured(pts[['x', 'y', 'z']], dtype=np.float32)
        except ValueError:
            stats.count(stats.malformed, cfg.lidar_topic)
            stats.count(stats.dropped, 'bad_cloud')
            return None
        keep = np.isfinite(xyz).all(axis=1)
        if not keep.all():
            stats.nonfinite_points += int((~keep).sum())
            pts, xyz = pts[keep], xyz[keep]
        # Frames own writable, contiguous copies (message buffers may be read-only views).
        xyz = np.array(xyz, dtype=np.float32, order='C')
        intensity = np.array(pts['intensity'], dtype=np.float32) if 'intensity' in names else None
        labels = np.array(pts['label'], dtype=np.int32) if 'label' in names else None
        instances = np.array(pts['instance'], dtype=np.int32) if 'instance' in names else None
        lidar_frame = cfg.lidar_frame or str(cloud.header.frame_id).lstrip('/')
        cameras: list[CameraView] = []
        missing: list[str] = []
        for topic, info_topic in zip(cfg.camera_topics, self.infos_topics):
            view, reason = self.camera(topic, info_topic, item.stamp, lidar_frame)
            if view is None:
                missing.append(topic)
                stats.count(stats.missing, f'{topic}: {reason}')
            else:
                cameras.append(view)
        if missing and not cfg.allow_partial:
            stats.count(stats.dropped, 'missing_camera')
            return None
        stats.frames += 1
        if missing:
            stats.partial_frames += 1
        return Frame(stamp_ns=item.stamp, frame_id=lidar_frame, points=xyz, intensity=intensity,
                     cameras=cameras, labels=labels, instances=instances, index=item.index,
                     missing_cameras=missing)

    def camera(self, topic: str, info_topic: str, stamp: int,
               lidar_frame: str) -> tuple[CameraView | None, str]:
        stats = self.stats
        match = _nearest(self.images[topic], stamp, self.cfg.slop_ns)
        if match is None:
            return None, 'no_image'
        img_stamp, img_msg = match
        info = _nearest(self.infos[topic], img_stamp, None)
        if info is None:
            return None, 'no_camera_info'
        try:
            model = camera_model_from_msg(info[1])
        except ValueError:
            stats.count(stats.malformed, info_topic)
            return None, 'bad_camera_info'
        if not model.frame_id:
            model.frame_id = str(img_msg.header.frame_id).lstrip('/')
        try:
            T = self.tf.lookup(model.frame_id, lidar_frame, stamp, self.cfg.tf_tolerance_ns)
        except TransformError:
            return None, 'no_transform'
        try:
            rgb = _to_rgb8(decode_image(img_msg))
        except ValueError:
            stats.count(stats.malformed, topic)
            return None, 'bad_image'
        if rgb.shape[:2] != (model.height, model.width):
            stats.count(stats.malformed, info_topic)
            return None, 'size_mismatch'
        return CameraView(name=topic, image=rgb, model=model, T_cam_lidar=T, stamp_ns=img_stamp), ''


def _check_topics(bag_path: str | os.PathLike, config: FrameAssemblyConfig) -> list[str]:
    with open_bag(bag_path) as reader:
        existing = bag_topics(reader)
    wanted = [config.lidar_topic, *config.camera_topics, *config.info_topics()]
    missing = [t for t in wanted if t not in existing]
    if missing:
        listing = ', '.join(f'{t} ({existing[t]})' for t in sorted(existing))
        raise ValueError(f'{bag_path}: requested topic(s) {missing} not in bag; it has: {listing}')
    if existing[config.lidar_topic] != POINTCLOUD2:
        raise ValueError(f'{config.lidar_topic} is a {existing[config.lidar_topic]}, not a PointCloud2')
    for t in config.camera_topics:
        if existing[t] not in IMAGE_TYPES:
            raise ValueError(f'{t} is a {existing[t]}, not an Image or CompressedImage')
    return wanted + [t for t in (config.tf_topic, config.tf_static_topic) if t in existing]


def resolve_config(bag_path: str | os.PathLike, config: FrameAssemblyConfig) -> FrameAssemblyConfig:
    """``config`` with ``lidar_topic`` / ``camera_topics`` left as None chosen like :func:`default_topics`."""
    if config.lidar_topic is not None and config.camera_topics is not None:
        return config
    with open_bag(bag_path) as reader:
        topics = bag_topics(reader)
    lidar = config.lidar_topic if config.lidar_topic is not None else _default_lidar(bag_path, topics)
    if config.camera_topics is not None:
        return replace(config, lidar_topic=lidar)
    return replace(config, lidar_topic=lidar, camera_topics=_default_cameras(bag_path, topics),
                   camera_info_topics=None)


def iter_frames(bag_path: str | os.PathLike, config: FrameAssemblyConfig,
                stats: AssemblyStats | MutableMapping[str, int] | None = None) -> Iterator[Frame]:
    """Yield the synchronized frames of a bag, in LiDAR message order (see the module docstring).

    ``config.lidar_topic`` / ``config.camera_topics`` None: chosen by :func:`default_topics`.
    ``stats``: an :class:`AssemblyStats` filled in place, or a plain dict / Counter that receives
    :meth:`AssemblyStats.flat` counts. Raises ValueError when requested topics are missing (listing
    the bag's topics) and BagError (a ValueError) when the bag is unreadable or truncated, after
    yielding the frames before the cut.
    """
    if stats is None or isinstance(stats, AssemblyStats):
        yield from _iter_frames(bag_path, config, stats if stats is not None else AssemblyStats())
        return
    inner = AssemblyStats()
    try:
        for frame in _iter_frames(bag_path, config, inner):
            stats.clear()
            stats.update(inner.flat())
            yield frame
    finally:
        stats.clear()
        stats.update(inner.flat())


def _iter_frames(bag_path: str | os.PathLike, config: FrameAssemblyConfig,
                 stats: AssemblyStats) -> Iterator[Frame]:
    config = resolve_config(bag_path, config)
    topics = list(dict.fromkeys(_check_topics(bag_path, config)))
    assembler = _Assembler(config, stats)
    try:
        for item in iter_messages(bag_path, topics, errors=stats.malformed):
            yield from assembler.add(item.topic, item.log_time_ns, item.msg)
    except BagError:
        yield from assembler.flush(None)   # frames complete before the cut
        raise
    yield from assembler.flush(None)


def _default_lidar(bag_path: str | os.PathLike, topics: dict[str, str]) -> str:
    clouds = sorted(t for t, k in topics.items() if k == POINTCLOUD2)
    if len(clouds) != 1:
        raise ValueError(f'{bag_path}: expected exactly one PointCloud2 topic, found {clouds or "none"}; '
                         'name the LiDAR topic explicitly')
    return clouds[0]


def _default_cameras(bag_path: str | os.PathLike, topics: dict[str, str]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for t in sorted(t for t, k in topics.items() if k in IMAGE_TYPES):
        info = camera_info_topic(t)
        if topics.get(info) == CAMERA_INFO:
            groups.setdefault(info, []).append(t)
    cameras = []
    for info, candidates in sorted(groups.items()):
        raw = [t for t in candidates if topics[t] == 'sensor_msgs/msg/Image']
        pick = raw if raw else candidates
        if len(pick) != 1:
            raise ValueError(f'{bag_path}: camera {info} has several image topics {pick}; '
                             'name them explicitly')
        cameras.append(pick[0])
    return cameras


def default_topics(bag_path: str | os.PathLike, **overrides: Any) -> FrameAssemblyConfig:
    """Return a config with the bag's only PointCloud2 topic and one image topic per camera.

    Cameras are the image topics with a sibling camera_info topic; per camera a raw Image is preferred
    over its ``/compressed`` twin. Several clouds, or several raw images per camera: ValueError.
    """
    with open_bag(bag_path) as reader:
        topics = bag_topics(reader)
    return FrameAssemblyConfig(lidar_topic=_default_lidar(bag_path, topics),
                               camera_topics=_default_cameras(bag_path, topics), **overrides)
