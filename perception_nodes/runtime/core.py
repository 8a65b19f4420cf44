"""What a perception node does besides calling rclpy: the shared core of ``fusion_node`` and ``student_node``.

Subscription side (cheap, called from executor callbacks): ``on_input``, ``on_camera_info``,
``on_synchronized``, ``on_query``, ``request_parameters``. Worker side (one thread, keep-latest):
``process`` assembles the Frame, runs inference (``infer``, given by the subclass), converts the
results into messages and hands each to ``publish(key, msg)``. Output keys (topics relative to the node):

- ``labeled_points`` PointCloud2 (x, y, z, intensity, label, score, instance, rgb)
- ``occupancy`` nav_msgs/OccupancyGrid, ``semantic_voxels`` visualization_msgs/MarkerArray
- ``overlay/<camera>`` sensor_msgs/Image (when ``publish_overlays``)
- ``similarity`` PointCloud2 (x, y, z, similarity, rgb) for the active free-text query
- ``classes`` std_msgs/String: JSON {vocabulary, classes, colors, unknown_label}, after each vocabulary change
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from perception_nodes.frame import Frame
from perception_nodes.io.messages import MessageTypes
from perception_nodes.io.outputs import (labeled_cloud, occupancy_grid_msg, overlay_image_msg,
                                         similarity_cloud, voxel_markers)
from perception_nodes.io.stamps import header
from perception_nodes.outputs import UNKNOWN_LABEL, Outputs
from perception_nodes.runtime import stats as counters
from perception_nodes.runtime.assembly import CameraInfoCache, FrameAssembler, SyncedSet
from perception_nodes.runtime.diagnostics import DiagnosticsReporter, diagnostic_array
from perception_nodes.runtime.extrinsics import ExtrinsicsCache, Lookup
from perception_nodes.runtime.params import NodeParams, VocabularyRequest
from perception_nodes.runtime.query import similarity_scores
from perception_nodes.runtime.stats import RuntimeStats
from perception_nodes.runtime.watchdog import SilentTopicWatchdog
from perception_nodes.runtime.worker import KeepLatestWorker

Publish = Callable[[str, Any], None]


class PerceptionCore:
    """Shared machinery; subclasses implement ``infer``, ``apply_vocabulary`` and ``text_embedding``."""

    node_name = 'perception_node'

    def __init__(self, params: NodeParams, msgs: MessageTypes, lookup: Lookup, *,
                 clock: Callable[[], float] = time.monotonic, publish: Publish | None = None,
                 logger: logging.Logger | Any | None = None, share_dir: str | None = None) -> None:
        self.params = params
        self.msgs = msgs
        self.share_dir = share_dir
        self.publish: Publish = publish or (lambda key, msg: None)
        self.log = logger or logging.getLogger(self.node_name)
        self.stats = RuntimeStats(clock)
        self.watchdog = SilentTopicWatchdog(params.input_topics, params.silent_topic_timeout, clock)
        self.extrinsics = ExtrinsicsCache(lookup, params.static_extrinsics)
        self.assembler = FrameAssembler(params.cameras, self.extrinsics, self.stats)
        self.infos = CameraInfoCache()
        self.worker: KeepLatestWorker[SyncedSet] = KeepLatestWorker(
            self.process, max_age_s=params.max_frame_age, clock=clock, on_error=self._worker_error,
            name=f'{self.node_name}-worker')
        self.reporter = DiagnosticsReporter(self.node_name)
        self._lock = threading.Lock()
        self._pending_params: NodeParams | None = None
        self._pending_query: str | None = None
        self.query_text: str | None = None
        self.query_embedding: np.ndarray | None = None
        self.vocabulary: VocabularyRequest | None = None
        self.palette = np.zeros((0, 3), np.uint8)
        self._announce_classes = False
        self._frames = 0

    # -- to implement ---------------------------------------------------------------------
    def infer(self, frame: Frame) -> Outputs:
        raise NotImplementedError

    def apply_vocabulary(self, request: VocabularyRequest) -> None:
        """Use ``request`` from the next frame on (text embeddings from the cache or recomputed)."""
        raise NotImplementedError

    def text_embedding(self, text: str) -> np.ndarray:
        """(C,) embedding of a free-text query in the space of ``Outputs.embeddings``."""
        raise NotImplementedError

    @property
    def backend_name(self) -> str:
        return ''

    # -- start-up ---------------------------------------------------------------------------
    def start(self, threaded: bool = True) -> None:
        """Load the initial vocabulary, then start the worker thread (``threaded``)."""
        self._set_vocabulary(self.params.vocabulary)
        if threaded:
            self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    # -- subscription side --------------------------------------------------------------------
    def on_input(self, topic: str) -> None:
        """Any input message arrived (before synchronization): rates and the silent-topic watchdog."""
        self.watchdog.message(topic)
        self.stats.arrived(topic)

    def on_camera_info(self, camera: str, msg: Any) -> None:
        self.infos.update(camera, msg)

    def on_synchronized(self, cloud: Any, *images: Any) -> None:
        """Hand a synchronized set from message_filters to the worker (older pending sets are dropped)."""
        self.watchdog.synchronized()
        self.stats.arrived(counters.SYNC_SETS)
        self.stats.count(counters.SYNC_SETS)
        self.worker.submit(SyncedSet(cloud, list(images), self.infos.snapshot()))

    def on_query(self, text: str) -> None:
        """Set a free-text grounding query; '' clears it. Its embedding is computed on the worker."""
        text = str(text).strip()
        with self._lock:
            self._pending_query = text

    def request_parameters(self, changes: dict[str, Any]) -> str | None:
        """Validate live parameter changes: None (accepted, applied from the next frame) or the reason."""
        with self._lock:
            base = self._pending_params or self.params
            try:
                updated = base.updated(changes, self.share_dir)
            except ValueError as exc:
                return str(exc)
            self._pending_params = updated
        # cheap settings take effect at once; the vocabulary is switched by the worker between frames
        self.worker.max_age_s = updated.max_frame_age
        self.watchdog.timeout_s = updated.silent_topic_timeout
        return None

    # -- periodic -----------------------------------------------------------------------------
    def check_inputs(self) -> str | None:
        """Return a warning to log when no synchronized set arrived for ``silent_topic_timeout``.

        Rate-limited.
        """
        return self.watchdog.check()

    def diagnostics(self, stamp_ns: int) -> Any:
        """diagnostic_msgs/msg/DiagnosticArray for /diagnostics."""
        extra = {'vocabulary': ', '.join(self.vocabulary.names) if self.vocabulary else '',
                 'query': self.query_text or ''}
        entries = self.reporter.statuses(self.stats, self.worker.counts, self.params.input_topics,
                                         self.watchdog.problem(), self.backend_name, extra)
        return diagnostic_array(self.msgs, stamp_ns, entries)

    def classes_message(self) -> Any:
        """std_msgs/String with the active vocabulary as JSON (label value k = classes[k])."""
        voc = self.vocabulary
        data = {'vocabulary': (voc.source or 'custom') if voc else '',
                'classes': list(voc.names) if voc else [],
                'colors': [list(map(int, c)) for c in self.palette], 'unknown_label': UNKNOWN_LABEL}
        return self.msgs.new('std_msgs/msg/String', data=json.dumps(data))

    # -- worker side ----------------------------------------------------------------------------
    def process(self, synced: SyncedSet) -> dict[str, Any]:
        """One synchronized set -> published messages (returned too, keyed by output name)."""
        self._apply_pending()
        started = time.perf_counter()
        frame = self.assembler.assemble(synced, index=self._frames)
        if frame is None:
            self.stats.count(counters.FRAMES_SKIPPED)
            return {}
        self._frames += 1
        self.stats.latency('assemble', (time.perf_counter() - started) * 1e3)
        t0 = time.perf_counter()
        outputs = self.infer(frame)
        self.stats.latency('inference', (time.perf_counter() - t0) * 1e3)
        for stage, ms in outputs.timings_ms.items():
            self.stats.latency(stage, ms)
        t0 = time.perf_counter()
        messages = self.to_messages(outputs, frame)
        self.stats.latency('convert', (time.perf_counter() - t0) * 1e3)
        for key, msg in messages.items():
            self.publish(key, msg)
        self.stats.latency('total', (time.perf_counter() - started) * 1e3)
        self.stats.count(counters.FRAMES_PUBLISHED)
        return messages

    def to_messages(self, outputs: Outputs, frame: Frame) -> dict[str, Any]:
        msgs = self.msgs
        hdr = header(outputs.frame_id, outputs.stamp_ns, msgs)
        out: dict[str, Any] = {}
        if self._announce_classes:
            out['classes'] = self.classes_message()
            self._announce_classes = False
        out['labeled_points'] = labeled_cloud(outputs, hdr, self.palette, msgs)
        if outputs.occupancy is not None:
            grid = outputs.occupancy
            out['occupancy'] = occupancy_grid_msg(grid, header(grid.frame_id or outputs.frame_id,
                                                               outputs.stamp_ns, msgs), msgs)
        if outputs.voxels is not None:
            out['semantic_voxels'] = voxel_markers(outputs.voxels, hdr, outputs.class_names, self.palette,
                                                   msgs)
        if self.params.publish_overlays:
            views = {view.name: view for view in frame.cameras}
            for name, image in outputs.overlays.items():
                view = views.get(name)
                cam_hdr = header(view.model.frame_id, view.stamp_ns, msgs) if view else hdr
                out[f'overlay/{name}'] = overlay_image_msg(image, cam_hdr, msgs)
        if self.query_embedding is not None:
            if outputs.embeddings is None:
                self.stats.count(counters.BAD_QUERY, problem='the model gave no point embeddings for queries')
            else:
                sim = similarity_scores(outputs.embeddings, self.query_embedding)
                out['similarity'] = similarity_cloud(outputs.points, sim, hdr, msgs)
        return out

    # -- internals ------------------------------------------------------------------------------
    def _apply_pending(self) -> None:
        with self._lock:
            params, self._pending_params = self._pending_params, None
            query, self._pending_query = self._pending_query, None
        if params is not None:
            old = self.params
            self.params = params
            if params.vocabulary != old.vocabulary:
                try:
                    self._set_vocabulary(params.vocabulary)
                except Exception as exc:  # keep running with the previous vocabulary
                    self.params = dataclasses.replace(params, vocabulary=old.vocabulary)
                    problem = f'vocabulary change failed, kept the previous one: {type(exc).__name__}: {exc}'
                    self.stats.count(counters.PIPELINE_ERRORS, problem=problem)
                    self.log.error(problem)
        if query is not None:
            self._set_query(query)

    def _set_vocabulary(self, request: VocabularyRequest) -> None:
        self.apply_vocabulary(request)
        self.vocabulary = request
        self.palette = np.asarray(request.colors, dtype=np.uint8).reshape(-1, 3)
        self._announce_classes = True
        self.log.info(f'vocabulary: {len(request.names)} classes ({", ".join(request.names[:8])}'
                      f'{", ..." if len(request.names) > 8 else ""})')
        if self.query_text:  # the text encoder may have changed with the vocabulary's templates
            self._set_query(self.query_text)

    def _set_query(self, text: str) -> None:
        if not text:
            self.query_text, self.query_embedding = None, None
            return
        try:
            emb = np.asarray(self.text_embedding(text), dtype=np.float32).reshape(-1)
            norm = float(np.linalg.norm(emb))
            if not np.isfinite(norm) or norm == 0:
                raise ValueError('text embedding is zero or not finite')
        except Exception as exc:
            self.stats.count(counters.BAD_QUERY, problem=f'{text!r}: {type(exc).__name__}: {exc}')
            self.query_text, self.query_embedding = None, None
            return
        self.query_text, self.query_embedding = text, emb / norm

    def _worker_error(self, exc: BaseException, synced: SyncedSet) -> None:
        self.stats.count(counters.PIPELINE_ERRORS, problem=f'{type(exc).__name__}: {exc}')
        self.log.error(f'frame failed and was skipped: {type(exc).__name__}: {exc}')
