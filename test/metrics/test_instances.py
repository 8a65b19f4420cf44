"""Class-agnostic instance AP (ScanNet benchmark definition): constructed cases, a reference, real ScanNet."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception_nodes.metrics.instances import (SCANNET_AP_THRESHOLDS, SCANNET_INSTANCE_NYU40_IDS,
                                                InstanceAccumulator, class_agnostic_gt, masks_from_ids,
                                                match_scene, scannet_average_precision)


# ----------------------------------------------------------------------------------------- slow reference

def _reference_ap(scenes, threshold, min_size):
    """The ScanNet script's procedure, in plain loops: ground truth walked in order, each taking its first
    unvisited prediction above the threshold (later ones: the lower score becomes a false positive), then
    unmatched predictions as false positives unless mostly on void / small instances; AP by the script's
    step widths 0.5 * (r[i-1] - r[i+1]) over (precision, recall) points plus the artificial (1, 0)."""
    y_true, y_score = [], []
    hard_fn = 0
    has_gt = has_pred = False
    for gt, masks, scores in scenes:
        gt = list(gt)
        n = len(gt)
        gt_ids = sorted({g for g in gt if g >= 0})
        size = {g: sum(1 for v in gt if v == g) for g in gt_ids}
        preds = []
        for m, s in zip(masks, scores):
            pts = [i for i in range(n) if m[i]]
            if len(pts) < min_size:
                continue
            inter = {}
            for i in pts:
                if gt[i] >= 0:
                    inter[gt[i]] = inter.get(gt[i], 0) + 1
            void = sum(1 for i in pts if gt[i] < 0)
            preds.append({'n': len(pts), 'score': s, 'inter': inter, 'void': void, 'visited': False})
        has_pred |= bool(preds)
        evaluated = [g for g in gt_ids if size[g] >= min_size]
        has_gt |= bool(evaluated)
        cur_true, cur_score, cur_match = [], [], []
        for g in evaluated:
            cur_true.append(1)
            cur_score.append(-math.inf)
            cur_match.append(False)
            gi = len(cur_true) - 1
            found = False
            for p in preds:
                if g not in p['inter'] or p['visited']:
                    continue
                iou = p['inter'][g] / (size[g] + p['n'] - p['inter'][g])
                if iou > threshold:
                    if cur_match[gi]:
                        lo, hi = sorted((cur_score[gi], p['score']))
                        cur_score[gi] = hi
                        cur_true.append(0)
                        cur_score.append(lo)
                        cur_match.append(True)
                    else:
                        found = True
                        cur_match[gi] = True
                        cur_score[gi] = p['score']
                        p['visited'] = True
            if not found:
                hard_fn += 1
        for t, s, m in zip(cur_true, cur_score, cur_match):
            if m:
                y_true.append(t)
                y_score.append(s)
        for p in preds:
            if any(p['inter'][g] / (size[g] + p['n'] - p['inter'][g]) > threshold for g in p['inter']):
                continue
            ignore = p['void'] + sum(c for g, c in p['inter'].items() if size[g] < min_size)
            if ignore / p['n'] <= threshold:
                y_true.append(0)
                y_score.append(p['score'])
    if not has_gt:
        return math.nan
    if not has_pred or not y_score:
        return 0.0
    order = np.argsort(y_score, kind='stable')
    ys = np.array(y_score)[order]
    yt = np.cumsum(np.array(y_true)[order])
    _, first = np.unique(ys, return_index=True)
    total = yt[-1]
    yt = np.append(yt, 0)
    prec, rec = [], []
    for idx in first:
        below = yt[idx - 1]
        tp = total - below
        fp = len(ys) - idx - tp
        prec.append(tp / (tp + fp))
        rec.append(tp / (tp + below + hard_fn))
    prec.append(1.0)
    rec.append(0.0)
    padded = [rec[0]] + rec + [0.0]
    return float(sum(prec[i] * 0.5 * (padded[i] - padded[i + 2]) for i in range(len(prec))))


def _acc(scenes, min_size=1, thresholds=SCANNET_AP_THRESHOLDS):
    acc = InstanceAccumulator(ap_thresholds=thresholds, min_region_size=min_size)
    for gt, masks, scores in scenes:
        acc.update(np.asarray(gt), np.asarray(masks, dtype=bool), np.asarray(scores, dtype=float))
    return acc


def _mask(n, idx):
    m = np.zeros(n, dtype=bool)
    m[list(idx)] = True
    return m


# ---------------------------------------------------------------------------------------- constructed cases

def test_thresholds_are_the_scripts():
    # np.arange(0.5, 0.95, 0.05): nine values 0.50 .. 0.90 -- 0.95 is not among them
    assert len(SCANNET_AP_THRESHOLDS) == 9
    assert SCANNET_AP_THRESHOLDS[0] == 0.5 and SCANNET_AP_THRESHOLDS[-1] == pytest.approx(0.9)
    assert InstanceAccumulator().thresholds[0] == 0.25


def test_perfect_masks():
    gt = np.repeat([0, 1, 2, -1], [120, 150, 200, 30])
    masks, _ = masks_from_ids(gt)
    acc = InstanceAccumulator()                                   # benchmark min size 100
    acc.update(gt, masks, [0.3, 0.9, 0.5])
    r = acc.compute()
    assert r.ap == 1.0 and r.ap50 == 1.0 and r.ap25 == 1.0 and r.num_gt == 3 and r.num_pred == 3
    assert all(v == 1.0 for v in r.ap_per_threshold.values())
    json.dumps(r.to_dict())


@pytest.mark.parametrize('shift,iou,ap50,ap25,ap', [
    (33, 67 / 133, 1.0, 1.0, 1 / 9),     # IoU 0.504 > 0.5: matched at 0.50 only among the AP thresholds
    (34, 66 / 134, 0.0, 1.0, 0.0),       # IoU 0.493: just below 0.5
    (9, 91 / 109, 1.0, 1.0, 7 / 9),      # IoU 0.835: matched at 0.50 .. 0.80, not 0.85, 0.90
])
def test_shifted_masks(shift, iou, ap50, ap25, ap):
    n = 400
    gt = np.full(n, -1)
    gt[100:200] = 0                                              # one instance of 100 points
    pred = _mask(n, range(100 + shift, 200 + shift))             # same size, shifted: IoU (100-s)/(100+s)
    acc = _acc([(gt, [pred], [0.7])], min_size=100)
    r = acc.compute()
    assert (r.ap50, r.ap25) == (ap50, ap25)
    assert r.ap == pytest.approx(ap)
    assert iou == pytest.approx((100 - shift) / (100 + shift))


def test_iou_exactly_at_threshold_does_not_match():
    # the script matches on overlap > threshold: a prediction covering 2 of a 4-point instance has IoU 0.5
    gt = np.array([0, 0, 0, 0, -1])
    r = _acc([(gt, [_mask(5, [0, 1])], [1.0])]).compute()
    assert r.ap50 == 0.0 and r.ap25 == 1.0


def test_split_masks():
    # one 200-point instance predicted as two halves (IoU 0.5 each): nothing above 0.5;
    # at 0.25 the higher-scored half is the true positive, the other a duplicate false positive.
    # PR points (increasing score): s=0.6: P 1/2 R 1; s=0.8: P 1 R 1; artificial P 1 R 0
    # AP25 = (1 - 1)(1/2 + 1)/2 + (1 - 0)(1 + 1)/2 = 1
    gt = np.zeros(200, dtype=np.int64)
    halves = [_mask(200, range(100)), _mask(200, range(100, 200))]
    r = _acc([(gt, halves, [0.8, 0.6])], min_size=100).compute()
    assert r.ap50 == 0.0 and r.ap == 0.0 and r.ap25 == 1.0


def test_merged_masks():
    # instances A (150 points) and B (100) predicted as one 250-point mask: IoU(A) = 0.6, IoU(B) = 0.4.
    # at 0.50 and 0.55: TP for A, B missed -> P 1 at R 1/2 -> AP = (1/2)(1 + 1)/2 = 1/2;
    # at 0.60 (0.6000000000000001 in the script) and above: 0.6 is not above it -> AP 0.
    # AP = (1/2 + 1/2 + 0 * 7) / 9 = 1/9; at 0.25 A (the larger IoU) is taken: AP25 = 1/2.
    gt = np.repeat([0, 1], [150, 100])
    r = _acc([(gt, [np.ones(250, bool)], [0.9])], min_size=100).compute()
    assert r.ap50 == 0.5 and r.ap_per_threshold[SCANNET_AP_THRESHOLDS[1]] == 0.5
    assert r.ap_per_threshold[SCANNET_AP_THRESHOLDS[2]] == 0.0
    assert r.ap == pytest.approx(1 / 9) and r.ap25 == 0.5


def test_duplicates_are_false_positives():
    # A matched by a (0.9) and duplicated by a' (0.8, same mask); B matched by b (0.7).
    # PR points (increasing score): 0.7: TP 2 FP 1 -> P 2/3 R 1; 0.8: TP 1 FP 1 -> P 1/2 R 1/2;
    # 0.9: TP 1 -> P 1 R 1/2; artificial P 1 R 0.
    # AP = (1 - 1/2)(2/3 + 1/2)/2 + (1/2 - 1/2)(...) + (1/2 - 0)(1 + 1)/2 = 7/24 + 1/2 = 19/24
    gt = np.repeat([0, 1], [100, 100])
    a = _mask(200, range(100))
    b = _mask(200, range(100, 200))
    r = _acc([(gt, [a, a, b], [0.9, 0.8, 0.7])], min_size=100).compute()
    assert r.ap50 == pytest.approx(19 / 24) and r.ap == pytest.approx(19 / 24)
    # the same predictions without the duplicate: perfect
    assert _acc([(gt, [a, b], [0.9, 0.7])], min_size=100).compute().ap == 1.0


def test_empty_prediction_set_and_empty_ground_truth():
    gt = np.repeat([0, 1], [100, 100])
    acc = InstanceAccumulator()
    acc.update(gt, np.zeros((0, 200), bool), np.zeros(0))
    r = acc.compute()
    assert r.ap == 0.0 and r.ap50 == 0.0 and r.ap25 == 0.0 and r.num_gt == 2 and r.num_pred == 0
    no_gt = InstanceAccumulator()
    no_gt.update(np.full(200, -1), np.ones((1, 200), bool), [0.5])
    assert math.isnan(no_gt.compute().ap) and math.isnan(no_gt.compute().ap50)
    assert json.loads(json.dumps(no_gt.compute().to_dict()))['ap'] is None
    assert math.isnan(scannet_average_precision(np.zeros(0), np.zeros(0, bool), 0))


def test_void_and_small_instances_are_ignored_like_the_benchmark():
    n = 400
    gt = np.full(n, -1)
    gt[0:100] = 0                                      # evaluated instance
    gt[100:150] = 1                                    # too small (50 < 100): not evaluated
    # p_void: 80 void points + 20 on instance 0: IoU 20/180; 80 % on void -> ignored while t < 0.8,
    # a false positive at t >= 0.8 (0.8000000000000003 in the script: 0.8 is not above it)
    p_void = _mask(n, list(range(200, 280)) + list(range(0, 20)))
    # p_small: the small instance + 70 void points: entirely void / small -> always ignored
    p_small = _mask(n, list(range(100, 150)) + list(range(300, 370)))
    # p_tiny: 60 points, below the 100-point minimum: dropped before matching
    p_tiny = _mask(n, range(0, 60))
    p_good = _mask(n, range(0, 100))
    scores = [0.9, 0.95, 0.99, 0.5]
    sc, outcomes, num_gt = match_scene(gt, np.stack([p_void, p_small, p_tiny, p_good]), scores,
                                       SCANNET_AP_THRESHOLDS, 100)
    assert num_gt == 1 and sc.tolist() == [0.9, 0.95, 0.5]              # p_tiny dropped
    t = np.array(SCANNET_AP_THRESHOLDS)
    np.testing.assert_array_equal(outcomes[0], np.where(t < 0.8, -1, 0))
    np.testing.assert_array_equal(outcomes[1], np.full(9, -1))
    np.testing.assert_array_equal(outcomes[2], np.full(9, 1))
    r = _acc([(gt, np.stack([p_void, p_small, p_tiny, p_good]), scores)], min_size=100).compute()
    # below 0.8 only p_good is scored: AP 1. From 0.8: FP (0.9) above TP (0.5): points 0.5: P 1/2 R 1,
    # 0.9: P 0 R 0, artificial P 1 R 0 -> AP = (1 - 0)(1/2 + 0)/2 = 1/4
    assert r.ap50 == 1.0
    assert r.ap_per_threshold[t[-1]] == pytest.approx(0.25)
    assert r.ap == pytest.approx((6 * 1.0 + 3 * 0.25) / 9)


def test_scores_order_decides_the_true_positive_at_low_thresholds():
    # Documented difference from the script at t < 0.5: a merged mask M (0.9) overlaps A and B by IoU 0.4
    # each, and an exact mask of A (0.5) comes first in the input. The script walks A: the exact mask is
    # matched first, M becomes its higher-scored match and the exact mask the false positive; then B: M,
    # never marked visited, is matched again -> two true positives from one mask, AP25 = 1.
    # Score-ordered greedy: M takes A (IoU tie -> first instance), the exact mask is a duplicate,
    # B is missed -> points 0.5: P 1/2 R 1/2; 0.9: P 1 R 1/2; artificial -> AP25 = 1/2.
    gt = np.repeat([0, 1], [100, 100])
    exact_a = _mask(200, range(100))
    merged = _mask(200, list(range(30, 100)) + list(range(100, 170)))      # 140 points, 70 of each
    # IoU(merged, A) = 70 / (100 + 140 - 70) = 0.41
    scenes = [(gt, [exact_a, merged], [0.5, 0.9])]
    assert _reference_ap(scenes, 0.25, 1) == 1.0
    assert _acc(scenes).compute().ap25 == pytest.approx(0.5)
    # at 0.5 and above both agree (M matches nothing; the exact mask is the single TP, M a false positive)
    assert _acc(scenes).compute().ap50 == pytest.approx(_reference_ap(scenes, 0.5, 1))


def test_input_forms_agree():
    rng = np.random.default_rng(5)
    gt_ids = rng.integers(-1, 4, 300)
    pred_ids = np.where(rng.random(300) < 0.8, gt_ids, rng.integers(-1, 5, 300))
    masks, uniq = masks_from_ids(pred_ids)
    scores = rng.random(uniq.size)
    gt_masks, _ = masks_from_ids(gt_ids)
    a = match_scene(gt_ids, pred_ids, scores, SCANNET_AP_THRESHOLDS, 10)
    b = match_scene(torch.from_numpy(gt_masks), torch.from_numpy(masks), torch.from_numpy(scores),
                    SCANNET_AP_THRESHOLDS, 10)
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2] and np.array_equal(a[0], b[0])
    with pytest.raises(ValueError, match='overlap'):
        match_scene(np.ones((2, 5), bool), np.ones((1, 5), bool), [1.0], [0.5])
    with pytest.raises(ValueError, match='scores'):
        match_scene(gt_ids, masks, scores[:-1], [0.5])


def _random_scene(rng, n=240):
    gt = np.full(n, -1)
    start = 0
    for g in range(int(rng.integers(1, 6))):
        size = int(rng.integers(5, 50))
        gt[start:start + size] = g
        start += size + int(rng.integers(0, 10))
        if start >= n:
            break
    gt = gt[rng.permutation(n)] if rng.random() < 0.5 else gt
    masks = []
    for _ in range(int(rng.integers(0, 8))):
        g = int(rng.integers(-1, 6))
        base = gt == g if g >= 0 and (gt == g).any() else rng.random(n) < 0.1
        noise = rng.random(n) < rng.uniform(0.0, 0.1)
        keep = rng.random(n) < rng.uniform(0.5, 1.0)
        masks.append((base & keep) ^ noise)
    scores = np.round(rng.random(len(masks)), 1)                            # ties too
    return gt, np.array(masks, dtype=bool).reshape(-1, n), scores


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_scenes=st.integers(1, 3), min_size=st.sampled_from([1, 15]))
def test_matches_script_reference_at_and_above_0_5(seed, n_scenes, min_size):
    rng = np.random.default_rng(seed)
    scenes = [_random_scene(rng) for _ in range(n_scenes)]
    acc = _acc(scenes, min_size=min_size)
    for t in SCANNET_AP_THRESHOLDS:
        ours = acc.average_precision(t)
        ref = _reference_ap(scenes, t, min_size)
        assert (math.isnan(ours) and math.isnan(ref)) or ours == pytest.approx(ref, abs=1e-12), t
    # at 0.25 the two agree whenever no prediction exceeds 0.25 IoU with two evaluated instances
    if all(_max_matches(gt, masks, 0.25, min_size) <= 1 for gt, masks, _ in scenes):
        ours, ref = acc.average_precision(0.25), _reference_ap(scenes, 0.25, min_size)
        assert (math.isnan(ours) and math.isnan(ref)) or ours == pytest.approx(ref, abs=1e-12)


def _max_matches(gt, masks, t, min_size):
    """Largest number of evaluated instances one (kept) prediction overlaps by IoU > t."""
    best = 0
    for m in masks:
        if m.sum() < min_size:
            continue
        hits = 0
        for g in np.unique(gt[gt >= 0]):
            inst = gt == g
            if inst.sum() >= min_size and (m & inst).sum() / (m | inst).sum() > t:
                hits += 1
        best = max(best, hits)
    return best


def test_streaming_merge_and_state_equal_one_shot():
    rng = np.random.default_rng(11)
    scenes = [_random_scene(rng) for _ in range(6)]
    one = _acc(scenes, min_size=5)
    a, b = _acc(scenes[:2], min_size=5), _acc(scenes[2:], min_size=5)
    merged = InstanceAccumulator.from_state(json.loads(json.dumps(a.merge(b).state_dict())))
    r1, r2 = one.compute(), merged.compute()
    assert r2.scenes == 6 and r1.num_gt == r2.num_gt and r1.num_pred == r2.num_pred
    for t in one.thresholds:
        assert (math.isnan(r1.ap_per_threshold[t]) and math.isnan(r2.ap_per_threshold[t])) \
            or r1.ap_per_threshold[t] == r2.ap_per_threshold[t]
    with pytest.raises(ValueError, match='same thresholds'):
        one.merge(InstanceAccumulator(min_region_size=100))
    c = one.curve(0.5)
    assert c.precision[-1] == 1.0 and c.recall[-1] == 0.0 and c.precision.size == c.thresholds.size + 1


# ------------------------------------------------------------------------------------------- real ScanNet

@pytest.fixture(scope='module')
def scannet_dir():
    from perception_nodes.io.kitti import DATA_ENV, shared_data_dir
    d = shared_data_dir() / 'scannet_scene0000_00'
    if not d.is_dir():
        pytest.skip(f'real data not found at {d} (set ${DATA_ENV} to the folder holding '
                    f'scannet_scene0000_00/)')
    return d


@pytest.fixture(scope='module')
def scannet_gt(scannet_dir):
    sem = np.load(scannet_dir / 'scene0000_00_sem_label_all.npy')
    ins = np.load(scannet_dir / 'scene0000_00_ins_label_all.npy')
    return class_agnostic_gt(ins, sem), sem, ins


def test_scannet_class_agnostic_ground_truth(scannet_gt, scannet_dir):
    gt, sem, ins = scannet_gt
    # void: walls, floors, unannotated and non-benchmark NYU40 classes
    assert (gt[np.isin(sem, [0, 1, 2, 13, 15, 22, 40])] == -1).all()
    inst_classes = np.isin(sem, SCANNET_INSTANCE_NYU40_IDS)
    assert (gt[inst_classes & (ins > 0)] >= 0).all()
    ids, sizes = np.unique(gt[gt >= 0], return_counts=True)
    masks, _ = masks_from_ids(gt)
    acc = InstanceAccumulator()
    acc.update(gt, masks, np.linspace(0.1, 1.0, masks.shape[0]))
    r = acc.compute()
    assert r.num_gt == int((sizes >= 100).sum())
    assert r.ap == pytest.approx(1.0) and r.ap25 == pytest.approx(1.0)          # 27 steps of 1/27
    # the scene's axis-aligned boxes (mmdetection3d export) are one per instance of the 18 classes
    boxes = np.load(scannet_dir / 'scene0000_00_bbox.npy')
    assert ids.size == boxes.shape[0] == 27
    assert np.isin(boxes[:, 6].astype(int), SCANNET_INSTANCE_NYU40_IDS).all()


def test_scannet_degraded_masks_against_reference(scannet_gt):
    # every instance predicted with a quarter of its points dropped (IoU ~ 0.75) plus two whole-room
    # false positives: our AP equals the script procedure's at every threshold >= 0.5.
    gt, _, _ = scannet_gt
    rng = np.random.default_rng(0)
    masks, _ = masks_from_ids(gt)
    degraded = masks & (rng.random(masks.shape) < 0.75)
    extra = np.stack([np.ones(gt.size, bool), rng.random(gt.size) < 0.3])
    preds = np.concatenate([degraded, extra])
    scores = rng.random(preds.shape[0])
    acc = InstanceAccumulator()
    acc.update(gt, preds, scores)
    r = acc.compute()
    assert 0.0 < r.ap < 1.0 and r.ap50 > 0.5
    sub = rng.choice(gt.size, 6000, replace=False)                 # keep the loop reference fast
    acc_sub = InstanceAccumulator(min_region_size=10)
    acc_sub.update(gt[sub], preds[:, sub], scores)
    for t in (0.5, 0.7, 0.75, SCANNET_AP_THRESHOLDS[-1]):
        assert acc_sub.average_precision(t) == pytest.approx(
            _reference_ap([(gt[sub], preds[:, sub], scores)], t, 10), abs=1e-12)
