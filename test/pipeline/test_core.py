"""Pipeline (Frame -> Outputs) against a slow per-point reference, degraded input and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.frame import CameraModel, CameraView, Frame
from perception_nodes.geometry.sim import SIM_CLASSES
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.pipeline import Pipeline

H, W = 48, 64
K = np.array([[40.0, 0, W / 2 - 0.5], [0, 40.0, H / 2 - 0.5], [0, 0, 1]])
# LiDAR x forward, y left, z up -> camera x right, y down, z forward
T0 = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])


def _yaw(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    R = np.eye(4)
    R[:2, :2] = [[c, -s], [s, c]]
    return R


class ColumnTeacher:
    """Feature cell column j: class (j * K // w)'s embedding plus a column-dependent perturbation
    (so that averages of two views never tie): a known, position-dependent 2D 'teacher'."""

    meaningful = True

    def __init__(self, emb: torch.Tensor, fh: int = 6, fw: int = 8) -> None:
        self.emb, self.fh, self.fw = emb, fh, fw
        self.embed_dim = emb.shape[1]
        g = torch.randn(fw, emb.shape[1], generator=torch.Generator().manual_seed(5))
        cls = torch.tensor([j * emb.shape[0] // fw for j in range(fw)])
        self.table = F.normalize(emb[cls] + 0.3 * g, dim=1)          # (fw, C)

    def dense_features(self, views):
        return [self.table.T[:, None, :].expand(-1, self.fh, -1).contiguous() for _ in views]


def _frame(n=400, seed=0, cams=2):
    rng = np.random.default_rng(seed)
    pts = np.c_[rng.uniform(4, 30, n), rng.uniform(-12, 12, n), rng.uniform(-1.5, 2, n)].astype(np.float32)
    views = []
    for i in range(cams):
        T = T0 @ _yaw(25 * i)          # second camera looks 25 degrees to the right
        img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        views.append(CameraView(f'/cam{i}/image_raw', img, CameraModel(f'cam{i}', W, H, K), T, stamp_ns=7))
    return Frame(stamp_ns=123, frame_id='velo', points=pts, intensity=rng.random(n).astype(np.float32),
                 cameras=views)


def _config(**overrides):
    base = {'fusion.visibility': 'none', 'fusion.instance_voting': False, 'teacher.sampling': 'nearest',
            'labeller.logit_scale': 10.0, 'grids.nav_resolution': 0.5, 'grids.nav_size': [40.0, 40.0],
            'grids.voxel_shape': [64, 64, 8]}
    base.update(overrides)
    return with_overrides(PerceptionConfig(), base)


def _pipeline(config, k=4, c=8, seed=1):
    emb = F.normalize(torch.randn(k, c, generator=torch.Generator().manual_seed(seed)), dim=1)
    teacher = ColumnTeacher(emb)
    p = Pipeline(config, teacher=teacher)
    p.set_vocabulary([f'class{i}' for i in range(k)], embeddings=emb)
    return p, teacher, emb


def _reference(frame, teacher, emb, scale):
    """Per point, per camera: project, take the feature cell, average, classify."""
    labels, scores = [], []
    for p in frame.points.astype(np.float64):
        feats = []
        for view in frame.cameras:
            x = view.T_cam_lidar @ np.r_[p, 1.0]
            if x[2] <= 0.1:
                continue
            u, v = (K @ (x[:3] / x[2]))[:2]
            if not (-0.5 <= u < W - 0.5 and -0.5 <= v < H - 0.5):
                continue
            j = min(int(math.floor((u + 0.5) * teacher.fw / W)), teacher.fw - 1)
            feats.append(teacher.table[j].numpy())
        if not feats:
            labels.append(UNKNOWN_LABEL)
            scores.append(0.0)
            continue
        f = np.mean(feats, axis=0)
        f /= np.linalg.norm(f)
        logits = scale * emb.numpy() @ f
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        labels.append(int(prob.argmax()))
        scores.append(float(prob.max()))
    return np.array(labels), np.array(scores)


def test_process_matches_per_point_reference():
    frame = _frame()
    p, teacher, emb = _pipeline(_config())
    out = p.process(frame)
    ref_labels, ref_scores = _reference(frame, teacher, emb, 10.0)
    assert np.array_equal(out.labels.astype(np.int64), ref_labels)
    np.testing.assert_allclose(out.scores, ref_scores, rtol=1e-4, atol=1e-6)
    # both cameras contribute, some points seen by both (a mean of two different classes), some by none
    assert (ref_labels == UNKNOWN_LABEL).any() and (ref_labels != UNKNOWN_LABEL).sum() > 100
    assert np.array_equal(out.visible, ref_labels != UNKNOWN_LABEL)
    assert out.labels.dtype == np.uint16 and out.instances.dtype == np.uint32
    assert out.stamp_ns == 123 and out.frame_id == 'velo'
    assert out.class_names == ['class0', 'class1', 'class2', 'class3']
    assert set(out.overlays) == {'/cam0/image_raw', '/cam1/image_raw'}
    assert out.overlays['/cam0/image_raw'].shape == (H, W, 3)
    assert out.notes == []
    for stage in ('projection', 'visibility', 'teacher', 'sampling', 'classify', 'instances', 'occupancy',
                  'voxels', 'overlay', 'total'):
        assert out.timings_ms[stage] >= 0
    assert out.occupancy.data.shape == (80, 80) and out.occupancy.frame_id == 'velo'
    assert (out.occupancy.data == 100).any() and (out.occupancy.data == 0).any()
    # voxel labels: the majority of the known point labels in each voxel
    vox = out.voxels
    assert len(vox.centers) == len(vox.labels) > 0
    known = set(out.labels[out.labels != UNKNOWN_LABEL].tolist())
    assert set(vox.labels.tolist()) <= known | {UNKNOWN_LABEL}


def test_unknown_threshold():
    frame = _frame()
    p, teacher, emb = _pipeline(_config(**{'labeller.unknown_threshold': 0.9}))
    out = p.process(frame)
    ref_labels, ref_scores = _reference(frame, teacher, emb, 10.0)
    expect = np.where(ref_scores >= 0.9, ref_labels, UNKNOWN_LABEL)
    assert np.array_equal(out.labels.astype(np.int64), expect)
    assert (expect == UNKNOWN_LABEL).sum() > (ref_labels == UNKNOWN_LABEL).sum()


def test_instance_voting_gives_segments_one_label():
    frame = _frame(n=600)
    p, _, _ = _pipeline(_config(**{'fusion.instance_voting': True, 'segments.ground': 'none',
                                   'segments.eps': 2.5, 'segments.min_voxels': 2,
                                   'segments.voxel_size': 0.5}))
    out = p.process(frame)
    assert (out.instances > 0).any()
    for inst in np.unique(out.instances[out.instances > 0]):
        labels = out.labels[out.instances == inst]
        assert len(np.unique(labels)) == 1


def test_missing_camera_and_wrong_image_size_degrade_with_notes():
    frame = _frame()
    full, teacher, emb = _pipeline(_config())
    only_cam0 = _frame()
    only_cam0.cameras = only_cam0.cameras[:1]
    ref_labels, _ = _reference(only_cam0, teacher, emb, 10.0)

    frame.cameras[1].image = frame.cameras[1].image[::2, ::2]          # 32x24 instead of 64x48
    out = full.process(frame)
    assert np.array_equal(out.labels.astype(np.int64), ref_labels)     # fused from cam0 alone
    assert any('image is 32x24 but its CameraInfo says 64x48; view skipped' in n for n in out.notes)
    assert full.counters['camera_size_mismatch'] == 1
    assert set(out.overlays) == {'/cam0/image_raw'}

    only_cam0.missing_cameras = ['/cam1/image_raw']
    out = full.process(only_cam0)
    assert np.array_equal(out.labels.astype(np.int64), ref_labels)
    assert any("camera '/cam1/image_raw' missing" in n for n in out.notes)
    assert full.counters['camera_missing'] == 1

    grey = _frame()
    grey.cameras[0].image = grey.cameras[0].image[..., 0]
    grey.cameras[1].image = grey.cameras[1].image.astype(np.float32)
    out = full.process(grey)
    assert (out.labels == UNKNOWN_LABEL).all() and not out.visible.any()
    assert full.counters['camera_bad_image'] == 2


def test_frame_without_cameras_or_points():
    p, _, _ = _pipeline(_config())
    frame = _frame()
    frame.cameras = []
    out = p.process(frame)
    assert (out.labels == UNKNOWN_LABEL).all() and (out.scores == 0).all()
    assert out.occupancy is not None
    empty = Frame(stamp_ns=1, frame_id='velo', points=np.zeros((0, 3), np.float32), cameras=_frame().cameras)
    out = p.process(empty)
    assert out.labels.shape == (0,) and out.voxels.centers.shape == (0, 3)


def test_live_vocabulary_change_and_bad_vocabularies(tmp_path):
    p, teacher, emb = _pipeline(_config())
    p.set_vocabulary(['a', 'b'], embeddings=emb[:2])
    out = p.process(_frame())
    assert out.class_names == ['a', 'b']
    assert set(out.labels.tolist()) <= {0, 1, UNKNOWN_LABEL}
    with pytest.raises(ValueError, match='empty'):
        p.set_vocabulary([])
    with pytest.raises(ValueError, match='empty vocabulary'):
        p.set_vocabulary('')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('classes:\n  - name: road\n    phrases: []\n')
    with pytest.raises(ValueError, match="class 'road' has no phrases"):
        p.set_vocabulary(bad)
    with pytest.raises(ValueError, match=r'embeddings must be \(2, C\)'):
        p.set_vocabulary(['a', 'b'], embeddings=emb[:3])
    with pytest.raises(ValueError, match='no CLIP text encoder'):
        p.set_vocabulary(['a', 'b'])
    with pytest.raises(ValueError, match='width 4'):
        p.set_vocabulary(['a', 'b'], embeddings=emb[:2, :4])
    assert p.class_names == ['a', 'b']          # failed changes leave the vocabulary as it was


def test_geometry_only_without_teacher():
    p = Pipeline(_config(**{'labeller.kind': 'none', 'vocabulary.classes': ['sim']}))
    out = p.process(_frame())
    assert (out.labels == UNKNOWN_LABEL).all() and (out.scores == 0).all()
    assert out.visible.any() and not out.visible.all()
    assert out.class_names == SIM_CLASSES
    assert 'geometry only' in out.notes[0]
    assert not p.meaningful


def test_tiny_random_clip_is_flagged_and_queries_work(tmp_path):
    cfg = _config(**{'teacher.clip_model': 'ovp-tiny', 'teacher.clip_pretrained': 'none',
                     'teacher.input_size': [48, 64], 'teacher.cache_dir': str(tmp_path),
                     'vocabulary.classes': 'road,car,tree', 'vocabulary.templates': ['a photo of a {}.'],
                     'outputs.embeddings': True})
    p = Pipeline(cfg)
    assert not p.meaningful
    assert p._embedder.encoded_classes == 3
    p.set_vocabulary('road,car,bus')                  # live change: only 'bus' is encoded
    assert p._embedder.encoded_classes == 4 and p.class_names == ['road', 'car', 'bus']
    p.set_vocabulary('road,car,tree')
    assert p._embedder.encoded_classes == 4
    out = p.process(_frame())
    assert any('randomly initialised CLIP' in n and 'NO meaning' in n for n in out.notes)
    assert out.embeddings.shape == (len(out.points), 32)
    seen = out.visible
    np.testing.assert_allclose(np.linalg.norm(out.embeddings[seen], axis=1), 1.0, atol=1e-5)
    assert (out.embeddings[~seen] == 0).all()
    sim = p.similarity(out, 'traffic cone')
    q = p.text_embedding('traffic cone').numpy()
    np.testing.assert_allclose(sim[seen], out.embeddings[seen] @ q, atol=1e-5)
    assert np.isnan(sim[~seen]).all()
    # the labels are the argmax of the cosine with the class text embeddings
    text = p.clip_text.numpy()
    seen_known = seen & (out.labels != UNKNOWN_LABEL)
    assert np.array_equal(out.labels[seen_known], (out.embeddings[seen_known] @ text.T).argmax(1))


def test_weights_not_matching_model(tmp_path):
    from safetensors.torch import save_file
    bad = tmp_path / 'wrong.safetensors'
    save_file({'visual.conv1.weight': torch.zeros(3, 3, 1, 1)}, str(bad))
    cfg = _config(**{'teacher.clip_model': 'ovp-tiny', 'teacher.clip_pretrained': str(bad)})
    with pytest.raises(ValueError, match='do not match the CLIP model'):
        Pipeline(cfg)


def test_bad_pipeline_options():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['fusion.visibility_blok'\]"):
        _config(**{'fusion.visibility_blok': 3})
    with pytest.raises(ValueError, match='grids.nav_resolution must be >= 0.01'):
        _config(**{'grids.nav_resolution': 0.001})
    with pytest.raises(ValueError, match='occupancy_source: student needs'):
        Pipeline(_config(**{'labeller.kind': 'none', 'grids.occupancy_source': 'student'}))


def test_deduplicated_rays_give_the_same_occupied_cells():
    from perception_nodes.geometry.occupancy import navigation_grid
    rng = np.random.default_rng(3)
    n = 6000
    r = rng.uniform(2, 25, n)
    a = rng.uniform(-np.pi, np.pi, n)
    z = np.where(rng.random(n) < 0.6, -1.73, rng.uniform(-1.7, 1.5, n))   # ground + objects
    pts = np.c_[r * np.cos(a), r * np.sin(a), z].astype(np.float32)
    frame = Frame(stamp_ns=1, frame_id='velo', points=pts)
    cfg = _config(**{'labeller.kind': 'none', 'grids.voxels': False})
    deduped = Pipeline(cfg).process(frame).occupancy.data
    full = navigation_grid(torch.from_numpy(pts), torch.zeros(3), Pipeline(cfg).nav_spec).data
    assert np.array_equal(deduped == 100, full == 100)
    free, free_full = deduped == 0, full == 0
    assert not (free & ~free_full).any()
    assert free.sum() >= 0.99 * free_full.sum()


def test_projections_and_teacher_maps_are_kept_on_request():
    frame = _frame()
    p, teacher, emb = _pipeline(_config(**{'outputs.projections': True}))
    out = p.process(frame)
    pr = out.projections
    assert pr.cameras == ['/cam0/image_raw', '/cam1/image_raw'] and pr.image_sizes == [(H, W), (H, W)]
    assert pr.uv.shape == (2, frame.num_points, 2) and pr.visible.shape == pr.in_image.shape
    assert np.array_equal(pr.visible.any(axis=0), out.visible)          # visibility 'none': in-image points
    assert len(pr.teacher_maps) == 2 and pr.teacher_maps[0].shape == (emb.shape[1], 6, 8)
    np.testing.assert_allclose(pr.teacher_maps[1][:, 0, :], teacher.table.T.numpy(), atol=1e-6)
    assert _pipeline(_config())[0].process(frame).projections is None
