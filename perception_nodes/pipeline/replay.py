"""Replay a recorded bag through the pipeline and write an output bag, a summary JSON and a legend PNG.

Output topics (``replay.topic_prefix``, default ``/ovp``), stamped with the LiDAR sweep's stamp and in
its frame (overlays: the camera's stamp and frame):

- ``/ovp/labeled_points``   sensor_msgs/PointCloud2 (x, y, z, intensity, label, score, instance, rgb)
- ``/ovp/occupancy``        nav_msgs/OccupancyGrid
- ``/ovp/semantic_voxels``  visualization_msgs/MarkerArray
- ``/ovp/<camera>/overlay`` sensor_msgs/Image (rgb8), ``<camera>`` = the image topic without its last
  ``image*`` component (``/kitti/camera_color_left/image_raw`` -> ``/ovp/kitti/camera_color_left/overlay``)
- ``/tf_static``            copied from the input bag

Files next to the output bag ``OUT``: ``OUT.summary.json`` (frames, drops by reason, per-stage latency
percentiles, frames/s, class legend, notes) and ``OUT.legend.png``; ``OUT.overlays/`` holds the overlays of
the first ``replay.overlay_pngs`` frames as PNG. The bag is written atomically (nothing appears under
``OUT`` unless the run completes); a bag that cannot be read to its end still yields a complete output bag
for the frames read, and the error is reported in the summary.
"""
from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from perception_nodes.atomic import atomic_write_text
from perception_nodes.config import PipelineConfig, config_to_dict
from perception_nodes.io.bags import BagError, BagWriter, bag_topics, iter_messages, open_bag
from perception_nodes.io.outputs import labeled_cloud, occupancy_grid_msg, overlay_image_msg, voxel_markers
from perception_nodes.io.stamps import header
from perception_nodes.outputs import Outputs
from perception_nodes.overlay import save_legend, save_png
from perception_nodes.pipeline.core import Pipeline

POINTS_TYPE = 'sensor_msgs/msg/PointCloud2'
GRID_TYPE = 'nav_msgs/msg/OccupancyGrid'
MARKERS_TYPE = 'visualization_msgs/msg/MarkerArray'
IMAGE_TYPE = 'sensor_msgs/msg/Image'
TF_STATIC = '/tf_static'


