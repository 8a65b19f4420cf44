"""What a perception node does besides calling rclpy (ROS-free): the same path as ``ovp replay``.

Subscription side (cheap, from executor callbacks): :meth:`NodeCore.on_input`, ``on_camera_info``,
``on_synchronized``, ``on_query``, ``request_parameters``. Worker side (one thread, keep-latest):
:meth:`NodeCore.process` assembles the Frame with the one frame assembler (``perception_nodes.assembly``),
runs the one :class:`~perception_nodes.pipeline.Pipeline` (the configured labeller) and builds the
messages with the one output writer (``io.writer``), then hands each to ``publish(key, msgtype, msg)``.
Outputs nobody subscribes to are not built (``wanted``): the writer skips their messages and the pipeline
skips their stages (overlays, voxels, occupancy grid); diagnostics list them.

Cameras: the node synchronizes camera images with the cloud only when its labeller uses them (teacher or
ensemble); a student-labeller node is LiDAR-only and never waits for images.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from perception_nodes import stats as reasons
from perception_nodes.assembly import CameraInput, FrameAssembler, SyncedSet, camera_inputs
from perception_nodes.config import PerceptionConfig, keys, with_overrides
from perception_nodes.io.messages import MessageTypes
from perception_nodes.io.writer import (LABELED_POINTS, OCCUPANCY, SEMANTIC_VOXELS, SIMILARITY, OutputMessage,
                                        OutputWriter, overlay_key)
from perception_nodes.runtime.diagnostics import DiagnosticsReporter, diagnostic_array
from perception_nodes.runtime.extrinsics import ExtrinsicsCache
from perception_nodes.runtime.query import similarity_scores
from perception_nodes.runtime.watchdog import SilentTopicWatchdog
from perception_nodes.runtime.worker import KeepLatestWorker
from perception_nodes.stats import Stats

Publish = Callable[[str, str, Any], None]          # (key, msgtype, message)
LIVE_KEYS = frozenset(k.name for k in keys('node') if k.live)


def node_cameras(config: PerceptionConfig, uses_cameras: bool) -> list[CameraInput]:
    """Return the cameras a node synchronizes (none unless its labeller uses them)."""
    if not uses_cameras:
        return []
    i = config.inputs
    return camera_inputs(i.camera_topics, i.camera_info_topics, i.camera_names, i.camera_time_offsets)


class NodeCore:
    """One perception node's logic around a :class:`Pipeline` (module docstring)."""

    def __init__(self, config: PerceptionConfig, pipeline: Any, msgs: MessageTypes,
                 lookup: Callable[[str, str, int], Any], *, node_name: str = 'perception_node',
                 clock: Callable[[], float] = time.monotonic, publish: Publish | None = None,
                 wanted: Callable[[str], bool] | None = None, logger: Any = None) -> None:
        if not config.inputs.lidar_topic:
            raise ValueError('inputs.lidar_topic must name the PointCloud2 topic')
        self.config = config
        self.pipeline = pipeline
        self.msgs = msgs
        self.node_name = node_name
        self.publish: Publish = publish or (lambda key, msgtype, msg: None)
        self.wanted = wanted
        self.log = logger or logging.getLogger(node_name)
        labeller = getattr(pipeline, 'labeller', None)
        self.uses_cameras = bool(labeller is not None and labeller.needs_cameras)
        self.cameras = node_cameras(config, self.uses_cameras)
        if self.uses_cameras and not self.cameras:
            raise ValueError(f'labeller {config.labeller.kind} needs cameras: set inputs.camera_topics')
        self.stats = Stats(clock)
        self.watchdog = SilentTopicWatchdog(self.input_topics, config.node.silent_topic_timeout, clock)
        self.extrinsics = ExtrinsicsCache(lookup, config.node.static_extrinsics)
        # through a fixed frame the transforms move with the robot: no cache
        lookup_ = self.extrinsics.get if not config.inputs.fixed_frame else lookup
        self.assembler = FrameAssembler(self.cameras, lookup_, self.stats, config.inputs.lidar_frame,
                                        config.inputs.fixed_frame)
        self.writer = OutputWriter(msgs, config.overlay.unknown_color)
        self.worker: KeepLatestWorker[SyncedSet] = KeepLatestWorker(
            self.process, max_age_s=config.node.max_frame_age, clock=clock, on_error=self._worker_error,
            name=f'{node_name}-worker')
        self.reporter = DiagnosticsReporter(node_name)
        self._infos: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._pending_config: PerceptionConfig | None = None
        self._pending_query: str | None = None
        self.query_text: str | None = None
        self.query_embedding: np.ndarray | None = None
        self.announce = True               # publish LabelInfo with the next frame (start, vocabulary change)
        self._frames = 0
        self.overruns = 0                  # consecutive frames slower than node.max_processing_time
        self.last_processing_s = 0.0
        self.skipped_outputs: list[str] = []   # outputs of the last frame not built (no subscriber)
        self._pipeline_key: tuple | None = None

    @property
    def input_topics(self) -> list[str]:
        """Topics fed to the synchronizer: the cloud, then each used camera's image."""
        return [self.config.inputs.lidar_topic] + [c.image_topic for c in self.cameras]

    @property
    def backend_name(self) -> str:
        labeller = getattr(self.pipeline, 'labeller', None)
        name = getattr(self.pipeline, 'labeller_name', 'none')
        backend = getattr(labeller, 'backend_name', '')
        return f'{name} ({backend})' if backend else name

    # -- start / stop -------------------------------------------------------------------------------
    def start(self, threaded: bool = True) -> None:
        if threaded:
            self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        close = getattr(self.pipeline, 'close', None)
        if close is not None:
            close()

    # -- subscription side ----------------------------------------------------------------------------
    def on_input(self, topic: str) -> None:
        """Any input message arrived (before synchronization): rates and the silent-topic watchdog."""
        self.watchdog.message(topic)
        self.stats.arrived(topic)

    def on_camera_info(self, camera: str, msg: Any) -> None:
        with self._lock:
            self._infos[camera] = msg

    def on_synchronized(self, cloud: Any, *images: Any) -> None:
        """Hand a synchronized set to the worker (an older set still waiting is dropped, counted)."""
        self.watchdog.synchronized()
        self.stats.arrived(reasons.SYNC_SETS)
        self.stats.count(reasons.SYNC_SETS)
        with self._lock:
            infos = dict(self._infos)
        self.worker.submit(SyncedSet(cloud, list(images), infos))

    def on_clock_jump(self, reason: str) -> None:
        """Time went backwards (``ros2 bag play --loop``): drop what waits and count it."""
        self.worker.clear_pending()
        self.extrinsics.clear()
        self.stats.count(reasons.SYNC_RESETS, problem=reason)

    def on_query(self, text: str) -> None:
        """Set a free-text grounding query; '' clears it. Its embedding is computed on the worker."""
        with self._lock:
            self._pending_query = str(text).strip()

    def request_parameters(self, changes: dict[str, Any]) -> str | None:
        """Validate live changes: None (accepted, applied from the next frame) or why they are refused."""
        for name in changes:
            if name not in LIVE_KEYS:
                known = name in {k.name for k in keys('node')}
                return (f'parameter {name!r} is read-only while the node runs (restart to change it)' if known
                        else f'unknown parameter {name!r}')
        with self._lock:
            base = self._pending_config or self.config
        try:
            updated = with_overrides(base, changes)
            if (updated.vocabulary.classes, updated.vocabulary.templates) != \
                    (base.vocabulary.classes, base.vocabulary.templates):
                from perception_nodes.vocabulary import load_templates, load_vocabulary
                load_vocabulary(updated.vocabulary.classes)
                load_templates(updated.vocabulary.templates or None)
        except (ValueError, OSError) as exc:
            return str(exc)
        with self._lock:
            self._pending_config = updated
        self.worker.max_age_s = updated.node.max_frame_age
        self.watchdog.timeout_s = updated.node.silent_topic_timeout
        return None

    # -- periodic ---------------------------------------------------------------------------------------
    def check_inputs(self) -> str | None:
        """Return a warning (rate-limited) when no synchronized set came for ``node.silent_topic_timeout``."""
        return self.watchdog.check()

    def diagnostics(self, stamp_ns: int) -> Any:
        """diagnostic_msgs/msg/DiagnosticArray for /diagnostics."""
        extra = {'vocabulary': ', '.join(self.pipeline.class_names), 'query': self.query_text or '',
                 'labels meaningful': str(bool(getattr(self.pipeline, 'meaningful', False))),
                 'outputs skipped (no subscriber)': ', '.join(self.skipped_outputs) or 'none'}
        entries = self.reporter.statuses(self.stats, self.worker.counts, self.input_topics,
                                         self.watchdog.problem(), self.backend_name, extra,
                                         processing=(self.last_processing_s,
                                                     self.config.node.max_processing_time, self.overruns))
        return diagnostic_array(self.msgs, stamp_ns, entries)

    def label_info(self, stamp_ns: int = 0) -> OutputMessage:
        """vision_msgs/LabelInfo of the active vocabulary (published transient-local on each change)."""
        return self.writer.label_info(self.pipeline.class_names, stamp_ns, '',
                                      self.config.labeller.unknown_threshold)

    # -- worker side ----------------------------------------------------------------------------------------
    def process(self, synced: SyncedSet) -> list[OutputMessage]:
        """One synchronized set -> the published messages (also returned)."""
        self._apply_pending()
        started = time.perf_counter()
        published: list[OutputMessage] = []
        if self.announce:
            published.append(self.label_info())
            self.announce = False
        frame = self.assembler.assemble(synced, index=self._frames)
        if frame is not None:
            self._frames += 1
            self.stats.latency('assemble', (time.perf_counter() - started) * 1e3)
            wants = self._wanted_outputs()
            self._configure_pipeline(wants)
            outputs = self.pipeline.process(frame)
            for stage, ms in outputs.timings_ms.items():
                self.stats.latency(stage, ms)
            t0 = time.perf_counter()
            similarity = None
            if self.query_embedding is not None and wants.get(SIMILARITY, False):
                if outputs.embeddings is None:
                    self.stats.count(reasons.BAD_QUERY, problem='the labeller gave no point features')
                else:
                    similarity = similarity_scores(outputs.embeddings, self.query_embedding)
            want = lambda key: wants.get(key, self._want(key))      # noqa: E731
            published += self.writer.frame_messages(outputs, want, similarity)
            self.stats.latency('convert', (time.perf_counter() - t0) * 1e3)
        for m in published:
            self.publish(m.key, m.msgtype, m.msg)
        if frame is not None:
            elapsed = time.perf_counter() - started
            self.last_processing_s = elapsed
            self.overruns = self.overruns + 1 if elapsed > self.config.node.max_processing_time else 0
            self.stats.latency('total', elapsed * 1e3)
            self.stats.count(reasons.FRAMES_PUBLISHED)
        return published

    def _want(self, key: str) -> bool:
        return True if self.wanted is None else bool(self.wanted(key))

    def _wanted_outputs(self) -> dict[str, bool]:
        """Per output this frame can produce: is anyone subscribed (``wanted``); the others are listed."""
        cfg = self.config
        keys_ = [LABELED_POINTS]
        keys_ += [OCCUPANCY] if cfg.grids.nav_grid else []
        keys_ += [SEMANTIC_VOXELS] if cfg.grids.voxels else []
        keys_ += [overlay_key(c.name) for c in self.cameras] if cfg.overlay.enabled else []
        keys_ += [SIMILARITY] if self.query_embedding is not None else []
        wants = {key: self._want(key) for key in keys_}
        self.skipped_outputs = [key for key, wanted in wants.items() if not wanted]
        return wants

    def _configure_pipeline(self, wants: dict[str, bool]) -> None:
        """Give the pipeline the config with the stages of unwanted outputs switched off."""
        cfg = self.config
        overlays = any(wants.get(overlay_key(c.name), False) for c in self.cameras)
        key = (self.query_embedding is not None, wants.get(OCCUPANCY, False),
               wants.get(SEMANTIC_VOXELS, False), overlays)
        if key == self._pipeline_key:
            return
        self._pipeline_key = key
        grids = dataclasses.replace(cfg.grids, nav_grid=cfg.grids.nav_grid and wants.get(OCCUPANCY, False),
                                    voxels=cfg.grids.voxels and wants.get(SEMANTIC_VOXELS, False))
        overlay = dataclasses.replace(cfg.overlay, enabled=cfg.overlay.enabled and overlays)
        embeddings = cfg.outputs.embeddings or self.query_embedding is not None
        outputs = dataclasses.replace(cfg.outputs, embeddings=embeddings)
        self.pipeline.config = dataclasses.replace(cfg, grids=grids, overlay=overlay, outputs=outputs)

    # -- internals ------------------------------------------------------------------------------------------
    def _apply_pending(self) -> None:
        with self._lock:
            config, self._pending_config = self._pending_config, None
            query, self._pending_query = self._pending_query, None
        if config is not None:
            old = self.config
            vocab_changed = (config.vocabulary.classes, config.vocabulary.templates) != \
                (old.vocabulary.classes, old.vocabulary.templates)
            if vocab_changed:
                try:
                    self.pipeline.set_vocabulary(config.vocabulary.classes,
                                                 config.vocabulary.templates or None)
                    self.announce = True
                except Exception as exc:  # noqa: BLE001  (keep running with the previous vocabulary)
                    config = dataclasses.replace(config, vocabulary=old.vocabulary)
                    problem = f'vocabulary change failed, kept the previous one: {type(exc).__name__}: {exc}'
                    self.stats.count(reasons.FRAME_FAILED, problem=problem)
                    self.log.error(problem)
            self._set_config(config)
            if vocab_changed and self.query_text:
                self._set_query(self.query_text)
        if query is not None:
            self._set_query(query)

    def _set_config(self, config: PerceptionConfig) -> None:
        self.config = config
        self._pipeline_key = None          # the next frame gives the pipeline its config

    def _set_query(self, text: str) -> None:
        if not text:
            self.query_text, self.query_embedding = None, None
            self._set_config(self.config)
            return
        try:
            emb = np.asarray(self.pipeline.text_embedding(text), dtype=np.float32).reshape(-1)
            norm = float(np.linalg.norm(emb))
            if not np.isfinite(norm) or norm == 0:
                raise ValueError('text embedding is zero or not finite')
        except Exception as exc:  # noqa: BLE001
            self.stats.count(reasons.BAD_QUERY, problem=f'{text!r}: {type(exc).__name__}: {exc}')
            self.query_text, self.query_embedding = None, None
            return
        self.query_text, self.query_embedding = text, emb / norm
        self._set_config(self.config)

    def _worker_error(self, exc: BaseException, synced: SyncedSet) -> None:
        self.stats.count(reasons.FRAME_FAILED, problem=f'{type(exc).__name__}: {exc}')
        self.log.error(f'frame failed and was skipped: {type(exc).__name__}: {exc}')
