"""StudentCore on KITTI clouds with transparent fake backends; voxels and cosine rule vs references."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from perception_nodes.geometry.voxels import GridSpec
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import stamp_to_ns
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.runtime.params import NodeParams
from perception_nodes.runtime.student_core import StudentCore, cosine_classify, semantic_voxels

WORDS = ['ground', 'low', 'high']   # the fake text space: word k <-> unit vector e_k


def height_class(points: np.ndarray) -> np.ndarray:
    z = points[:, 2]
    return np.where(z < -1.4, 0, np.where(z < 0.0, 1, 2))


class FakeBackend:
    """Student stand-in: a point's embedding is e_k of its height class, scaled by ``confidence``."""

    def __init__(self, confidence: float = 1.0, permutation=None) -> None:
        self.confidence = confidence
        self.permutation = permutation
        self.calls = []

    def infer(self, points: np.ndarray):
        self.calls.append(points.shape)
        k = height_class(points)
        emb = np.zeros((len(points), 3), np.float32)
        emb[np.arange(len(points)), k] = 1.0
        # mix in a little of the next class so the cosine score equals ``confidence``
        c = self.confidence
        emb = c * emb + math.sqrt(1 - c * c) * np.roll(emb, 1, axis=1)
        if self.permutation is not None:
            emb = emb[:, self.permutation]
        return type('Result', (), {'point_embeddings': torch.from_numpy(emb)})()


class FakeEmbedder:
    def __init__(self):
        self.calls = []

    def embed(self, vocabulary, templates=None):
        from perception_nodes.vocabulary import load_vocabulary
        names = load_vocabulary(vocabulary).names
        self.calls.append((names, templates))
        return torch.eye(3)[[WORDS.index(n) for n in names]]


def _core(kitti_sets, make_lookup, raw=None, backend=None, **kwargs):
    params = NodeParams.from_dict({'lidar_topic': '/velo', 'vocabulary': list(WORDS), **(raw or {})})
    published = []
    core = StudentCore(params, backend or FakeBackend(), FakeEmbedder(), default_message_types(),
                       make_lookup({('camera_2', 'velodyne'): kitti_sets[0].T_cam_lidar}),
                       publish=lambda k, m: published.append((k, m)), backend_name='fake', **kwargs)
    core.published = published
    core.start(threaded=False)
    return core


def _run(core, s, images=(), info=None):
    if info is not None:
        core.on_camera_info('front', info)
    core.on_synchronized(s.cloud, *images)
    core.worker.run_once()
    out = dict(core.published)
    core.published.clear()
    return out


def test_lidar_only_outputs(kitti_sets, make_lookup):
    core = _core(kitti_sets, make_lookup)
    s = kitti_sets[0]
    out = _run(core, s)
    assert set(out) == {'classes', 'labeled_points', 'occupancy', 'semantic_voxels'}
    for key in ('labeled_points', 'occupancy'):
        assert out[key].header.frame_id == 'velodyne' and stamp_to_ns(out[key].header.stamp) == s.stamp_ns
    pts = read_points(out['labeled_points'])
    xyz = np.stack([pts['x'], pts['y'], pts['z']], 1)
    assert np.array_equal(pts['label'], height_class(xyz))
    assert np.allclose(pts['score'], 1.0, atol=1e-6)
    assert core.backend.calls[0] == (len(xyz), 4)             # x, y, z, intensity
    grid = out['occupancy']
    assert grid.info.resolution == pytest.approx(0.2) and set(np.unique(grid.data)) <= {-1, 0, 100}
    assert (grid.data == 100).any() and (grid.data == 0).any()
    markers = out['semantic_voxels'].markers
    assert markers[0].action == 3 and {m.ns for m in markers[1:]} <= {f'semantic_voxels/{w}' for w in WORDS}
    assert 'fake' in {v.value for st in core.diagnostics(0).status for v in st.values}


def test_vocabulary_change_and_text_projection(kitti_sets, make_lookup):
    perm = [2, 0, 1]       # the student's space is a permutation of the CLIP text space
    project = lambda t: t[:, perm]                                          # noqa: E731
    core = _core(kitti_sets, make_lookup, backend=FakeBackend(permutation=perm), project_text=project)
    out = _run(core, kitti_sets[0])
    pts = read_points(out['labeled_points'])
    xyz = np.stack([pts['x'], pts['y'], pts['z']], 1)
    assert np.array_equal(pts['label'], height_class(xyz))
    assert core.request_parameters({'vocabulary': ['high', 'ground'],
                                    'prompt_templates': ['a {} point.']}) is None
    out = _run(core, kitti_sets[1])
    assert json.loads(out['classes'].data)['classes'] == ['high', 'ground']
    assert core.text_embedder.calls[-1] == (['high', 'ground'], ['a {} point.'])
    pts = read_points(out['labeled_points'])
    cls = height_class(np.stack([pts['x'], pts['y'], pts['z']], 1))
    # 'high' -> 0, 'ground' -> 1; 'low' points are closer to neither: cosine 0 with both, argmax -> 0
    assert np.array_equal(pts['label'][cls == 2], np.zeros((cls == 2).sum()))
    assert np.array_equal(pts['label'][cls == 0], np.ones((cls == 0).sum()))


