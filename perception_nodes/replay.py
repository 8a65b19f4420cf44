"""Replay a recorded bag through exactly what the robot runs, into an output bag (``ovp replay``).

The bag is read once (:class:`~perception_nodes.io.bag_source.BagSource`), its synchronized sets go through
the one frame assembler, the configured :class:`~perception_nodes.pipeline.Pipeline` (teacher, student or
ensemble labeller) and the one output writer (``io.writer``), and every message is written to
``<outputs.topic_prefix>/<key>`` of the output bag; ``/tf_static`` is copied. The output is one unit,
published by one rename when the run completes: ``OUT/`` is a ROS 2 bag folder that also holds
``summary.json`` (frames, every skipped message / camera / frame with its reason, per-stage latency
percentiles, labeller provenance, notes, the config), ``legend.png`` and ``overlays/*.png``. An interrupted
run publishes nothing and leaves a previous OUT as it was; what a killed run left beside OUT is repaired
by the next run (``io.bags.recover_output``; summary ``recovered``). A frame's messages are written
whole or not at all (``BagWriter.write_all``): a message the bag cannot store skips its frame
(``frame_failed``, with the reason). docs/robustness.md states these guarantees.

:func:`processed_frames` is the loop itself (BagSource → the one FrameAssembler → ``Pipeline.process``),
as an iterator: ``ovp replay``, ``ovp eval`` and ``ovp pseudo-label`` all run it. A frame the assembler
refuses is counted by the assembler with its reason; a frame whose processing raises costs that frame
only (``frame_failed``); a truncated or corrupted bag raises BagError after every readable frame.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from dataclasses import dataclass

from perception_nodes import stats as reasons
from perception_nodes.config import PerceptionConfig, config_to_dict
from perception_nodes.frame import Frame
from perception_nodes.assembly import camera_info_topic
from perception_nodes.io.bag_source import CAMERA_INFO, IMAGE_TYPES, TF_STATIC, BagSource
from perception_nodes.io.bags import BagError, BagWriteError, BagWriter
from perception_nodes.io.writer import OutputWriter
from perception_nodes.outputs import UNKNOWN_LABEL, Outputs
from perception_nodes.overlay import save_legend, save_png
from perception_nodes.pipeline import Pipeline
from perception_nodes.stats import Stats

__all__ = ['replay_bag', 'processed_frames', 'ProcessedFrame', 'NoFramesError', 'SUMMARY_NAME', 'LEGEND_NAME',
           'OVERLAY_DIR']


class NoFramesError(ValueError):
    """No frame of the bag could be processed: nothing is published; ``summary`` says why."""

    def __init__(self, summary: dict[str, Any]) -> None:
        reasons = Counter(e['what'] for e in summary['skipped'])
        why = ', '.join(f'{k} x{v}' for k, v in reasons.most_common()) or summary.get('error') or 'no frames'
        first = summary['skipped'][0]['why'] if summary['skipped'] else ''
        super().__init__(f'no frame of {summary["input"]} could be processed '
                         f'({why}){": " + first if first else ""};'
                         ' nothing was written')
        self.summary = summary


SUMMARY_NAME, LEGEND_NAME, OVERLAY_DIR = 'summary.json', 'legend.png', 'overlays'
NOT_COPIED = 'not_copied'         # a raw message (/tf_static) the output bag cannot store, per topic


@dataclass
class ProcessedFrame:
    """One frame of a bag and what the pipeline made of it."""

    index: int                 # position of the cloud in the bag
    frame: Frame
    outputs: Outputs


def processed_frames(source: BagSource, pipeline: Any, max_frames: int = 0,
                     raw_topics: tuple[str, ...] = (),
                     on_raw: Callable[[str, str, Any, int], None] | None = None) -> Iterator[ProcessedFrame]:
    """Yield each processed frame of ``source`` (module docstring); at most ``max_frames`` (0 = all)."""
    assembler = source.assembler()
    done = 0
    for index, synced in source.synced_sets(raw_topics, on_raw):
        if max_frames and done >= max_frames:
            break
        where = f'{source.path.name} cloud {index}'
        frame = assembler.assemble(synced, index, where)
        if frame is None:
            continue
        try:
            outputs = pipeline.process(frame)
        except Exception as exc:  # noqa: BLE001  (one frame's failure costs that frame only)
            source.stats.count(reasons.FRAME_FAILED, problem=f'{type(exc).__name__}: {exc}', where=where)
            continue
        done += 1
        yield ProcessedFrame(index, frame, outputs)


def replay_bag(bag: str | os.PathLike, out: str | os.PathLike, pipeline: Pipeline,
               config: PerceptionConfig | None = None, progress: bool = True, overwrite: bool = False,
               on_frame: Callable[[Outputs], None] | None = None,
               recovered: Sequence[str] = ()) -> dict[str, Any]:
    """Stream ``bag`` through ``pipeline`` into the output ``out``; returns the summary (module docstring).

    Raises ValueError (BagError) when the bag cannot be opened or lacks the configured topics (naming the
    topics it has), :class:`NoFramesError` when no frame could be processed, FileExistsError when ``out``
    exists without ``overwrite``; a KeyboardInterrupt passes through (nothing is published).
    ``recovered``: repairs the caller already made beside ``out`` (``io.bags.recover_output``), listed in
    the summary with the writer's own.
    """
    from tqdm import tqdm

    config = config or pipeline.config
    bag, out = Path(bag), Path(out)
    stats = Stats(latency_window=None)
    writer_msgs = OutputWriter(unknown_color=config.overlay.unknown_color)
    prefix = config.outputs.topic_prefix.rstrip('/')
    notes: Counter[str] = Counter()
    counters_before = Counter(pipeline.counters)
    frames, error, png_written = 0, None, []
    frames_with_camera = 0
    start = time.perf_counter()
    with BagSource(bag, config.inputs, stats) as source, \
            BagWriter(out, storage=config.replay.storage, overwrite=overwrite) as writer:
        label_info_written = False

        def copy_raw(topic: str, msgtype: str, data: Any, log_ns: int) -> None:
            try:
                writer.write_raw(topic, msgtype, data, log_ns)
            except BagWriteError as exc:      # e.g. an MCAP log time beyond int64: that message only
                stats.count(f'{NOT_COPIED}/{topic}', problem=str(exc), where=f'{topic} at {log_ns} ns')

        raw = (TF_STATIC,) if TF_STATIC in source.topics else ()
        limit = config.replay.max_frames
        bar = tqdm(desc=f'replay {bag.name}', unit='frame', disable=not progress, total=limit or None)
        try:
            for item in processed_frames(source, pipeline, limit, raw, copy_raw):
                outputs = item.outputs
                try:      # a frame is built completely before any of its messages is written
                    messages = writer_msgs.frame_messages(outputs)
                    if not label_info_written:
                        messages.append(writer_msgs.label_info(outputs.class_names, outputs.stamp_ns,
                                                               outputs.frame_id,
                                                               config.labeller.unknown_threshold))
                except Exception as exc:  # noqa: BLE001  (one frame's failure costs that frame only)
                    stats.count(reasons.FRAME_FAILED, problem=f'{type(exc).__name__}: {exc}',
                                where=f'{bag.name} cloud {item.index}')
                    continue
                try:      # whole or not at all: every stamp checked, every message serialized first
                    writer.write_all((f'{prefix}/{m.key}', m.msgtype, m.msg, m.stamp_ns) for m in messages)
                except BagWriteError as exc:
                    stats.count(reasons.FRAME_FAILED, problem=f'{type(exc).__name__}: {exc}',
                                where=f'{bag.name} cloud {item.index}')
                    continue
                label_info_written = True
                for stage, ms in outputs.timings_ms.items():
                    stats.latency(stage, ms)
                notes.update(outputs.notes)
                frames_with_camera += bool(item.frame.cameras)
                if frames < config.replay.overlay_pngs:
                    for name, image in outputs.overlays.items():
                        png = save_png(writer.staging / OVERLAY_DIR / f'frame{frames:04d}_{name}.png', image)
                        png_written.append(str(out / OVERLAY_DIR / png.name))
                if on_frame is not None:
                    on_frame(outputs)
                frames += 1
                bar.update(1)
        except BagError as exc:          # truncated / corrupted input: keep what was processed
            error = str(exc)
        finally:
            bar.close()
        wall = time.perf_counter() - start
        summary = _summary(bag, out, pipeline, config, stats, frames, frames_with_camera, error, wall, notes,
                           counters_before, png_written, dict(writer.counts), source)
        summary['recovered'] = [*recovered, *writer.recovered]
        if not frames:
            raise NoFramesError(summary)        # aborts the writer: no empty output under OUT
        _side_files(writer.staging, pipeline, summary)
    return summary


def _summary(bag: Path, out: Path, pipeline: Pipeline, config: PerceptionConfig, stats: Stats, frames: int,
             frames_with_camera: int, error: str | None, wall: float, notes: Counter[str],
             counters_before: Counter[str], pngs: list[str], topics: dict[str, int],
             source: BagSource) -> dict[str, Any]:
    s = stats.summary()
    warnings = []
    needs_cameras = pipeline.labeller is not None and pipeline.labeller.needs_cameras
    if needs_cameras and not source.cameras:
        lonely = [t for t, k in sorted(source.topics.items())
                  if k in IMAGE_TYPES and source.topics.get(camera_info_topic(t)) != CAMERA_INFO]
        warnings.append('the bag has no camera the teacher can use: ' + (
            f'image topic(s) {lonely} have no CameraInfo topic (looked for '
            f'{[camera_info_topic(t) for t in lonely]}; name them with inputs.camera_topics / '
            'inputs.camera_info_topics)' if lonely else 'no image topic with a CameraInfo topic'))
    if needs_cameras and frames and not frames_with_camera:
        warnings.append('no frame had a usable camera: the teacher labelled nothing, every label is unknown '
                        '(see skipped for why each camera was dropped)')
    degraded = {k: v - counters_before.get(k, 0) for k, v in pipeline.counters.items()
                if v - counters_before.get(k, 0)}
    return {
        'input': str(bag), 'output': str(out), 'storage': config.replay.storage,
        'lidar_topic': source.lidar_topic,
        'cameras': {c.name: {'image': c.image_topic, 'info': c.info_topic} for c in source.cameras},
        'frames': frames,
        'frames_with_camera': frames_with_camera,
        'counts': s['counts'],
        'skipped': s['skipped'],
        'skipped_not_listed': s.get('skipped_not_listed', 0),
        'degraded_views': degraded,
        'error': error,
        'warnings': warnings,
        'wall_s': round(wall, 3),
        'frames_per_s': round(frames / wall, 3) if wall > 0 and frames else 0.0,
        'latency_ms': s['latency_ms'],
        'labeller': pipeline.provenance(),
        'labels_meaningful': pipeline.meaningful and not warnings,
        'classes': [{'label': k, 'name': name, 'rgb': [int(c) for c in pipeline.palette[k]]}
                    for k, name in enumerate(pipeline.class_names)],
        'unknown_label': UNKNOWN_LABEL,
        'topics': topics,
        'notes': [f'{text} (x{count})' if count > 1 else text for text, count in notes.items()],
        'legend_png': str(out / LEGEND_NAME),
        'overlay_pngs': pngs,
        'config': config_to_dict(config),
    }


def _side_files(folder: Path, pipeline: Pipeline, summary: dict[str, Any]) -> None:
    if pipeline.labeller is None:
        title = 'geometry only: every label unknown (overlay colours = instances)'
    else:
        title = 'classes' if pipeline.meaningful else \
            'classes (labels MEANINGLESS: random / untrained weights)'
    save_legend(folder / LEGEND_NAME, pipeline.class_names, pipeline.palette, title=title)
    (folder / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + '\n', encoding='utf-8')
