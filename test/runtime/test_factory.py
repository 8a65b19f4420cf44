"""The node cores with their real dependencies: Pipeline (tiny random CLIP) and a torch student backend.

Random weights: these tests check wiring, fields, frames and stamps, never what the labels mean.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception_nodes.io.messages import default_message_types
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import stamp_to_ns
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.runtime.assembly import SyncedSet
from perception_nodes.runtime.factory import build_fusion_core, build_student_core
from perception_nodes.runtime.params import NodeParams

TINY = {'teacher.clip_model': 'ovp-tiny', 'teacher.clip_pretrained': 'none'}
CAMERA = {'camera_names': ['front'], 'camera_image_topics': ['/img'], 'camera_info_topics': ['/info']}


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp('ovp-cache'))


def test_fusion_core_with_the_real_pipeline(kitti_sets, make_lookup, cache):
    params = NodeParams.from_dict({**CAMERA, 'vocabulary': ['car', 'road', 'tree']})
    core = build_fusion_core(params, default_message_types(),
                             make_lookup({('camera_2', 'velodyne'): kitti_sets[0].T_cam_lidar}),
                             config_overrides={**TINY, 'teacher.cache_dir': cache})
    core.start(threaded=False)
    core.on_query('a parked car')
    s = kitti_sets[0]
    out = core.process(SyncedSet(s.cloud, [s.image], {'front': s.info}))
    expected = {'classes', 'labeled_points', 'occupancy', 'semantic_voxels', 'overlay/front', 'similarity'}
    assert expected <= set(out)
    for key in ('labeled_points', 'semantic_voxels', 'similarity'):
        msg = out[key].markers[0] if key == 'semantic_voxels' else out[key]
        assert msg.header.frame_id == 'velodyne' and stamp_to_ns(msg.header.stamp) == s.stamp_ns
    assert out['overlay/front'].header.frame_id == 'camera_2'
    labels = read_points(out['labeled_points'])['label']
    assert np.all((labels < 3) | (labels == UNKNOWN_LABEL)) and (labels == UNKNOWN_LABEL).any()
    sim = read_points(out['similarity'])['similarity']
    seen = ~np.isnan(sim)                      # points a camera saw have a fused feature
    assert 0 < seen.sum() < len(sim) and np.all(labels[seen] != UNKNOWN_LABEL)
    assert np.all(np.abs(sim[seen]) <= 1.0001)
    assert json.loads(out['classes'].data)['classes'] == ['car', 'road', 'tree']
    # live vocabulary change through the real pipeline (text embeddings from the cache or the tiny CLIP)
    assert core.request_parameters({'vocabulary': ['person', 'bicycle']}) is None
    out = core.process(SyncedSet(kitti_sets[1].cloud, [kitti_sets[1].image], {'front': kitti_sets[1].info}))
    labels = read_points(out['labeled_points'])['label']
    assert np.all((labels < 2) | (labels == UNKNOWN_LABEL))
    assert core.pipeline.class_names == ['person', 'bicycle']


def test_student_core_with_a_real_torch_backend(kitti_sets, make_lookup, cache, tmp_path):
    from perception_nodes.student.checkpoint import save_checkpoint
    from perception_nodes.student.config import StudentConfig
    from perception_nodes.student.model import build_student

    config = StudentConfig(arch='range_unet', widths=(8, 8), depths=(1, 1), embed_dim=32, range_height=16,
                           range_width=64, max_points=4096, head_hidden=16, point_width=8)
    path = save_checkpoint(tmp_path / 'student.safetensors', build_student(config))
    params = NodeParams.from_dict({'lidar_topic': '/velo', 'vocabulary': ['car', 'road', 'tree'],
                                   'backend': 'torch', 'model_path': str(path), 'device': 'cpu'})
    core = build_student_core(params, default_message_types(), make_lookup({}),
                              config_overrides={**TINY, 'teacher.cache_dir': cache})
    core.start(threaded=False)
    assert core.backend_name.startswith('torch')
    s = kitti_sets[2]
    out = core.process(SyncedSet(s.cloud, [], {}))
    assert set(out) == {'classes', 'labeled_points', 'occupancy', 'semantic_voxels'}
    pts = read_points(out['labeled_points'])
    assert len(pts) == len(s.points) and stamp_to_ns(out['labeled_points'].header.stamp) == s.stamp_ns
    assert np.all(pts['label'] < 3)         # every finite point has a student feature
    assert np.all((pts['score'] >= -1.0001) & (pts['score'] <= 1.0001))
