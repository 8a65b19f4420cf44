"""PL' assembly (Affinity3D Step 5), the seen/unseen split and Eq. 4 instance probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception_nodes.frame import CameraModel, CameraView
from training.pseudo.assembly import (IGNORE, SEMANTICKITTI_UNSEEN, SOURCE_GROUND_TRUTH, SOURCE_INSTANCE,
                                      AssemblyConfig, SeenUnseenSplit, assemble_point_labels)
from training.pseudo.instance_labels import instance_crops, instance_probabilities


def test_semantickitti_default_split_names_exist():
    from perception_nodes.vocabulary import load_vocabulary
    vocab = load_vocabulary('semantickitti')
    names = [c.name for c in vocab.classes]
    split = SeenUnseenSplit(tuple(names), SEMANTICKITTI_UNSEEN)
    assert split.unseen_mask.sum() == 4 and split.seen_mask.sum() == len(names) - 4
    unseen = [names[i] for i in np.flatnonzero(split.unseen_mask)]
    assert unseen == ['motorcycle', 'truck', 'bicyclist', 'traffic-sign']
    with pytest.raises(ValueError, match='not in the vocabulary'):
        SeenUnseenSplit(('car',), ('truck',))
    assert SeenUnseenSplit.annotation_free(('a', 'b')).unseen_mask.all()


def frame_case():
    # 8 points, classes: 0 seen, 1 and 2 unseen. Superpoints: {2, 3} -> label 2, {4, 5} -> label 1,
    # superpoint 2 (point 6) not kept (-1). Point 7 in no superpoint.
    seg = np.array([-1, -1, 0, 0, 1, 1, 2, -1])
    seg_labels = np.array([2, 1, -1])
    gt = np.array([0, 0, 2, 1, 1, 1, 2, 1])
    visible = np.array([True, False, True, False, True, True, True, True])
    return seg, seg_labels, gt, visible


def test_assembly_known_answer_both_ambiguity_choices():
    seg, seg_labels, gt, visible = frame_case()
    seen = np.array([True, False, False])
    out = assemble_point_labels(seg, seg_labels, visible, gt, seen)     # default: invisible GT ignored too
    np.testing.assert_array_equal(out.labels, [0, IGNORE, 2, IGNORE, 1, 1, IGNORE, IGNORE])
    np.testing.assert_array_equal(out.source, [SOURCE_GROUND_TRUTH, 0, SOURCE_INSTANCE, 0, SOURCE_INSTANCE,
                                               SOURCE_INSTANCE, 0, 0])
    np.testing.assert_array_equal(out.visible, visible)
    keep_gt = assemble_point_labels(seg, seg_labels, visible, gt, seen,
                                    AssemblyConfig(ignore_invisible_ground_truth=False))
    np.testing.assert_array_equal(keep_gt.labels, [0, 0, 2, IGNORE, 1, 1, IGNORE, IGNORE])
    # the flag only changes invisible seen-class points
    diff = keep_gt.labels != out.labels
    assert (diff == (~visible & seen[gt])).all()
    no_vis = assemble_point_labels(seg, seg_labels, visible, gt, seen, AssemblyConfig(ignore_invisible=False))
    np.testing.assert_array_equal(no_vis.labels, [0, 0, 2, 2, 1, 1, IGNORE, IGNORE])
    af = assemble_point_labels(seg, seg_labels, visible)                 # AF: no ground truth
    np.testing.assert_array_equal(af.labels, [IGNORE, IGNORE, 2, IGNORE, 1, 1, IGNORE, IGNORE])
    assert af.ignored_fraction == pytest.approx(5 / 8)
    dense = assemble_point_labels(seg, seg_labels, visible, dense_labels=np.array([1, 1, 1, 1, 2, 2, 2, 2]))
    np.testing.assert_array_equal(dense.labels, [1, IGNORE, 2, IGNORE, 1, 1, 2, 2])   # instances win
    with pytest.raises(ValueError, match='seen-class mask'):
        assemble_point_labels(seg, seg_labels, visible, gt)


def test_eq4_probabilities_over_candidates():
    emb = torch.eye(4, 8)
    feats = F.normalize(torch.tensor([[1.0, 0.2, 0, 0, 0, 0, 0, 0], [0, 0, 0.3, 1.0, 0, 0, 0, 0]]), dim=1)
    probs = instance_probabilities(feats, emb)
    np.testing.assert_allclose(probs.sum(1).numpy(), 1.0, atol=1e-6)
    assert probs.argmax(1).tolist() == [0, 3]
    cos = feats @ emb.T
    np.testing.assert_allclose(probs.numpy(), torch.softmax(100 * cos, 1).numpy(), rtol=1e-5, atol=1e-7)
    unseen = np.array([False, True, True, False])                      # GZS: EMB^U only
    pu = instance_probabilities(feats, emb, unseen)
    assert (pu[:, [0, 3]] == 0).all() and pu.argmax(1).tolist() == [1, 2]
    np.testing.assert_allclose(pu[:, 1:3].numpy(), torch.softmax(100 * cos[:, 1:3], 1).numpy(), rtol=1e-5)
    # a smaller logit scale gives flatter distributions (the direction of the stated choice)
    assert float(instance_probabilities(feats, emb, logit_scale=10).max()) < float(probs.max())
    with pytest.raises(ValueError, match='candidates'):
        instance_probabilities(feats, emb, np.zeros(4, bool))


class FakeEncoder:
    """Encodes a box as one-hot of its camera index plus its width, to check what reaches the encoder."""

    embed_dim = 4

    def __init__(self) -> None:
        self.calls: list[tuple[str, np.ndarray]] = []

    def encode_crops(self, view: CameraView, boxes: np.ndarray) -> torch.Tensor:
        self.calls.append((view.name, boxes.copy()))
        out = torch.zeros(len(boxes), 4)
        out[:, int(view.name[-1])] = 1.0
        return out


def test_instance_crops_boxes_and_multi_camera_mean():
    views = [CameraView(f'cam{i}', np.zeros((100, 200, 3), np.uint8),
                        CameraModel(f'c{i}', 200, 100, np.eye(3)), np.eye(4)) for i in range(2)]
    # superpoint 0: 3 points close together (box grows to 30x30) in both cameras; superpoint 1: one point
    # in camera 0 (invalid there: < 2 points) and 2 points far apart in camera 1; superpoint 2 in no image
    uv = torch.tensor([[[50.0, 50], [52, 51], [51, 55], [10, 10], [0, 0], [0, 0], [5, 5]],
                       [[100.0, 60], [101, 60], [100, 61], [20, 20], [20, 20], [150, 80], [5, 5]]])
    inside = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 1, 1, 0]], dtype=torch.bool)
    seg = np.array([0, 0, 0, 1, 1, 1, 2])
    enc = FakeEncoder()
    crops = instance_crops(views, uv, inside, seg, enc)
    np.testing.assert_array_equal(crops.valid, [True, True, False])
    box0 = crops.boxes[0][0]
    assert box0[2] - box0[0] == pytest.approx(30) and box0[3] - box0[1] == pytest.approx(30)
    assert not crops.box_valid[0][1] and crops.box_valid[1][1]
    np.testing.assert_allclose(crops.boxes[1][1], [19.5, 19.5, 150.5, 80.5])   # tight box: already > 30 px
    np.testing.assert_allclose(crops.features[0].numpy(), [0.5 ** 0.5, 0.5 ** 0.5, 0, 0], atol=1e-6)
    np.testing.assert_allclose(crops.features[1].numpy(), [0, 1, 0, 0], atol=1e-6)
    assert (crops.features[2] == 0).all()
    assert [c[0] for c in enc.calls] == ['cam0', 'cam1']
    assert len(enc.calls[0][1]) == 1 and len(enc.calls[1][1]) == 2


def test_clip_crop_encoder_matches_encode_crops_with_a_tiny_random_clip():
    from perception_nodes.teacher.clip_models import ClipSpec, load_clip
    from perception_nodes.teacher.instances import encode_crops
    from training.pseudo.instance_labels import ClipCropEncoder, CropEncoder
    torch.set_num_threads(1)
    clip = load_clip(ClipSpec('ovp-tiny', 'none', seed=7))
    enc = ClipCropEncoder(clip)
    assert isinstance(enc, CropEncoder) and enc.embed_dim == clip.embed_dim
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    view = CameraView('cam0', image, CameraModel('c', 90, 60, np.eye(3)), np.eye(4))
    boxes = np.array([[0, 0, 30, 30], [40.5, 10.5, 89.5, 59.5]])
    got = enc.encode_crops(view, boxes)
    torch.testing.assert_close(got, encode_crops(clip, image, boxes).float().cpu())
    np.testing.assert_allclose(got.norm(dim=1).numpy(), 1.0, atol=1e-5)
