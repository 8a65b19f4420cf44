"""Node-core overhead per KITTI frame (everything a node adds to the pipeline); prints ONE JSON line.

``NodeCore.process`` on full KITTI raw frames (120k-point cloud, 1242x375 rgb8 image, CameraInfo): the
frame assembler (cloud and image decode, CameraInfo, extrinsics) and the output writer (labeled cloud,
occupancy grid, semantic voxel markers, overlay image), with a pass-through pipeline that returns outputs
computed beforehand by the real Pipeline (tiny random CLIP teacher: realistic labels, grids, voxels and
overlays), so only the node's own work is timed. Reported: per-stage mean / median / p90 in ms, with every
output subscribed and with only the labeled cloud subscribed (the others are not built).

Message classes: ``rosbags`` (what ``ovp replay`` builds) or ``rclpy`` (rosidl-shaped classes of the test
harness, test/ros_harness, without field checks as on Jazzy: what a node builds; needs ../shared/ros2-python).
``--load`` runs a bounded busy loop in a subprocess during the measurement (one core taken).

    python bench/node_bench.py [--frames 5] [--repeat 5] [--messages rosbags|rclpy] [--load]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _timing import start_busy_core

ROOT = Path(__file__).resolve().parents[1]


class PassThrough:
    """The Pipeline interface NodeCore uses, returning precomputed outputs (restamped) for each frame."""

    def __init__(self, pipeline, outputs: dict[int, object]) -> None:
        self.labeller, self.config = pipeline.labeller, pipeline.config
        self.class_names, self.labeller_name, self.meaningful = pipeline.class_names, 'teacher', False
        self.outputs = outputs

    def process(self, frame):
        return self.outputs[frame.stamp_ns]


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {'mean': round(float(v.mean()), 2), 'median': round(float(np.median(v)), 2),
            'p90': round(float(np.percentile(v, 90)), 2)}


def _per_output(outputs: dict[int, object], msgs, repeat: int) -> dict[str, float]:
    """Median ms of each output's conversion alone (the writer's functions, one frame's outputs)."""
    from perception_nodes.io.outputs import (labeled_cloud, occupancy_grid_msg, overlay_image_msg,
                                             voxel_markers)
    from perception_nodes.io.stamps import header
    out = next(iter(outputs.values()))
    hdr = header(out.frame_id, out.stamp_ns, msgs)
    work = {'labeled_points': lambda: labeled_cloud(out, hdr, out.palette, msgs),
            'occupancy': lambda: occupancy_grid_msg(out.occupancy, hdr, msgs),
            'semantic_voxels': lambda: voxel_markers(out.voxels, hdr, out.class_names, out.palette, msgs),
            'overlay': lambda: overlay_image_msg(next(iter(out.overlays.values())), hdr, msgs)}
    result = {}
    for key, fn in work.items():
        times = []
        for _ in range(max(repeat, 3)):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        result[key] = round(float(np.median(times)), 2)
    return result


