"""``teacher.source: synthetic``: the CLIP-like synthetic teacher built by the Pipeline from config keys."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.geometry.sim.lidar import LidarBeamModel
from perception_nodes.geometry.sim.street import STREET_CLASSES, make_street_frame
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.pipeline import Pipeline
from perception_nodes.teacher.oracle import ClipLikeNoise, ClipLikeTeacher, clip_like_text_embeddings
from perception_nodes.teacher.synthetic import SYNTHETIC_TEACHER_NOTE, SyntheticSpec


@pytest.fixture(scope='module')
def frame():
    return make_street_frame(4, num_cameras=2, image_size=(90, 300),
                             beam_model=LidarBeamModel(n_beams=16, n_azimuth=256))


def _config(**changes):
    base = {'teacher.source': 'synthetic', 'vocabulary.classes': STREET_CLASSES, 'outputs.embeddings': True,
            'fusion.visibility_block': 2, 'teacher.synthetic_noise_seed': 3}
    base.update(changes)
    return with_overrides(PerceptionConfig(), base)


def test_the_pipeline_builds_the_synthetic_teacher_from_its_keys(frame):
    pipeline = Pipeline(_config())
    assert pipeline.clip is None                                   # no CLIP anywhere
    out = pipeline.process(frame)
    # the same teacher injected by hand gives the same features and labels
    emb = clip_like_text_embeddings(STREET_CLASSES, 64, seed=0)
    teacher = ClipLikeTeacher(emb, STREET_CLASSES, ClipLikeNoise(seed=3), downsample=8)
    by_hand = Pipeline(_config(), teacher=teacher)
    by_hand.set_vocabulary(STREET_CLASSES, embeddings=emb)
    ref = by_hand.process(frame)
    np.testing.assert_array_equal(out.labels, ref.labels)
    np.testing.assert_allclose(out.embeddings, ref.embeddings, atol=1e-6)
    torch.testing.assert_close(pipeline.clip_text, emb)
    # the labels are mostly right on the points the cameras see, and say where they come from
    seen = out.visible & (frame.labels >= 0)
    assert seen.sum() > 200 and (out.labels[seen] == frame.labels[seen]).mean() > 0.5
    assert SYNTHETIC_TEACHER_NOTE in out.notes and 'not from CLIP' in SYNTHETIC_TEACHER_NOTE
    prov = pipeline.provenance()
    assert prov['synthetic_teacher']['identity'] == 'ClipLikeTeacher:dim64:text0:noise3:down8'
    assert prov['synthetic_teacher']['synthetic'] is True and 'clip' not in prov
    assert pipeline.teacher_identity() == SyntheticSpec(noise_seed=3).identity()


def test_a_new_vocabulary_rebuilds_the_teacher_and_its_text(frame):
    pipeline = Pipeline(_config())
    names = ['road', 'car', 'building']
    pipeline.set_vocabulary(names)
    torch.testing.assert_close(pipeline.clip_text, clip_like_text_embeddings(names, 64, seed=0))
    assert pipeline.synthetic.teacher.num_classes == 3
    out = pipeline.process(frame)
    assert set(np.unique(out.labels)) <= {0, 1, 2, UNKNOWN_LABEL}
    # class names are the only queries without a text encoder
    torch.testing.assert_close(pipeline.text_embedding('car'), pipeline.clip_text[1])
    with pytest.raises(ValueError, match='a query must be a class name'):
        pipeline.text_embedding('a red car')


def test_bad_input_is_a_clear_error(frame):
    with pytest.raises(ValueError, match='synthetic_embed_dim 16 is too small for 11 classes'):
        Pipeline(_config(**{'teacher.synthetic_embed_dim': 16}))
    pipeline = Pipeline(_config())
    bare = make_street_frame(4, num_cameras=1, image_size=(90, 300),
                             beam_model=LidarBeamModel(n_beams=8, n_azimuth=64))
    for view in bare.cameras:
        view.truth.clear()                                       # a real camera: no truth rasters
    with pytest.raises(ValueError, match='synthetic bags only'):
        pipeline.process(bare)
    with pytest.raises(ValueError, match='teacher.source'):
        with_overrides(PerceptionConfig(), {'teacher.source': 'oracle'})