def overlay_topic(prefix: str, camera: str) -> str:
    """``/ovp/<camera namespace>/overlay`` for a camera (image topic) name."""
    parts = [p for p in str(camera).strip('/').split('/') if p]
    if len(parts) > 1 and parts[-1].startswith('image'):
        parts = parts[:-1]
    name = re.sub(r'[^A-Za-z0-9_/]', '_', '/'.join(parts)) or 'camera'
    name = '/'.join(('_' + p) if p[0].isdigit() else p for p in name.split('/'))
    return f'{prefix.rstrip("/")}/{name}/overlay'


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean / max of a list of milliseconds (empty -> {})."""
    if not values:
        return {}
    v = np.asarray(values, dtype=np.float64)
    return {'p50': round(float(np.percentile(v, 50)), 3), 'p90': round(float(np.percentile(v, 90)), 3),
            'p99': round(float(np.percentile(v, 99)), 3), 'mean': round(float(v.mean()), 3),
            'max': round(float(v.max()), 3)}


def frame_messages(outputs: Outputs, pipeline: Pipeline, prefix: str,
                   camera_frames: dict[str, tuple[str, int]], write_overlays: bool = True,
                   msgs: Any = None) -> list[tuple[str, str, Any, int]]:
    """(topic, type, message, log time) of one processed frame; ``camera_frames``: name -> (frame, stamp)."""
    stamp = outputs.stamp_ns
    hdr = header(outputs.frame_id, stamp, msgs)
    cloud = labeled_cloud(outputs, hdr, pipeline.palette, msgs)
    out = [(f'{prefix}/labeled_points', POINTS_TYPE, cloud, stamp)]
    if outputs.occupancy is not None:
        grid_hdr = header(outputs.occupancy.frame_id or outputs.frame_id, stamp, msgs)
        grid = occupancy_grid_msg(outputs.occupancy, grid_hdr, msgs)
        out.append((f'{prefix}/occupancy', GRID_TYPE, grid, stamp))
    if outputs.voxels is not None:
        out.append((f'{prefix}/semantic_voxels', MARKERS_TYPE,
                    voxel_markers(outputs.voxels, hdr, outputs.class_names, pipeline.palette, msgs), stamp))
    if write_overlays:
        for name, image in outputs.overlays.items():
            frame_id, cam_stamp = camera_frames.get(name, (outputs.frame_id, stamp))
            out.append((overlay_topic(prefix, name), IMAGE_TYPE,
                        overlay_image_msg(image, header(frame_id, cam_stamp, msgs), msgs), stamp))
    return out


def frame_assembly_config(bag: str | os.PathLike, replay_config: Any) -> Any:
    """Return the replay's FrameAssemblyConfig.

    Topics come from the config or are chosen from the bag, and are checked to exist.
    """
    from perception_nodes.io.frames import FrameAssemblyConfig, resolve_config
    rc = replay_config
    cfg = resolve_config(bag, FrameAssemblyConfig(lidar_topic=rc.lidar_topic or None,
                                                  camera_topics=list(rc.camera_topics) or None,
                                                  allow_partial=rc.allow_partial,
                                                  slop_ns=int(rc.sync_slop_ms * 1e6)))
    with open_bag(bag) as reader:
        existing = bag_topics(reader)
    missing = [t for t in [cfg.lidar_topic, *cfg.camera_topics] if t not in existing]
    if missing:
        raise ValueError(f'{bag}: requested topic(s) {missing} not in bag; it has: '
                         + ', '.join(f'{t} ({k})' for t, k in sorted(existing.items())))
    return cfg


def side_paths(out: Path) -> dict[str, Path]:
    """Where the summary JSON, legend PNG and overlay PNGs of output bag ``out`` go."""
    return {'summary': out.with_name(out.name + '.summary.json'),
            'legend': out.with_name(out.name + '.legend.png'),
            'overlays': out.with_name(out.name + '.overlays')}


def replay_bag(bag: str | os.PathLike, out: str | os.PathLike, pipeline: Pipeline,
               config: PipelineConfig | None = None, progress: bool = True, overwrite: bool = False,
               on_frame: Callable[[Outputs], None] | None = None) -> dict[str, Any]:
    """Stream ``bag`` through ``pipeline`` into the output bag ``out``; returns (and writes) the summary."""
    from tqdm import tqdm

    from perception_nodes.io.frames import AssemblyStats, iter_frames

    config = config or pipeline.config
    rc = config.replay
    bag, out = Path(bag), Path(out)
    if not bag.exists():
        raise BagError(f'{bag}: no such bag')
    paths = side_paths(out)
    frame_cfg = frame_assembly_config(bag, rc)
    stats = AssemblyStats()
    latencies: dict[str, list[float]] = {}
    notes: Counter[str] = Counter()
    counters_before = Counter(pipeline.counters)
    frames = 0
    error = None
    png_written: list[str] = []
    skipped: Counter[str] = Counter()
    interrupted = False
    start = time.perf_counter()
    with BagWriter(out, storage=rc.storage, overwrite=overwrite) as writer:
        try:
            with open_bag(bag) as reader:
                has_tf_static = TF_STATIC in bag_topics(reader)
            if has_tf_static:
                for msg in iter_messages(bag, topics=[TF_STATIC], deserialize=False):
                    writer.write_raw(TF_STATIC, msg.msgtype, msg.msg, msg.log_time_ns)
        except BagError as exc:
            error = str(exc)
        iterator = iter_frames(bag, frame_cfg, stats)
        bar = tqdm(iterator, desc=f'replay {bag.name}', unit='frame', disable=not progress,
                   total=rc.max_frames or None)
        try:
            for frame in bar:
                if rc.max_frames and frames >= rc.max_frames:
                    break
                try:   # a frame is written completely or not at all
                    outputs = pipeline.process(frame)
                    cams = {v.name: (v.model.frame_id, v.stamp_ns or frame.stamp_ns) for v in frame.cameras}
                    messages = frame_messages(outputs, pipeline, rc.topic_prefix, cams, rc.write_overlays,
                                              writer.msgs)
                except (ValueError, RuntimeError) as exc:
                    skipped[f'{type(exc).__name__}: {exc}'] += 1
                    continue
                for topic, msgtype, msg, stamp in messages:
                    writer.write(topic, msgtype, msg, stamp)
                for stage, ms in outputs.timings_ms.items():
                    latencies.setdefault(stage, []).append(ms)
                notes.update(outputs.notes)
                if frames < rc.overlay_pngs:
                    for name, image in outputs.overlays.items():
                        safe = re.sub(r'[^A-Za-z0-9_]+', '_', name).strip('_') or 'camera'
                        png = save_png(paths['overlays'] / f'frame{frames:04d}_{safe}.png', image)
                        png_written.append(str(png))
                if on_frame is not None:
                    on_frame(outputs)
                frames += 1
        except BagError as exc:          # truncated / corrupted input: keep what was processed
            error = str(exc)
        except KeyboardInterrupt:        # keep what was processed; the caller sees 'interrupted'
            interrupted = True
        finally:
            bar.close()
        topic_counts = dict(writer.counts)
    wall = time.perf_counter() - start
    cam_drops = {k: v - counters_before.get(k, 0) for k, v in pipeline.counters.items()
                 if v - counters_before.get(k, 0)}
    palette = pipeline.palette
    summary = {
        'input': str(bag),
        'output': str(out),
        'storage': rc.storage,
        'frames': frames,
        'frame_assembly': stats.to_dict(),
        'degraded_views': cam_drops,
        'skipped_frames': dict(skipped),
        'error': error,
        'interrupted': interrupted,
        'wall_s': round(wall, 3),
        'frames_per_s': round(frames / wall, 3) if wall > 0 and frames else 0.0,
        'latency_ms': {stage: percentiles(v) for stage, v in latencies.items()},
        'labels_meaningful': pipeline.meaningful,
        'teacher': ('none' if pipeline.teacher is None else
                    f'{config.teacher.clip_model} ({config.teacher.clip_pretrained})'
                    if pipeline.clip is not None else type(pipeline.teacher).__name__),
        'classes': [{'label': k, 'name': name, 'rgb': [int(c) for c in palette[k]]}
                    for k, name in enumerate(pipeline.class_names)],
        'unknown_label': 65535,
        'topics': topic_counts,
        'notes': [f'{text} (x{count})' if count > 1 else text for text, count in notes.items()],
        'legend_png': str(paths['legend']),
        'overlay_pngs': png_written,
        'config': config_to_dict(config),
    }
    if pipeline.teacher is None:
        title = 'geometry only: every label unknown (overlay colours = instances)'
    else:
        title = 'classes' if pipeline.meaningful else 'classes (RANDOM weights: labels meaningless)'
    save_legend(paths['legend'], pipeline.class_names, palette, title=title)
    atomic_write_text(paths['summary'], json.dumps(summary, indent=2) + '\n')
    return summary
