"""Affinity3D's pseudo labels on the synthetic street with the CLIP-like teacher: Table 3/4 directions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.geometry.sim.lidar import LidarBeamModel
from perception_nodes.geometry.sim.street import STREET_CLASSES, street_sequence
from perception_nodes.geometry.visibility import VisibilityConfig
from perception_nodes.teacher.oracle import ClipLikeNoise, ClipLikeTeacher, clip_like_text_embeddings
from training.pseudo.affinity import AffinityConfig
from training.pseudo.affinity3d import Affinity3DConfig, Affinity3DLabeler
from training.pseudo.assembly import SOURCE_GROUND_TRUTH, SOURCE_INSTANCE
from training.pseudo.instance_labels import TeacherCropEncoder
from training.pseudo.synthetic_eval import LabelEvalConfig, evaluate_label_variants

UNSEEN = ('truck', 'motorcycle', 'bicyclist', 'traffic-sign')


@pytest.fixture(scope='module')
def drive():
    torch.set_num_threads(1)
    frames = street_sequence(3, 5, step=1.5, image_size=(120, 400), beam_model=LidarBeamModel(n_beams=48,
                                                                                              n_azimuth=768))
    emb = clip_like_text_embeddings(STREET_CLASSES, 48, seed=0)
    return frames, emb, ClipLikeTeacher(emb, STREET_CLASSES, ClipLikeNoise(seed=1))


def test_streaming_labeler_outputs(drive):
    frames, emb, teacher = drive
    cfg = Affinity3DConfig(setting='gzs', unseen=UNSEEN, affinity=AffinityConfig(queue_size=10),
                           visibility=VisibilityConfig(variant='depth_buffer', block=2))
    labeler = Affinity3DLabeler(cfg, STREET_CLASSES, emb, TeacherCropEncoder(teacher))
    done = []
    for i, f in enumerate(frames):
        got = labeler.push(f, key=i)
        assert all(d.key <= i for d in got)
        done += got
    done += labeler.flush()
    assert [d.key for d in done] == list(range(len(frames)))           # every frame, in order, once
    unseen = np.flatnonzero(cfg.split(STREET_CLASSES).unseen_mask)
    for f, d in zip(frames, done):
        pl = d.point_labels
        assert pl.labels.shape == (f.num_points,) and pl.visible.dtype == bool
        gt = pl.source == SOURCE_GROUND_TRUTH
        np.testing.assert_array_equal(pl.labels[gt], f.labels[gt])    # seen points keep ground truth
        assert not np.isin(f.labels[gt], unseen).any()
        inst = pl.source == SOURCE_INSTANCE
        assert np.isin(pl.labels[inst], unseen).all()                 # Eq. 4 over EMB^U only
        assert pl.visible[pl.labels >= 0].all()                       # invisible points are ignored
        kept = d.kept
        assert (d.instance_labels[kept] >= 0).all() and (d.instance_labels[~kept] == -1).all()
        np.testing.assert_allclose(d.instance_refined[kept].sum(1), 1, atol=1e-5)
        assert (d.instance_probs[kept][:, ~np.isin(np.arange(len(STREET_CLASSES)), unseen)] == 0).all()


def test_table3_table4_directions_on_a_fixed_seed(drive):
    frames, emb, teacher = drive
    vis = VisibilityConfig(variant='depth_buffer', block=2)
    af = evaluate_label_variants(frames, teacher, STREET_CLASSES, emb,
                                 LabelEvalConfig(setting='af', visibility=vis))
    # instance crops beat the dense teacher (CI >> MC), affinity improves the crops (Table 4)
    assert af['crops']['accuracy'] > af['dense']['accuracy'] + 0.03
    assert af['crops+aff']['accuracy'] > af['crops']['accuracy'] + 0.01
    assert af['crops+aff+vis']['accuracy'] > af['crops+vis']['accuracy']
    # naive projection matches occluded points wrongly; visibility removes them (Sec. 3.5)
    for v in ('dense', 'crops'):
        assert af[v]['occluded_kept_fraction'] > 0.9 and af[v + '+vis']['occluded_kept_fraction'] < 0.1
        assert af[v]['accuracy_occluded'] < af[v]['accuracy_visible'] - 0.1
        assert af[v + '+vis']['ignored_fraction'] > af[v]['ignored_fraction']
    assert af['dense+vis']['accuracy'] > af['dense']['accuracy']
    gzs = evaluate_label_variants(frames, teacher, STREET_CLASSES, emb, LabelEvalConfig(
        setting='gzs', visibility=vis, variants=('crops', 'crops+aff')))
    assert gzs['crops+aff']['accuracy'] >= gzs['crops']['accuracy']
    assert gzs['crops']['points'] > 200