def _message_types(kind: str):
    if kind == 'rosbags':
        from perception_nodes.io.messages import default_message_types
        return default_message_types(), None
    sys.path.insert(0, str(ROOT / 'test'))
    from ros_harness import RosHarness          # test/ros_harness: rosidl-shaped message classes
    harness = RosHarness(console=False, check_fields=False).activate()
    from perception_nodes.nodes.rclpy_messages import RclpyMessageTypes
    return RclpyMessageTypes(), harness


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=5, help='KITTI raw frames')
    ap.add_argument('--repeat', type=int, default=5, help='passes over the frames (the first one warms up)')
    ap.add_argument('--messages', choices=('rosbags', 'rclpy'), default='rosbags')
    ap.add_argument('--load', action='store_true', help='keep one core busy (a bounded subprocess)')
    ap.add_argument('--max-load-seconds', type=float, default=300.0)
    args = ap.parse_args(argv)
    if args.repeat < 2:
        ap.error('--repeat must be at least 2 (the first pass only warms up)')

    from PIL import Image as PILImage

    from perception_nodes.assembly import SyncedSet
    from perception_nodes.config import PerceptionConfig, with_overrides
    from perception_nodes.io.camera_info import camera_info_msg
    from perception_nodes.io.image import rgb_to_image_msg
    from perception_nodes.io.kitti import find_kitti_frames, read_calib, read_velodyne, shared_data_dir
    from perception_nodes.io.pointcloud2 import FLOAT32, create_cloud, xyz_fields
    from perception_nodes.io.stamps import header
    from perception_nodes.pipeline import Pipeline
    from perception_nodes.runtime.core import NodeCore

    data = shared_data_dir() / 'kitti_raw_2011_09_26_seq'
    files = find_kitti_frames(data)[:args.frames]
    if not files:
        print(json.dumps({'bench': 'node', 'error': f'no KITTI raw frames at {data}'}))
        return 1
    msgs, harness = _message_types(args.messages)
    cache = Path(tempfile.mkdtemp(prefix='ovp-node-bench-'))
    topic, image_topic = '/velodyne_points', '/camera_2/image_raw'
    config = with_overrides(PerceptionConfig(), {
        'inputs.lidar_topic': topic, 'inputs.camera_topics': [image_topic], 'teacher.clip_model': 'ovp-tiny',
        'teacher.clip_pretrained': 'none', 'teacher.cache_dir': str(cache),
        'vocabulary.templates': ['a photo of a {}.'], 'node.max_frame_age': 0.0})
    sets, calib = [], None
    for i, f in enumerate(files):
        calib = read_calib(f.calib)
        points = read_velodyne(f.velodyne).astype(np.float32)
        rgb = np.asarray(PILImage.open(f.image).convert('RGB'))
        stamp = 1_317_000_000_000_000_000 + i * 100_000_000
        model = calib.camera_model(rgb.shape[1], rgb.shape[0], frame_id='camera_2')
        fields = xyz_fields([('intensity', FLOAT32)])
        cloud = create_cloud(header('velodyne', stamp, msgs), fields, points, msgs)
        sets.append((cloud, rgb_to_image_msg(rgb, header('camera_2', stamp, msgs), msgs),
                     camera_info_msg(model, stamp, msgs)))
    T = calib.T_cam_velo

    def lookup(target: str, source: str, stamp: int) -> np.ndarray:
        return T

    # the real pipeline once per frame, through the same assembler: the outputs the writer converts
    pipeline = Pipeline(config)
    outputs = {}
    probe = NodeCore(config, pipeline, msgs, lookup)
    for cloud, image, info in sets:
        frame = probe.assembler.assemble(SyncedSet(cloud, [image], {probe.cameras[0].name: info}))
        outputs[frame.stamp_ns] = pipeline.process(frame)
    pipeline.close()

    load = None
    if args.load:
        load = start_busy_core(args.max_load_seconds)
    # who subscribes: everything (RViz with every display) or only the labeled cloud (a costmap layer)
    scenarios = {'all outputs': None, 'labeled_points only': lambda key: key == 'labeled_points'}
    results, published = {}, {}
    try:
        for scenario, wanted in scenarios.items():
            core = NodeCore(config, PassThrough(pipeline, outputs), msgs, lookup, node_name='fusion_node',
                            wanted=wanted)
            name = core.cameras[0].name
            core.publish = lambda key, msgtype, msg: published.setdefault(scenario, set()).add(key)
            timings: dict[str, list[float]] = {'assemble': [], 'convert': [], 'total': []}
            for rep in range(args.repeat):
                for cloud, image, info in sets:
                    core.on_camera_info(name, info)
                    core.on_synchronized(cloud, image)
                    core.worker.run_once()
                    if rep == 0:
                        continue                              # warm-up pass
                    last = core.stats.latencies()
                    for stage in timings:
                        timings[stage].append(last[stage][-1])
            results[scenario] = {'outputs': sorted(published[scenario]),
                                 'ms': {k: _stats(v) for k, v in timings.items()}}
        per_output = _per_output(outputs, msgs, args.repeat)
    finally:
        if load is not None:
            load.kill()
            load.wait()
        if harness is not None:
            harness.deactivate()
    voxels = sum(len(o.voxels.labels) for o in outputs.values() if o.voxels is not None) // len(outputs)
    report = {'bench': 'node', 'messages': args.messages, 'load': 'one busy core' if args.load else 'idle',
              'frames': len(sets), 'passes': args.repeat - 1, 'points': int(sets[0][0].width),
              'image': f'{sets[0][1].width}x{sets[0][1].height} rgb8', 'occupied_voxels': int(voxels),
              'subscribed': results, 'convert_median_ms_per_output': per_output,
              'cpus': os.cpu_count(), 'python': platform.python_version(),
              'note': 'assemble: cloud + image + CameraInfo -> Frame; convert: outputs -> messages; total: '
                      'NodeCore.process with a pass-through pipeline'}
    print(json.dumps(report))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
