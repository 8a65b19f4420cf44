"""POP-3D occupancy metrics: hand-computed grids, a per-voxel reference, ray-cast labels, LiDAR mIoU."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from perception_nodes.geometry.occupancy import FREE, IGNORE, OCCUPIED, ray_cast_labels
from perception_nodes.geometry.voxels import GridSpec
from perception_nodes.metrics.occupancy import LidarSemanticAccumulator, OccupancyAccumulator
from perception_nodes.outputs import UNKNOWN_LABEL

F, I, U = FREE, IGNORE, UNKNOWN_LABEL


def test_hand_computed_grid():
    # 10 voxels (2 classes: a = 0, b = 1; empty = 2 in the semantic confusion)
    #   gt:   F  F  F  I  I  0  0  1  1  OCC
    #   occ:  0  1  0  1  0  1  1  1  0  1
    #   lab:  -  0  -  1  -  0  1  U  -  0
    # ignored voxels 3, 4 are not evaluated -> 8 observed.
    # class-agnostic: gt occupied = {5, 6, 7, 8, 9}; predicted occupied among observed = {1, 5, 6, 7, 9}
    #   TP = {5, 6, 7, 9} = 4, FP = {1} = 1, FN = {8} = 1, TN = {0, 2} = 2
    #   -> IoU 4/6, precision 4/5, recall 4/5
    # semantic (voxel 9 is OCCUPIED without a class: not in the semantic confusion), 7 voxels:
    #   v0 empty->empty  v1 empty->a  v2 empty->empty  v5 a->a  v6 a->b  v7 b->unknown  v8 b->empty
    #   a: TP 1, FP 1 (v1), FN 1 (v6)       IoU 1/3
    #   b: TP 0, FP 1 (v6), FN 2 (v7, v8)   IoU 0
    #   empty: TP 2, FP 1 (v8), FN 1 (v1)   IoU 2/4
    #   mIoU over a, b, empty = (1/3 + 0 + 1/2) / 3
    gt = np.array([F, F, F, I, I, 0, 0, 1, 1, OCCUPIED])
    occ = np.array([0, 1, 0, 1, 0, 1, 1, 1, 0, 1], dtype=bool)
    lab = np.array([0, 0, 0, 1, 0, 0, 1, U, 0, 0])
    acc = OccupancyAccumulator(class_names=['a', 'b'])
    assert acc.update(gt, occ, lab) == 8
    r = acc.compute()
    assert r.iou == pytest.approx(4 / 6)
    assert r.precision == pytest.approx(4 / 5) and r.recall == pytest.approx(4 / 5)
    assert r.observed_voxels == 8 and r.occupied_voxels == 5
    assert r.confusion.tolist() == [[2, 1], [1, 4]]
    np.testing.assert_allclose(r.semantic.iou, [1 / 3, 0.0, 0.5])
    assert r.semantic.class_names == ['a', 'b', 'empty']
    assert r.miou == pytest.approx((1 / 3 + 0 + 0.5) / 3)
    assert r.semantic.points == 7
    json.dumps(r.to_dict())


def _reference(gt, occ, lab, k):
    """Per-voxel loops over observed voxels."""
    tp = fp = fn = 0
    conf = np.zeros((k + 1, k + 2), dtype=np.int64)
    for g, o, lb in zip(gt.tolist(), occ.tolist(), lab.tolist()):
        if g == IGNORE:
            continue
        gocc = g >= 0 or g == OCCUPIED
        tp += gocc and o
        fp += (not gocc) and o
        fn += gocc and not o
        if g == OCCUPIED:
            continue
        t = k if g == FREE else g
        p = (k + 1 if lb == U else lb) if o else k
        conf[t, p] += 1
    return tp / (tp + fp + fn) if tp + fp + fn else math.nan, conf


@pytest.mark.parametrize('seed', range(5))
def test_matches_per_voxel_reference_and_streams(seed):
    rng = np.random.default_rng(seed)
    k = 4
    shape = (6, 5, 4)
    gt = rng.choice(np.array([F, I, OCCUPIED, 0, 1, 2, 3]), size=shape, p=[.35, .25, .05, .1, .1, .1, .05])
    occ = rng.random(shape) < 0.4
    lab = np.where(rng.random(shape) < 0.15, U, rng.integers(0, k, shape))
    acc = OccupancyAccumulator(class_names=list('abcd'))
    acc.update(torch.from_numpy(gt), torch.from_numpy(occ), torch.from_numpy(lab))
    r = acc.compute()
    iou, conf = _reference(gt.ravel(), occ.ravel(), lab.ravel(), k)
    assert (math.isnan(iou) and math.isnan(r.iou)) or r.iou == pytest.approx(iou)
    np.testing.assert_array_equal(r.semantic.confusion, conf)
    # streaming: two halves, merged, restored from JSON
    a, b = OccupancyAccumulator(list('abcd')), OccupancyAccumulator(list('abcd'))
    a.update(gt[:3], occ[:3], lab[:3])
    b.update(gt[3:], occ[3:], lab[3:])
    merged = OccupancyAccumulator.from_state(json.loads(json.dumps(a.merge(b).state_dict())))
    np.testing.assert_array_equal(merged.confusion, acc.confusion)
    np.testing.assert_array_equal(merged.semantic.confusion, acc.semantic.confusion)


def test_on_ray_cast_labels():
    # A wall of labelled points at x = 3.5 seen from the origin: free voxels in front, occupied at the wall,
    # everything behind or beside never observed.
    grid = GridSpec(lower=(-4.0, -4.0, -1.0), upper=(4.0, 4.0, 1.0), shape=(8, 8, 2))
    ys, zs = np.meshgrid(np.linspace(-0.9, 0.9, 5), np.linspace(-0.5, 0.5, 3))
    pts = np.stack([np.full(ys.size, 3.5), ys.ravel(), zs.ravel()], 1)
    labels = (pts[:, 1] > 0).astype(np.int64)                    # class 1 left, class 0 right
    gt = ray_cast_labels(torch.tensor(pts, dtype=torch.float32), torch.zeros(3), grid, torch.tensor(labels))
    g = gt.numpy()
    assert (g == FREE).any() and (g == IGNORE).any() and (g >= 0).any()
    # a perfect prediction: occupied exactly where the truth is occupied, with the true class
    perfect = OccupancyAccumulator(['ground', 'object'])
    perfect.update(gt, g >= 0, np.where(g >= 0, g, 0))
    r = perfect.compute()
    assert r.iou == 1.0 and r.miou == 1.0 and r.observed_voxels == int((g != IGNORE).sum())
    # predicting everything occupied: every free voxel becomes a false positive
    full = OccupancyAccumulator(['ground', 'object'])
    full.update(gt, np.ones(g.shape, bool), np.where(g >= 0, g, 0))
    n_occ, n_free = int((g >= 0).sum()), int((g == FREE).sum())
    assert full.compute().iou == pytest.approx(n_occ / (n_occ + n_free))
    assert full.compute().semantic.iou[2] == 0.0                 # "empty" never predicted
    # class-agnostic casting (OCCUPIED) works without class names
    agn = OccupancyAccumulator()
    gt_agn = ray_cast_labels(torch.tensor(pts, dtype=torch.float32), torch.zeros(3), grid)
    agn.update(gt_agn, gt_agn.numpy() == OCCUPIED)
    assert agn.compute().iou == 1.0 and agn.compute().semantic is None and math.isnan(agn.compute().miou)


def test_rejects_bad_inputs():
    acc = OccupancyAccumulator(['a'])
    with pytest.raises(ValueError, match='gt values'):
        acc.update(np.array([1]), np.array([True]))                    # class 1 with K = 1
    with pytest.raises(ValueError, match='gt values'):
        acc.update(np.array([-4]), np.array([True]))
    with pytest.raises(ValueError, match='elements'):
        acc.update(np.array([F, F]), np.array([True]))
    with pytest.raises(ValueError, match='class-agnostic'):
        OccupancyAccumulator().update(np.array([F]), np.array([True]), np.array([0]))
    with pytest.raises(ValueError, match='reserved'):
        OccupancyAccumulator(['empty'])


def test_lidar_miou_needs_the_camera_mask():
    # POP-3D LiDAR mIoU: only points that project into a camera count. Points 0-2 are in view (correct),
    # point 3 is out of view and wrong: in-view mIoU is 1, all-points mIoU is lower.
    pred = np.array([0, 1, 1, 0])
    truth = np.array([0, 1, 1, 1])
    acc = LidarSemanticAccumulator(2)
    with pytest.raises(ValueError, match='camera'):
        acc.update(pred, truth)
    acc.update(pred, truth, np.array([True, True, True, False]))
    assert acc.compute().miou == 1.0
    restored = LidarSemanticAccumulator.from_state(acc.state_dict())
    assert isinstance(restored, LidarSemanticAccumulator) and restored.points == 3
    from perception_nodes.metrics.semantic import SemanticAccumulator
    with pytest.raises(ValueError, match='lidar_semantic'):
        acc.merge(SemanticAccumulator(2))