def test_query_similarity_in_student_space(kitti_sets, make_lookup):
    core = _core(kitti_sets, make_lookup)
    core.on_query('high')
    out = _run(core, kitti_sets[0])
    sim = read_points(out['similarity'])['similarity']
    labels = read_points(out['labeled_points'])['label']
    assert np.allclose(sim[labels == 2], 1.0, atol=1e-6) and np.allclose(sim[labels == 0], 0.0, atol=1e-6)


def test_ensemble_keeps_the_more_confident_prediction(kitti_sets, make_lookup, make_pipeline):
    cams = {'camera_names': ['front'], 'camera_image_topics': ['/img'], 'camera_info_topics': ['/info'],
            'ensemble': True}
    pipeline = make_pipeline(names=list(WORDS))   # fused 2D feature: e_k of the range rule, cosine 1
    core = _core(kitti_sets, make_lookup, raw=cams, backend=FakeBackend(confidence=0.8), pipeline=pipeline)
    s = kitti_sets[0]
    out = _run(core, s, images=[s.image], info=s.info)
    pts = read_points(out['labeled_points'])
    xyz = np.stack([pts['x'], pts['y'], pts['z']], 1)
    rng_rule = (np.linalg.norm(xyz, axis=1) // 10).astype(int) % 3
    seen = pipeline.process(pipeline.frames[-1]).visible
    assert 0 < seen.sum() < len(seen)
    assert np.array_equal(pts['label'][seen], rng_rule[seen])               # 2D wins (cos 1 > 0.8)
    assert np.array_equal(pts['label'][~seen], height_class(xyz)[~seen])    # unseen: 3D only
    assert np.allclose(pts['score'][seen], 1.0, atol=1e-6)
    assert np.allclose(pts['score'][~seen], 0.8, atol=1e-6)
    assert 'overlay/front' in out
    with pytest.raises(ValueError, match='ensemble'):
        _core(kitti_sets, make_lookup, raw={'ensemble': True})


def test_cosine_classify_matches_a_loop():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(40, 5)).astype(np.float32)
    emb[5] = 0
    text = rng.normal(size=(4, 5)).astype(np.float32)
    labels, scores = cosine_classify(torch.from_numpy(emb), torch.from_numpy(text))
    for i, row in enumerate(emb):
        if not row.any():
            assert scores[i] == -float('inf')
            continue
        cos = [float(row @ t) / (np.linalg.norm(row) * np.linalg.norm(t)) for t in text]
        assert labels[i] == int(np.argmax(cos)) and abs(scores[i] - max(cos)) < 1e-5


def test_semantic_voxels_match_a_dictionary_reference():
    rng = np.random.default_rng(2)
    grid = GridSpec(lower=(0, 0, 0), upper=(4, 4, 2), shape=(4, 4, 2))
    pts = rng.uniform(-0.5, 4.5, size=(300, 3)).astype(np.float32)
    pts[:, 2] = rng.uniform(0, 2, 300)
    labels = rng.integers(0, 3, 300).astype(np.uint16)
    labels[:40] = UNKNOWN_LABEL
    vox = semantic_voxels(pts, labels, grid)
    ref: dict[tuple, list] = {}
    for p, lab in zip(pts, labels):
        ijk = tuple(int(v) for v in np.floor(p / 1.0))
        if all(0 <= c < s for c, s in zip(ijk, grid.shape)):
            ref.setdefault(ijk, []).append(int(lab))
    got = {tuple(int(v) for v in np.floor(c)): int(lab) for c, lab in zip(vox.centers, vox.labels)}
    assert set(got) == set(ref)
    for ijk, labs in ref.items():
        known = [v for v in labs if v != UNKNOWN_LABEL]
        if not known:
            assert got[ijk] == UNKNOWN_LABEL
        else:
            counts = {v: known.count(v) for v in set(known)}
            best = max(counts.values())
            assert got[ijk] == min(v for v, c in counts.items() if c == best)
    assert np.allclose(vox.voxel_size, 1.0)


def test_points_without_a_feature_are_unknown(kitti_sets, make_lookup):
    class HoleBackend(FakeBackend):
        def infer(self, points):
            result = super().infer(points)
            result.point_embeddings[::5] = 0.0       # e.g. the backend's invalid (non-finite) points
            return result

    core = _core(kitti_sets, make_lookup, backend=HoleBackend())
    pts = read_points(_run(core, kitti_sets[0])['labeled_points'])
    hole = np.zeros(len(pts), bool)
    hole[::5] = True
    assert np.all(pts['label'][hole] == UNKNOWN_LABEL) and np.all(pts['score'][hole] == 0)
    assert np.all(pts['label'][~hole] != UNKNOWN_LABEL)
