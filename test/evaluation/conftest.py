"""Fixtures for ``ovp eval`` tests: a synthetic bag with ground truth and an oracle pipeline that reads it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.geometry.sim import SIM_CLASSES
from perception_nodes.io.sample_bags import PERIOD_NS, START_NS, sim_frames, write_sim_bag
from perception_nodes.pipeline import Pipeline
from perception_nodes.teacher.oracle import OracleNoise, OracleTeacher


class BagOracle:
    """The oracle teacher for frames read back from a sim bag: it finds each view's truth rasters.

    A bag carries images, not the synthetic world's rasters; the view's stamp gives the frame
    (``write_sim_bag`` stamps frame i at START_NS + i * PERIOD_NS) and its camera frame the view.
    """

    meaningful = True

    def __init__(self, oracle: OracleTeacher, frames) -> None:
        self.oracle, self.frames = oracle, frames

    def dense_features(self, views):
        for view in views:
            frame = self.frames[(view.stamp_ns - START_NS) // PERIOD_NS]
            view.truth = next(v.truth for v in frame.cameras if v.model.frame_id == view.model.frame_id)
        return self.oracle.dense_features(views)


@pytest.fixture(scope='session')
def sim_truth_frames():
    return sim_frames(2, num_cameras=2, image_size='tiny', beams=(16, 384))


@pytest.fixture(scope='session')
def sim_truth_bag(tmp_path_factory, sim_truth_frames):
    path = tmp_path_factory.mktemp('eval_sim') / 'sim_truth_bag'
    write_sim_bag(path, sim_truth_frames, truth=True)
    return path


@pytest.fixture(scope='session')
def sim_plain_bag(tmp_path_factory, sim_truth_frames):
    path = tmp_path_factory.mktemp('eval_sim_plain') / 'sim_plain_bag'
    write_sim_bag(path, sim_truth_frames[:1])
    return path


@pytest.fixture(scope='session')
def class_embeddings():
    return F.normalize(torch.randn(len(SIM_CLASSES), 32, generator=torch.Generator().manual_seed(0)), dim=1)


@pytest.fixture(scope='session')
def oracle_pipeline(sim_truth_frames, class_embeddings):
    """``make(flip_prob=0.2, **config overrides)``: a Pipeline over the sim vocabulary with the bag oracle."""
    made = []

    def make(flip_prob: float = 0.2, **overrides):
        cfg = with_overrides(PerceptionConfig(), {'vocabulary.classes': ['sim'], 'overlay.enabled': False,
                                                  'fusion.visibility_block': 2, **overrides})
        teacher = BagOracle(OracleTeacher(class_embeddings, noise=OracleNoise(flip_prob=flip_prob, seed=1)),
                            sim_truth_frames)
        pipeline = Pipeline(cfg, teacher=teacher)
        pipeline.set_vocabulary('sim', embeddings=class_embeddings)
        made.append(pipeline)
        return pipeline

    yield make
    for p in made:
        p.close()
