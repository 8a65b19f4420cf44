"""Oracle teacher: true class embeddings per pixel, with instance flips and boundary bleeding."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception_nodes.frame import CameraModel, CameraView
from perception_nodes.teacher.base import Teacher
from perception_nodes.teacher.oracle import OracleNoise, OracleTeacher

K, C = 4, 8


def embeddings() -> torch.Tensor:
    return F.normalize(torch.randn(K, C, generator=torch.Generator().manual_seed(0)), dim=1)


def truth_view(stamp: int = 0) -> CameraView:
    """40x60 image: class 0 background, a class-1 object (instance 7), a class-2 object (instance 8),
    and a strip of class 9 (not in the vocabulary)."""
    cls = np.zeros((40, 60), dtype=np.int64)
    inst = np.zeros((40, 60), dtype=np.int64)
    cls[5:15, 5:25], inst[5:15, 5:25] = 1, 7
    cls[20:35, 30:55], inst[20:35, 30:55] = 2, 8
    cls[:, 58:] = 9
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    return CameraView('cam', image, CameraModel('cam', 60, 40, np.eye(3)), np.eye(4), stamp_ns=stamp,
                      truth={'class': cls, 'instance': inst})


def as_labels(feats: torch.Tensor, emb: torch.Tensor) -> np.ndarray:
    """Recover the class index per pixel (-1 for zero vectors)."""
    flat = feats.flatten(1).T
    labels = (flat @ emb.T).argmax(1)
    labels[flat.norm(dim=1) < 0.5] = -1
    return labels.reshape(feats.shape[1:]).numpy()


def test_noise_free_is_exact() -> None:
    emb = embeddings()
    teacher = OracleTeacher(emb)
    assert isinstance(teacher, Teacher) and teacher.embed_dim == C
    v = truth_view()
    feats = teacher.dense_features([v])[0]
    assert feats.shape == (C, 40, 60)
    torch.testing.assert_close(feats[:, 10, 10], emb[1])
    torch.testing.assert_close(feats[:, 0, 0], emb[0])
    torch.testing.assert_close(feats[:, :, 58:], torch.zeros(C, 40, 2))       # class 9: unknown -> zero
    expected = np.where(v.truth['class'] < K, v.truth['class'], -1)
    np.testing.assert_array_equal(as_labels(feats, emb), expected)


def test_class_map_and_background() -> None:
    emb = embeddings()
    background = torch.ones(C)
    teacher = OracleTeacher(emb, class_map={0: 3, 1: 0, 2: 1}, background=background)
    feats = teacher.dense_features([truth_view()])[0]
    torch.testing.assert_close(feats[:, 0, 0], emb[3])
    torch.testing.assert_close(feats[:, 10, 10], emb[0])
    torch.testing.assert_close(feats[:, 0, 59], F.normalize(background, dim=0))   # 9 unmapped
    with pytest.raises(ValueError, match='class_map targets'):
        OracleTeacher(emb, class_map={0: K})


def test_instance_flips() -> None:
    emb = embeddings()
    v = truth_view()
    truth = v.truth['class']
    teacher = OracleTeacher(emb, noise=OracleNoise(flip_prob=1.0, seed=3))
    flipped = as_labels(teacher.dense_features([v])[0], emb)
    for region in (truth == 0, truth == 1, truth == 2):
        values = np.unique(flipped[region])
        assert len(values) == 1                                  # a whole object flips together
        assert values[0] != truth[region][0] and 0 <= values[0] < K
    assert (flipped[truth == 9] == -1).all()                     # unknown stays unknown
    # flips are random per object: over many frames each object keeps its class about (1 - p) of the time
    teacher = OracleTeacher(emb, noise=OracleNoise(flip_prob=0.3, seed=1))
    kept = [teacher.class_raster(truth_view(stamp=s))[10, 10] == 1 for s in range(200)]
    assert 0.6 < np.mean(kept) < 0.8
    # same view, same seed -> same noise
    a = teacher.dense_features([truth_view(stamp=5)])[0]
    torch.testing.assert_close(a, teacher.dense_features([truth_view(stamp=5)])[0])


def test_instance_flip_without_instance_raster_uses_connected_regions() -> None:
    emb = embeddings()
    v = truth_view()
    del v.truth['instance']
    flipped = as_labels(OracleTeacher(emb, noise=OracleNoise(flip_prob=1.0)).dense_features([v])[0], emb)
    assert len(np.unique(flipped[v.truth['class'] == 1])) == 1
    assert (flipped[v.truth['class'] == 1] != 1).all()


def test_boundary_bleed() -> None:
    emb = embeddings()
    v = truth_view()
    truth = np.where(v.truth['class'] < K, v.truth['class'], -1)
    b = 2
    bled = as_labels(OracleTeacher(emb, noise=OracleNoise(boundary_bleed_px=b)).dense_features([v])[0], emb)
    # a pixel can only take a label found within b pixels (per axis) of it
    h, w = truth.shape
    changed = 0
    for r in range(h):
        for c in range(w):
            window = truth[max(0, r - b):r + b + 1, max(0, c - b):c + b + 1]
            assert bled[r, c] in window
            if len(np.unique(window)) == 1:
                assert bled[r, c] == truth[r, c]                  # interiors untouched
            changed += bled[r, c] != truth[r, c]
    assert changed > 20


def test_downsample_and_errors() -> None:
    emb = embeddings()
    feats = OracleTeacher(emb, downsample=4).dense_features([truth_view()])[0]
    assert feats.shape == (C, 10, 15)
    torch.testing.assert_close(feats[:, 2, 3], emb[1])            # cell centre (10, 14) is in the class-1 box
    grid = OracleTeacher(emb, output_size=(4, 6)).class_raster(truth_view())
    # cell centres: rows 5, 15, 25, 35 and columns 5, 15, ..., 55 of the 40x60 truth raster
    np.testing.assert_array_equal(grid, [[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0],
                                         [0, 0, 0, 2, 2, 0], [0, 0, 0, 0, 0, 0]])
    v = truth_view()
    v.truth = {}
    with pytest.raises(ValueError, match="no truth\\['class'\\]"):
        OracleTeacher(emb).dense_features([v])
    with pytest.raises(ValueError, match='K >= 1'):
        OracleTeacher(torch.zeros(0, C))
    with pytest.raises(ValueError, match='flip_prob'):
        OracleNoise(flip_prob=1.5)


def test_oracle_on_the_synthetic_world(sim_frame) -> None:
    from perception_nodes.geometry.sim import SIM_CLASSES
    emb = F.normalize(torch.randn(len(SIM_CLASSES), C, generator=torch.Generator().manual_seed(1)), dim=1)
    view = sim_frame.cameras[0]
    truth = view.truth['class']
    assert (truth < 0).any() and (truth >= 0).any()            # sky and objects in view
    labels = as_labels(OracleTeacher(emb).dense_features([view])[0], emb)
    np.testing.assert_array_equal(labels, np.where(truth >= 0, truth, -1))
    noisy = OracleTeacher(emb, noise=OracleNoise(flip_prob=0.5, boundary_bleed_px=1, seed=2))
    noisy_labels = as_labels(noisy.dense_features([view])[0], emb)
    wrong = (noisy_labels != labels)[truth >= 0].mean()
    assert 0.05 < wrong < 0.95
