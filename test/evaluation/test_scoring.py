"""Scorer on constructed frames and outputs: occupancy (student head), instances, state, merging, summary."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception_nodes.evaluation.options import EvalOptions
from perception_nodes.evaluation.scoring import BagScore, Scorer, predicted_voxels, segment_scores
from perception_nodes.evaluation.summary import SummaryContext, headline, summarize
from perception_nodes.evaluation.truth import TruthMapper
from perception_nodes.frame import Frame
from perception_nodes.geometry.voxels import GridSpec
from perception_nodes.metrics import LabelMap
from perception_nodes.outputs import UNKNOWN_LABEL, Outputs, SemanticVoxels

U = UNKNOWN_LABEL
GRID = GridSpec((0.0, -0.5, -0.5), (4.0, 0.5, 0.5), (4, 1, 1))


def _mapper(names=('a', 'b')):
    lm = LabelMap(name='t', vocabulary='t', class_names=list(names),
                  mapping={10 + k: k for k in range(len(names))}, ignored=(0,))
    return TruthMapper(lm)


def _outputs(frame, labels, instances=None, **kw):
    n = frame.num_points
    instances = np.zeros(n) if instances is None else instances
    return Outputs(stamp_ns=0, frame_id=frame.frame_id, points=frame.points, intensity=None,
                   labels=np.asarray(labels, np.uint16), scores=np.full(n, 0.5, np.float32),
                   instances=np.asarray(instances, np.uint32),
                   class_names=['a', 'b'], timings_ms={'total': 10.0}, **kw)


def test_student_occupancy_against_hand_counts():
    frame = Frame(0, 'velodyne', np.array([[2.5, 0, 0]], np.float32), labels=np.array([11]))
    occupancy = np.array([0.9, 0.1, 0.8, 0.9], np.float32).reshape(4, 1, 1)
    outputs = _outputs(frame, [1], occupancy_3d=occupancy)
    scorer = Scorer(_mapper(), EvalOptions(metrics=('occupancy',)), occupancy_grid=None, student_grid=GRID)
    score = scorer.new_score()
    scorer.update(score, frame, outputs)
    r = score.occupancy.compute()
    # ground truth: free, free, class b, never observed; prediction: occupied, free, occupied (b), occupied
    assert (r.iou, r.precision, r.recall, r.observed_voxels) == (0.5, 0.5, 1.0, 3)
    # (classes + empty): voxel 0 predicted occupied with no label = a miss of "empty"; b and empty correct
    np.testing.assert_allclose(r.semantic.iou, [np.nan, 1.0, 0.5])
    assert r.miou == pytest.approx(0.75)
    assert score.counts['occupancy_frames_student'] == 1


def test_predicted_voxels_from_outputs_voxels():
    frame = Frame(0, 'velodyne', np.zeros((1, 3), np.float32), labels=np.array([10]))
    vox = SemanticVoxels(centers=np.array([[0.5, 0, 0], [3.5, 0, 0], [9.5, 0, 0]], np.float32),
                         labels=np.array([1, U, 0]), voxel_size=np.ones(3))
    occ, lab = predicted_voxels(_outputs(frame, [0], voxels=vox), GRID)
    np.testing.assert_array_equal(occ, [True, False, False, True])          # the centre outside is dropped
    np.testing.assert_array_equal(lab, [1, U, U, U])
    points = np.array([[1.2, 0, 0], [1.7, 0, 0], [3.1, 0, 0]], np.float32)
    occ, lab = predicted_voxels(_outputs(Frame(0, 'v', points), [1, 1, U]), GRID)
    np.testing.assert_array_equal(occ, [False, True, False, True])          # geometry: voxels holding points
    np.testing.assert_array_equal(lab, [U, 1, U, U])


def test_segment_scores():
    masks = np.array([[1, 1, 0, 0], [0, 0, 1, 0]], bool)
    np.testing.assert_allclose(segment_scores(masks, None, 'size'), [0.5, 0.25])
    np.testing.assert_allclose(segment_scores(masks, None, 'uniform'), [1, 1])
    np.testing.assert_allclose(segment_scores(masks, np.array([0.2, 0.4, 0.9, 0]), 'label_score'), [0.3, 0.9])


def _instance_frame():
    labels = np.array([10] * 4 + [11] * 4 + [0] * 2)
    inst = np.array([1] * 4 + [2] * 4 + [0] * 2)
    return Frame(0, 'velodyne', np.zeros((10, 3), np.float32), labels=labels, instances=inst)


def test_instances_segments_and_masks_file():
    frame = _instance_frame()
    gt_masks = np.stack([frame.instances == 1, frame.instances == 2])
    options = EvalOptions(metrics=('instances',), min_region_size=1)
    # segments: the first instance exactly, the second split in two halves
    segments = np.array([1] * 4 + [2, 2, 3, 3] + [0, 0])
    scorer = Scorer(_mapper(), options, masks=(gt_masks, np.array([0.9, 0.8])))
    score = scorer.new_score()
    scorer.update(score, frame, _outputs(frame, [U] * 10, segments))
    seg = score.instances.compute()
    assert (seg.num_gt, seg.num_pred) == (2, 3)
    # ranked by size: the exact mask (score 0.4) is a TP at every threshold; each half (0.2) has IoU 0.5
    # with the second instance: not > 0.5, so both are FPs at 0.5 and above -> PR points (r, p) = (0.5, 1/3),
    # (0.5, 1), (0, 1): AP = 0.5. At 0.25 the first half matches (TP), the second is a duplicate (FP):
    # (1, 2/3), (0.5, 1), (0, 1): AP = 0.5 (2/3 + 1) / 2 + 0.5 = 11/12.
    assert (seg.ap, seg.ap50) == (pytest.approx(0.5), pytest.approx(0.5))
    assert seg.ap25 == pytest.approx(11 / 12)
    perfect = score.instances_masks.compute()
    assert (perfect.ap, perfect.ap50, perfect.ap25) == (1.0, 1.0, 1.0)


def test_state_round_trip_and_merge_equal_one_pass():
    frames = [Frame(0, 'velodyne', np.zeros((4, 3), np.float32), labels=np.array([10, 11, 11, 0]),
                    instances=np.array([1, 2, 2, 0])),
              Frame(1, 'velodyne', np.zeros((3, 3), np.float32), labels=np.array([10, 10, 7]),
                    instances=np.array([1, 1, 0]))]
    preds = [[0, 0, U, 1], [0, 1, 1]]
    options = EvalOptions(metrics=('semantic', 'instances'), min_region_size=1)
    scorer = Scorer(_mapper(), options)
    one, parts = scorer.new_score(), []
    for f, p in zip(frames, preds):
        out = _outputs(f, p, np.arange(1, f.num_points + 1))
        scorer.update(one, f, out)
        part = scorer.new_score()
        scorer.update(part, f, out)
        parts.append(BagScore.from_state(json.loads(json.dumps(part.state_dict()))))
    merged = parts[0].merge(parts[1])
    ctx = SummaryContext(['a', 'b'])
    a, b = summarize(one, ctx), summarize(merged, ctx)
    h = headline(a, ctx)
    assert a.pop('speed')['frames'] == b.pop('speed')['frames'] == 2
    assert a == b
    np.testing.assert_array_equal(one.semantic["all"].confusion, [[2, 1, 0], [1, 0, 1]])
    assert one.unlisted_raw_ids == {7: 1}
    assert a['points']['evaluated_all'] == 5 and a['points']['fraction_evaluated_all'] == pytest.approx(5 / 7)
    assert a['semantic']['front_view']['points'] == 0 and a['semantic']['front_view']['miou'] is None
    assert h["miou"] == pytest.approx((2 / 4 + 0) / 2) and h['miou_front_view'] is None
    with pytest.raises(ValueError, match='version'):
        BagScore.from_state({'version': 0})


def test_seen_unseen_reproduces_affinity3d_table1_row():
    """A confusion whose seen classes all have IoU 61.41 % and unseen 66.06 % gives hIoU 63.65 (T1)."""
    from perception_nodes.vocabulary import load_vocabulary
    names = load_vocabulary('semantickitti').names
    unseen = ('motorcycle', 'truck', 'bicyclist', 'traffic-sign')
    score = BagScore.empty(names, EvalOptions(), False, False, False, False)
    conf = np.zeros((19, 20), np.int64)
    for k, name in enumerate(names):
        tp = 6606 if name in unseen else 6141
        conf[k, k], conf[k, 19] = tp, 10000 - tp          # misses predicted unknown: IoU = tp / 10000
    score.semantic['all'].update_confusion(conf)
    su = summarize(score, SummaryContext(names, unseen))['semantic']['all']['seen_unseen']
    assert round(100 * su['miou_seen'], 2) == 61.41 and round(100 * su['miou_unseen'], 2) == 66.06
    assert round(100 * su['hiou'], 2) == 63.65


def test_head_common_tail_splits(tmp_path):
    from perception_nodes.evaluation.summary import resolve_splits
    from perception_nodes.metrics import load_label_map
    s200 = load_label_map('scannet200')
    splits, source = resolve_splits(s200, None, None)
    assert [len(splits[k]) for k in ('head', 'common', 'tail')] == [66, 68, 66] and 'official' in source
    lm = LabelMap(name='t', vocabulary='t', class_names=['a', 'b', 'c'], mapping={0: 0, 1: 1, 2: 2})
    assert resolve_splits(lm, None, None) == ({}, '')
    counts = tmp_path / 'counts.yaml'
    counts.write_text('a: 5\nb: 50\nc: 1\n')
    assert resolve_splits(lm, str(counts), None)[0] == {'head': [1], 'common': [0], 'tail': [2]}
    score = BagScore.empty(['a', 'b', 'c'], EvalOptions(), False, False, False, False)
    score.semantic['all'].update_confusion(np.array([[1, 0, 0, 0], [0, 9, 0, 1], [0, 0, 0, 3]]))
    splits, source = resolve_splits(lm, 'gt', score)
    assert splits == {'head': [1], 'common': [2], 'tail': [0]} and 'evaluated ground truth' in source
    out = summarize(score, SummaryContext(['a', 'b', 'c'], splits=splits))['semantic']['all']['splits']
    assert (out['head']['miou'], out['common']['miou'], out['tail']['miou']) == (0.9, 0.0, 1.0)
    counts.write_text('a: 5\n')
    with pytest.raises(ValueError, match=r"no count for classes \['b', 'c'\]"):
        resolve_splits(lm, str(counts), None)
