"""Pseudo-label and pseudo-mask quality measures: known answers."""
from __future__ import annotations

import numpy as np
import pytest

from training.pseudo.quality import label_quality, mask_iou, mask_quality


def test_label_quality_known_answer():
    pred = np.array([0, 1, -1, 2, 2, 0, 1])
    truth = np.array([0, 0, 1, 2, 1, 0, -1])
    fov = np.array([1, 1, 1, 1, 1, 0, 1], bool)
    vis = np.array([1, 1, 1, 1, 0, 1, 1], bool)
    q = label_quality(pred, truth, fov, vis)
    assert q['points'] == 5 and q['labelled'] == 4                      # truth -1 and out-of-fov excluded
    assert q['accuracy'] == pytest.approx(2 / 4)
    assert q['mean_class_accuracy'] == pytest.approx((1 / 2 + 1 / 1 + 0 / 1) / 3)   # classes 0, 2, 1
    assert q['accuracy_visible'] == pytest.approx(2 / 3) and q['accuracy_occluded'] == 0.0
    assert q['ignored_fraction'] == pytest.approx(1 / 5) and q['occluded_kept_fraction'] == 1.0
    q2 = label_quality(pred, truth, fov, vis, evaluate=truth == 0)
    assert q2['points'] == 2 and q2['accuracy'] == pytest.approx(0.5)


def test_mask_iou_and_quality_known_answer():
    gt = np.array([0, 0, 0, 0, 1, 1, 2, 2, -1, 9])
    pred = np.array([5, 5, 5, -1, 6, 6, 6, 6, 6, -1])
    iou, pu, gu = mask_iou(pred, gt)
    np.testing.assert_array_equal(pu, [5, 6]) and np.testing.assert_array_equal(gu, [0, 1, 2, 9])
    np.testing.assert_allclose(iou, [[3 / 4, 0, 0, 0], [0, 2 / 5, 2 / 5, 0]])
    valid = gt != 9
    q = mask_quality(pred, gt, valid)
    assert q['gt_instances'] == 3 and q['masks'] == 2
    assert q['mean_best_iou'] == pytest.approx((3 / 4 + 2 / 5 + 2 / 5) / 3)
    assert q['recall_50'] == pytest.approx(1 / 3) and q['recall_25'] == 1.0 and q['precision_50'] == 0.5
    assert mask_quality(pred, gt, valid, min_gt_points=3)['gt_instances'] == 1
    assert np.isnan(mask_quality(pred, np.full(10, -1))['mean_best_iou'])
