"""A recorded bag as a source of frames: one open reader answers every question, messages are streamed.

:class:`BagSource` opens the bag once and, from that one reader session, resolves the topics (the only
PointCloud2 and every camera with a CameraInfo unless configured), checks them, and streams the messages in
log-time order through a synchronizer that plays the role message_filters plays in the nodes:

- the LiDAR is the time reference. For a cloud stamped ``t``, each camera contributes the image whose stamp
  minus the camera's time offset is nearest to ``t`` within ``inputs.sync_slop``, with the CameraInfo
  nearest that image (per-frame calibrations stay paired with their images);
- a cloud waits until every camera delivered an image later than ``t + slop`` (or ``MAX_WAIT_NS`` of bag
  time passed, or the bag ended), so only short windows of messages are held; the result is deterministic;
- /tf and /tf_static fill a :class:`~perception_nodes.io.tf_buffer.TransformBuffer` that answers the
  assembler's LiDAR-to-camera lookups at the cloud stamp (``TF_TOLERANCE_NS`` past the newest sample).
- With ``inputs.depth_topic`` (an RGB-D bag) the depth images are the time reference instead of a
  PointCloud2: each travels with the CameraInfo nearest its stamp on ``<namespace>/camera_info``, and the
  assembler turns them into clouds (``io.depth``). The depth camera is never one of the RGB cameras.
- A camera's synthetic ground-truth rasters (``<namespace>/truth/class`` and ``.../truth/instance``,
  :func:`~perception_nodes.assembly.truth_topics`), when the bag has them, travel with the image of the
  same stamp (ground truth for synthetic data sets only).

The synchronized sets go through the one :class:`~perception_nodes.assembly.FrameAssembler`, exactly as in a
node. Messages that do not deserialize are counted (``malformed/<topic>``) and skipped.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perception_nodes import stats as reasons
from perception_nodes.assembly import (CameraInput, FrameAssembler, SyncedSet, camera_info_topic,
                                       camera_inputs, truth_topics, valid_stamp_ns)
from perception_nodes.config import InputsConfig
from perception_nodes.frame import Frame
from perception_nodes.io.bags import BagError, bag_topics, open_bag, read_messages
from perception_nodes.io.tf_buffer import TransformBuffer
from perception_nodes.stats import Stats

__all__ = ['BagSource', 'iter_frames', 'POINTCLOUD2', 'IMAGE_TYPES', 'CAMERA_INFO', 'TF_TOPIC', 'TF_STATIC']

POINTCLOUD2 = 'sensor_msgs/msg/PointCloud2'
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
TF_TOPIC, TF_STATIC = '/tf', '/tf_static'
MAX_WAIT_NS = 1_000_000_000       # bag time a cloud waits for late images
TF_TOLERANCE_NS = 50_000_000      # a transform may be used this far past its newest sample
MAX_WINDOW = 512                  # buffered images / infos per camera (garbage stamps stay bounded)

# (topic, msgtype, raw CDR bytes, log time) of messages the caller asked to see raw (e.g. /tf_static copies)
RawHook = Callable[[str, str, Any, int], None]


@dataclass
class _Pending:
    index: int
    stamp: int | None
    msg: Any


def _nearest(window: deque[tuple[int, Any]], stamp: int, slop: int | None) -> Any | None:
    best = None
    for item_stamp, msg in window:
        d = abs(item_stamp - stamp)
        if (slop is None or d <= slop) and (best is None or d < best[0]):
            best = (d, msg)
    return None if best is None else best[1]


class BagSource:
    """One bag, opened once: its topics, its transforms and its synchronized frames (module docstring)."""

    def __init__(self, path: str | os.PathLike, inputs: InputsConfig | None = None,
                 stats: Stats | None = None) -> None:
        self.path = Path(path)
        self.inputs = inputs or InputsConfig()
        self.stats = stats if stats is not None else Stats()
        self._ctx = open_bag(self.path)
        self.reader = self._ctx.__enter__()
        try:
            self.topics = bag_topics(self.reader)
            self.depth_info_topic = ''
            self.lidar_topic, self.cameras = self._resolve()
            self.truth = self._truth_topics()
        except BaseException:
            self.close()
            raise
        self.tf = TransformBuffer(cache_ns=max(10 * MAX_WAIT_NS, 10_000_000_000))

    # -- topics -------------------------------------------------------------------------------------
    def describe(self) -> str:
        """``topic (type)`` for every topic of the bag, for error messages."""
        return ', '.join(f'{t} ({k})' for t, k in sorted(self.topics.items())) or 'no topics'

    def _resolve(self) -> tuple[str, list[CameraInput]]:
        cfg, topics = self.inputs, self.topics
        lidar = cfg.lidar_topic
        if cfg.depth_topic:
            return self._resolve_depth()
        if not lidar:
            clouds = sorted(t for t, k in topics.items() if k == POINTCLOUD2)
            if len(clouds) != 1:
                raise ValueError(f'{self.path}: expected exactly one PointCloud2 topic, found '
                                 f'{clouds or "none"}; name it (inputs.lidar_topic / --lidar-topic). The bag '
                                 f'has: {self.describe()}')
            lidar = clouds[0]
        image_topics = list(cfg.camera_topics) or self._default_cameras()
        cameras = camera_inputs(image_topics, cfg.camera_info_topics, cfg.camera_names,
                                cfg.camera_time_offsets)
        wanted = [lidar] + [c.image_topic for c in cameras] + [c.info_topic for c in cameras]
        missing = [t for t in wanted if t not in topics]
        if missing:
            raise ValueError(f'{self.path}: topic(s) {missing} not in the bag; it has: {self.describe()}')
        if topics[lidar] != POINTCLOUD2:
            raise ValueError(f'{self.path}: {lidar} is a {topics[lidar]}, not a PointCloud2')
        for cam in cameras:
            if topics[cam.image_topic] not in IMAGE_TYPES:
                raise ValueError(f'{self.path}: {cam.image_topic} is a {topics[cam.image_topic]}, not an '
                                 f'Image '
                                 'or CompressedImage')
            if topics[cam.info_topic] != CAMERA_INFO:
                raise ValueError(f'{self.path}: {cam.info_topic} is a {topics[cam.info_topic]}, not a '
                                 'CameraInfo')
        return lidar, cameras

    def _resolve_depth(self) -> tuple[str, list[CameraInput]]:
        """Resolve the depth image topic (the reference), its CameraInfo and the RGB cameras (not it)."""
        cfg, topics = self.inputs, self.topics
        depth, info = cfg.depth_topic, camera_info_topic(cfg.depth_topic)
        missing = [t for t in (depth, info) if t not in topics]
        if missing:
            raise ValueError(f'{self.path}: depth topic(s) {missing} not in the bag (inputs.depth_topic '
                             f'needs the depth images and their <namespace>/camera_info); it has: '
                             f'{self.describe()}')
        if topics[depth] not in IMAGE_TYPES or topics[info] != CAMERA_INFO:
            raise ValueError(f'{self.path}: {depth} ({topics[depth]}) / {info} ({topics[info]}) are not a '
                             'depth Image and a CameraInfo')
        self.depth_info_topic = info
        image_topics = list(cfg.camera_topics) or self._default_cameras(exclude_info=info)
        cameras = camera_inputs(image_topics, cfg.camera_info_topics, cfg.camera_names,
                                cfg.camera_time_offsets)
        for cam in cameras:
            for t, kind in ((cam.image_topic, IMAGE_TYPES), (cam.info_topic, (CAMERA_INFO,))):
                if topics.get(t) not in kind:
                    raise ValueError(f'{self.path}: camera topic {t} is {topics.get(t, "missing")}; the bag '
                                     f'has: {self.describe()}')
        return depth, cameras

    def _truth_topics(self) -> dict[str, tuple[str, str]]:
        """Synthetic ground-truth raster topics present in the bag: topic -> (camera name, kind)."""
        out = {}
        for cam in self.cameras:
            for kind, topic in truth_topics(cam.image_topic).items():
                if self.topics.get(topic) == 'sensor_msgs/msg/Image':
                    out[topic] = (cam.name, kind)
        return out

    def _default_cameras(self, exclude_info: str = '') -> list[str]:
        topics = self.topics
        groups: dict[str, list[str]] = {}
        for t in sorted(t for t, k in topics.items() if k in IMAGE_TYPES):
            info = camera_info_topic(t)
            if info == exclude_info:
                continue
            if topics.get(info) == CAMERA_INFO:
                groups.setdefault(info, []).append(t)
        cameras = []
        for info, candidates in sorted(groups.items()):
            raw = [t for t in candidates if topics[t] == 'sensor_msgs/msg/Image']
            pick = raw if raw else candidates
            if len(pick) != 1:
                raise ValueError(f'{self.path}: camera {info} has several image topics {pick}; name them '
                                 '(inputs.camera_topics / --camera-topics)')
            cameras.append(pick[0])
        return cameras

    # -- transforms -----------------------------------------------------------------------------------
    def lookup(self, target: str, source: str, stamp_ns: int) -> Any:
        """(4, 4) transform taking ``source`` points into ``target`` at ``stamp_ns``; else TransformError."""
        return self.tf.lookup(target, source, stamp_ns, TF_TOLERANCE_NS)

    # -- streaming ------------------------------------------------------------------------------------
    def synced_sets(self, raw_topics: tuple[str, ...] = (), on_raw: RawHook | None = None
                    ) -> Iterator[tuple[int, SyncedSet]]:
        """(cloud index, synchronized set) in cloud order; raw messages of ``raw_topics`` go to ``on_raw``.

        Raises BagError after the readable part when the bag is truncated or corrupted.
        """
        sync = _Synchronizer(self.lidar_topic, self.cameras, int(self.inputs.sync_slop * 1e9),
                             self.depth_info_topic, self.truth)
        tf_topics = {t for t in (TF_TOPIC, TF_STATIC) if t in self.topics}
        wanted = [self.lidar_topic, *[c.image_topic for c in self.cameras],
                  *[c.info_topic for c in self.cameras], *tf_topics, *raw_topics, *self.truth]
        if self.depth_info_topic:
            wanted.append(self.depth_info_topic)
        wanted = [t for t in dict.fromkeys(wanted) if t in self.topics]
        decode = set(wanted) - (set(raw_topics) - tf_topics - {self.lidar_topic})
        try:
            yield from self._stream(sync, wanted, decode, tf_topics, raw_topics, on_raw)
        except BagError:
            yield from sync.flush(None)      # the clouds read before the damage still make their frames
            raise
        yield from sync.flush(None)

    def _stream(self, sync: _Synchronizer, wanted: list[str], decode: set[str], tf_topics: set[str],
                raw_topics: tuple[str, ...], on_raw: RawHook | None) -> Iterator[tuple[int, SyncedSet]]:
        for item in read_messages(self.reader, wanted, deserialize=False, path=self.path):
            if item.topic in raw_topics and on_raw is not None:
                on_raw(item.topic, item.msgtype, item.msg, item.log_time_ns)
            if item.topic not in decode:
                continue
            try:
                msg = self.reader.deserialize(item.msg, item.msgtype)
            except Exception as exc:  # noqa: BLE001  (a corrupt message costs only itself)
                self.stats.count(f'{reasons.MALFORMED}/{item.topic}',
                                 problem=f'does not deserialize as {item.msgtype}: {exc}',
                                 where=f'{item.topic} at {item.log_time_ns} ns')
                continue
            if item.topic in tf_topics:
                self._add_tf(item.topic, msg, item.log_time_ns)
                continue
            yield from sync.add(item.topic, item.log_time_ns, msg)

    def _add_tf(self, topic: str, msg: Any, log_ns: int) -> None:
        """Add every valid transform of a tf message; each bad one is counted with its reason."""
        where = f'{topic} at {log_ns} ns'
        try:
            result = self.tf.add_tf_message(msg, static=topic == TF_STATIC)
        except ValueError as exc:
            self.stats.count(f'{reasons.MALFORMED}/{topic}', problem=str(exc), where=where)
            return
        for index, reason in result.rejected:
            self.stats.count(f'{reasons.MALFORMED}/{topic}', problem=f'transform {index}: {reason}',
                             where=where)

    def frames(self, assembler: FrameAssembler | None = None) -> Iterator[Frame]:
        """Return the bag's frames, assembled by ``assembler`` (default: this bag's cameras and tf)."""
        assembler = assembler or self.assembler()
        for index, synced in self.synced_sets():
            frame = assembler.assemble(synced, index, where=f'{self.path.name} cloud {index}')
            if frame is not None:
                yield frame

    def assembler(self) -> FrameAssembler:
        """Return the frame assembler for this bag (its cameras, its tf, the shared stats)."""
        return FrameAssembler(self.cameras, self.lookup, self.stats, self.inputs.lidar_frame,
                              self.inputs.fixed_frame, self.inputs.depth_max_range)

    def close(self) -> None:
        ctx, self._ctx = getattr(self, '_ctx', None), None
        if ctx is not None:
            ctx.__exit__(None, None, None)

    def __enter__(self) -> BagSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Synchronizer:
    """LiDAR-referenced nearest-image matching over bounded windows (see the module docstring)."""

    def __init__(self, lidar_topic: str, cameras: list[CameraInput], slop_ns: int, cloud_info_topic: str = '',
                 truth: dict[str, tuple[str, str]] | None = None) -> None:
        self.lidar_topic = lidar_topic
        self.cameras = cameras
        self.slop = slop_ns
        self.image_of = {c.image_topic: c for c in cameras}
        self.info_of = {c.info_topic: c for c in cameras}
        self.cloud_info_topic = cloud_info_topic
        self.truth_of = dict(truth or {})        # truth topic -> (camera name, kind)
        self.offset_of = {c.name: c.time_offset_ns for c in cameras}
        self.images: dict[str, deque[tuple[int, Any]]] = {c.name: deque() for c in cameras}
        self.infos: dict[str, deque[tuple[int, Any]]] = {c.name: deque() for c in cameras}
        self.cloud_infos: deque[tuple[int, Any]] = deque()
        self.truths: dict[tuple[str, str], deque[tuple[int, Any]]] = {
            v: deque() for v in self.truth_of.values()}
        self.newest: dict[str, int] = {}
        self.pending: deque[_Pending] = deque()
        self.clouds = 0
        self.last_done: int | None = None

    def add(self, topic: str, log_ns: int, msg: Any) -> Iterator[tuple[int, SyncedSet]]:
        if topic == self.lidar_topic:
            self.pending.append(_Pending(self.clouds, valid_stamp_ns(getattr(msg.header, 'stamp', None)),
                                         msg))
            self.clouds += 1
        else:
            stamp = valid_stamp_ns(getattr(getattr(msg, 'header', None), 'stamp', None))
            if stamp is not None:
                cam = self.image_of.get(topic)
                if cam is not None:
                    shifted = stamp - cam.time_offset_ns
                    window = self.images[cam.name]
                    window.append((shifted, msg))
                    self.newest[cam.name] = max(shifted, self.newest.get(cam.name, shifted))
                elif topic == self.cloud_info_topic:
                    window = self.cloud_infos
                    window.append((stamp, msg))
                elif topic in self.truth_of:
                    name, kind = self.truth_of[topic]
                    window = self.truths[(name, kind)]
                    window.append((stamp - self.offset_of[name], msg))
                else:
                    window = self.infos[self.info_of[topic].name]
                    window.append((stamp, msg))
                if len(window) > MAX_WINDOW:
                    window.popleft()
            # a message with a broken stamp cannot be matched; the cloud's camera is then counted missing
        yield from self.flush(log_ns)

    def ready(self, item: _Pending, now: int) -> bool:
        if item.stamp is None or not self.cameras:
            return True
        horizon = item.stamp + self.slop
        if now > item.stamp + MAX_WAIT_NS:
            return True
        return now > horizon and all(self.newest.get(c.name, -2**63) > horizon for c in self.cameras)

    def flush(self, now: int | None) -> Iterator[tuple[int, SyncedSet]]:
        while self.pending and (now is None or self.ready(self.pending[0], now)):
            item = self.pending.popleft()
            yield item.index, self.match(item)
            if item.stamp is not None:
                self.last_done = item.stamp
        self.evict()

    def match(self, item: _Pending) -> SyncedSet:
        images: list[Any | None] = []
        infos: dict[str, Any] = {}
        truth: dict[str, dict[str, Any]] = {}
        for cam in self.cameras:
            image = None if item.stamp is None else _nearest(self.images[cam.name], item.stamp, self.slop)
            images.append(image)
            if image is not None:
                image_stamp = valid_stamp_ns(image.header.stamp)
                info = _nearest(self.infos[cam.name], image_stamp, None)
                if info is not None:
                    infos[cam.name] = info
                for (name, kind), window in self.truths.items():
                    same = image_stamp - cam.time_offset_ns
                    raster = _nearest(window, same, 0) if name == cam.name else None
                    if raster is not None:
                        truth.setdefault(name, {})[kind] = raster
        cloud_info = None
        if self.cloud_info_topic and item.stamp is not None:
            cloud_info = _nearest(self.cloud_infos, item.stamp, None)
        return SyncedSet(item.msg, images, infos, truth, cloud_info)

    def evict(self) -> None:
        stamps = [p.stamp for p in self.pending if p.stamp is not None]
        oldest = min(stamps) if stamps else self.last_done
        if oldest is None:
            return
        limit = oldest - self.slop
        for window in [*self.images.values(), *self.truths.values()]:
            while window and window[0][0] < limit:
                window.popleft()
        for window in [*self.infos.values(), self.cloud_infos]:   # keep the newest info (latched CameraInfo)
            while len(window) > 1 and window[0][0] < limit and window[1][0] <= oldest:
                window.popleft()


def iter_frames(path: str | os.PathLike, inputs: InputsConfig | None = None,
                stats: Stats | None = None) -> Iterator[Frame]:
    """Return the frames of a bag (opens it once; see :class:`BagSource`); BagError after a truncated part."""
    with BagSource(path, inputs, stats) as source:
        yield from source.frames()


__all__ += ['BagError']
