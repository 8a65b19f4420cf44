"""One path from messages to outputs: the same bag through the bag route (``ovp replay``) and the node route
(``NodeCore``, fed the messages as they arrive) gives identical Frames and identical published outputs, for
the teacher and for the student labeller.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.io.bag_source import BagSource
from perception_nodes.io.bags import iter_messages
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.sample_bags import sim_frames, write_kitti_sample_bag, write_sim_bag
from perception_nodes.io.tf_buffer import TransformBuffer
from perception_nodes.pipeline import Pipeline
from perception_nodes.replay import replay_bag
from perception_nodes.runtime.core import NodeCore

FIELDS = ('x', 'y', 'z', 'intensity', 'label', 'score', 'instance', 'rgb')


@pytest.fixture(scope='module')
def bags(tmp_path_factory, kitti_raw_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp('one_path')
    write_kitti_sample_bag(kitti_raw_dir, root / 'kitti', max_frames=2)
    write_sim_bag(root / 'sim', sim_frames(2, num_cameras=2, image_size='tiny', beams=(16, 384)))
    return {'kitti': root / 'kitti', 'sim': root / 'sim'}


def config_for(bag: Path, tmp: Path, **overrides) -> PerceptionConfig:
    with BagSource(bag) as source:
        topics = {'inputs.lidar_topic': source.lidar_topic,
                  'inputs.camera_topics': [c.image_topic for c in source.cameras]}
    base = {'teacher.clip_model': 'ovp-tiny', 'teacher.clip_pretrained': 'none',
            'teacher.cache_dir': str(tmp),
            'teacher.input_size': [64, 128], 'vocabulary.classes': ['car', 'road', 'tree', 'building'],
            'vocabulary.templates': ['a photo of a {}.'], 'replay.overlay_pngs': 0}
    return with_overrides(PerceptionConfig(), {**topics, **base, **overrides})


class Recording:
    """Wraps a pipeline and keeps every Frame it is given."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.inner = pipeline
        self.frames: list = []

    def process(self, frame):
        self.frames.append(frame)
        return self.inner.process(frame)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def node_route(bag: Path, config: PerceptionConfig, pipeline) -> list[tuple[str, object]]:
    """Feed the bag's messages to a NodeCore as a robot gets them (exact-stamp synchronizer, tf buffer)."""
    tf = TransformBuffer()
    published: list[tuple[str, object]] = []
    core = NodeCore(config, pipeline, default_message_types(),
                    lambda t, s, st: tf.lookup(t, s, st, 50_000_000),
                    publish=lambda key, msgtype, msg: published.append((key, msg)))
    core.start(threaded=False)
    images = {c.image_topic: c for c in core.cameras}
    infos = {c.info_topic: c for c in core.cameras}
    waiting: dict[int, dict[str, object]] = {}
    for m in iter_messages(bag):
        if m.topic in ('/tf', '/tf_static'):
            tf.add_tf_message(m.msg, static=m.topic == '/tf_static')
        elif m.topic in infos:
            core.on_camera_info(infos[m.topic].name, m.msg)
        elif m.topic == config.inputs.lidar_topic or m.topic in images:
            core.on_input(m.topic)
            stamp = m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec
            group = waiting.setdefault(stamp, {})
            group[m.topic] = m.msg
            if len(group) == 1 + len(images):
                del waiting[stamp]
                core.on_synchronized(group[config.inputs.lidar_topic], *[group[t] for t in images])
                core.worker.run_once()
    core.stop()
    return published


def clouds_equal(replayed: list, published: list) -> None:
    assert len(replayed) == len(published) > 0
    for r, p in zip(replayed, published):
        a, b = read_points(r), read_points(p)
        assert r.header.frame_id == p.header.frame_id
        assert (r.header.stamp.sec, r.header.stamp.nanosec) == (p.header.stamp.sec, p.header.stamp.nanosec)
        for f in FIELDS:
            assert np.array_equal(a[f], b[f], equal_nan=True), f


