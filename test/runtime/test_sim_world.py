"""The fusion core end to end on the synthetic world: messages (raw + compressed cameras) -> labeled cloud.

The teacher is the ground-truth oracle (every pixel carries the text embedding of its true class): the
published labels must equal those of the pipeline run on the world's Frame directly, and follow the truth.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception_nodes.geometry.sim import SIM_CLASSES, SMALL_BEAM_MODEL, make_sim_frame
from perception_nodes.io.camera_info import camera_info_msg
from perception_nodes.io.image import rgb_to_compressed_msg, rgb_to_image_msg
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.pointcloud2 import FLOAT32, create_cloud, xyz_fields
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import header, stamp_to_ns
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.runtime.core import NodeCore


class TruthAttachingPipeline:
    """The real Pipeline with the oracle teacher. Messages cannot carry the world's ground-truth rasters,
    so they are re-attached to the assembled views (matched by name) before the pipeline runs."""

    def __init__(self, world, embeddings):
        from perception_nodes.pipeline import Pipeline
        from perception_nodes.teacher.oracle import OracleTeacher
        config = with_overrides(PerceptionConfig(), {'outputs.embeddings': True, 'overlay.enabled': True})
        self.inner = Pipeline(config, teacher=OracleTeacher(embeddings))
        self.world, self.embeddings, self.frames = world, embeddings, []
        self.labeller, self.class_names, self.config = self.inner.labeller, SIM_CLASSES, config

    def set_vocabulary(self, vocabulary, templates=None):
        self.inner.set_vocabulary(vocabulary, embeddings=self.embeddings)

    def text_embedding(self, text):
        return self.embeddings[SIM_CLASSES.index(text)]

    def process(self, frame):
        truth = {v.name: v.truth for v in self.world.cameras}
        for view in frame.cameras:
            view.truth = truth[view.name]
        self.frames.append(frame)
        return self.inner.process(frame)


@pytest.fixture(scope='module')
def world():
    return make_sim_frame(3, num_cameras=2, image_size='tiny', beam_model=SMALL_BEAM_MODEL)


def test_synthetic_world_through_messages(world):
    msgs = default_message_types()
    stamp = world.stamp_ns
    cloud = create_cloud(header(world.frame_id, stamp, msgs), xyz_fields([('intensity', FLOAT32)]),
                         np.c_[world.points, world.intensity].astype(np.float32), msgs)
    cam0, cam1 = world.cameras
    images = [rgb_to_image_msg(cam0.image, header(cam0.model.frame_id, stamp, msgs), msgs),
              rgb_to_compressed_msg(cam1.image, header(cam1.model.frame_id, stamp, msgs), msgs, fmt='png')]
    infos = {v.name: camera_info_msg(v.model, stamp, msgs) for v in world.cameras}
    transforms = {(v.model.frame_id, world.frame_id): v.T_cam_lidar for v in world.cameras}
    config = with_overrides(PerceptionConfig(), {
        'inputs.lidar_topic': '/sim/points', 'inputs.camera_names': [cam0.name, cam1.name],
        'inputs.camera_topics': ['/sim/camera_0/image_raw', '/sim/camera_1/image_raw/compressed'],
        'vocabulary.classes': ['sim']})
    gen = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(len(SIM_CLASSES), 32, generator=gen), dim=1)
    pipeline = TruthAttachingPipeline(world, embeddings)
    pipeline.set_vocabulary('sim')
    published = {}
    core = NodeCore(config, pipeline, msgs, lambda target, source, ns: transforms[(target, source)],
                    publish=lambda key, msgtype, msg: published.setdefault(key, msg))
    core.start(threaded=False)
    core.on_query('car')
    for name, info in infos.items():
        core.on_camera_info(name, info)
    core.on_synchronized(cloud, *images)
    core.worker.run_once()
    assert core.worker.counts.processed == 1, core.stats.last_problem

    # the assembled frame is the world's frame (PNG is lossless)
    (frame,) = pipeline.frames
    assert np.array_equal(frame.points, world.points) and np.array_equal(frame.intensity, world.intensity)
    for got, want in zip(frame.cameras, world.cameras):
        assert np.array_equal(got.image, want.image) and np.allclose(got.T_cam_lidar, want.T_cam_lidar)

    cloud_out = published['labeled_points']
    assert cloud_out.header.frame_id == world.frame_id and stamp_to_ns(cloud_out.header.stamp) == stamp
    expected = {'overlay/camera_0', 'overlay/camera_1', 'similarity', 'occupancy', 'semantic_voxels'}
    assert expected <= set(published)
    assert published['overlay/camera_1'].header.frame_id == cam1.model.frame_id
    labels = read_points(cloud_out)['label'].astype(np.int64)
    seen = np.any([v.truth['visible'] for v in world.cameras], axis=0)
    # the message round trip changes nothing: same labels as the pipeline run on the world's Frame itself
    direct = pipeline.inner.process(world).labels.astype(np.int64)
    assert np.array_equal(labels, direct)
    accuracy = float((labels[seen] == world.labels[seen]).mean())
    assert accuracy > 0.75, accuracy                      # the oracle's truth, up to visibility errors
    never = ~np.any([v.truth['visible'] for v in world.cameras], axis=0)
    assert (labels[never] == UNKNOWN_LABEL).mean() > 0.5  # most points no camera sees stay unknown
    sim = read_points(published['similarity'])['similarity']
    car = SIM_CLASSES.index('car')
    is_car = seen & (world.labels == car) & np.isfinite(sim)
    other = seen & (world.labels != car) & np.isfinite(sim)
    assert is_car.any() and np.median(sim[is_car]) > 0.9 > np.median(sim[other])