@pytest.mark.parametrize('name', ['kitti', 'sim'])
def test_teacher_frames_and_outputs_are_identical_on_both_routes(bags, name, tmp_path, frames_equal):
    bag = bags[name]
    config = config_for(bag, tmp_path)
    bag_pipeline = Recording(Pipeline(config))
    replay_bag(bag, tmp_path / 'out', bag_pipeline, config, progress=False)
    node_pipeline = Recording(Pipeline(config))
    published = node_route(bag, config, node_pipeline)
    assert len(bag_pipeline.frames) == len(node_pipeline.frames) == 2
    for a, b in zip(bag_pipeline.frames, node_pipeline.frames):
        frames_equal(a, b)
        assert a.cameras, 'the frames must carry cameras for this test to mean something'
    replayed = [m.msg for m in iter_messages(tmp_path / 'out', ['/ovp/labeled_points'])]
    clouds_equal(replayed, [m for k, m in published if k == 'labeled_points'])
    labels = read_points(replayed[0])['label']
    assert (labels != 65535).any() and (labels == 65535).any()      # labelled where the cameras see
    keys = {k for k, _ in published}
    assert {'labeled_points', 'occupancy', 'semantic_voxels', 'label_info'} <= keys
    replay_topics = {m.topic for m in iter_messages(tmp_path / 'out')}
    assert {f'/ovp/{k}' for k in keys} <= replay_topics               # the same outputs under the same names


def test_student_replay_equals_the_student_path_on_the_same_frame(bags, tmp_path):
    """``ovp replay --labeller student`` with an exported ONNX of a fresh student, against the node route."""
    from perception_nodes.cli.main import main
    from perception_nodes.student.config import StudentConfig
    from perception_nodes.student.export import export_onnx
    from perception_nodes.student.model import build_student

    torch.manual_seed(0)
    student = StudentConfig(arch='range_unet', widths=(8, 16), depths=(1, 1), embed_dim=32, proj_dim=16,
                            point_width=16, head_hidden=16, voxel_width=4, range_height=32, range_width=256,
                            max_points=131072)
    onnx = export_onnx(build_student(student).eval(), tmp_path / 'student.onnx')
    bag = bags['kitti']
    config = config_for(bag, tmp_path, **{'labeller.kind': 'student', 'labeller.student': str(onnx)})
    out = tmp_path / 'student_out'
    args = ['replay', '--bag', str(bag), '--out', str(out), '--quiet', '--labeller', 'student', '--student',
            str(onnx), '--clip-model', 'ovp-tiny', '--clip-pretrained', 'none',
            '--vocabulary', 'car,road,tree,building', '--set', f'teacher.cache_dir={tmp_path}',
            '--set', 'vocabulary.templates=[a photo of a {}.]']
    assert main(args) == 0
    msgs: dict[str, list] = {}
    for m in iter_messages(out):
        msgs.setdefault(m.topic, []).append(m.msg)
    assert len(msgs['/ovp/labeled_points']) == 2 and len(msgs['/ovp/occupancy']) == 2
    grid = msgs['/ovp/occupancy'][0]            # the student's occupancy head on the POP-3D grid (1.024 m)
    assert grid.info.resolution == pytest.approx(1.024) and set(np.unique(grid.data)) <= {0, 100}
    # the same Frame through the student path directly, and through the node route
    frames = list(BagSource(bag, config.inputs).frames())
    direct = Pipeline(config)
    for frame, cloud in zip(frames, msgs['/ovp/labeled_points']):
        outputs = direct.process(frame)
        assert np.array_equal(read_points(cloud)['label'], outputs.labels)
        assert np.array_equal(read_points(cloud)['score'], outputs.scores)
        assert outputs.labeller == 'student' and (outputs.labels != 65535).all()   # 360 degrees
    node_config = dataclasses.replace(config)
    published = node_route(bag, node_config, Pipeline(node_config))
    clouds_equal(msgs['/ovp/labeled_points'], [m for k, m in published if k == 'labeled_points'])
    assert not any(k.startswith('overlay') for k, _ in published)    # a student node is LiDAR-only
