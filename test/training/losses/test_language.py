"""ScanNet200 Eq. 1-3 text-anchored contrastive (cosine distance) and Eq. 4-5 class-balanced focal loss."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from training.class_stats import class_balanced_alpha
from training.losses.language import (ContrastiveConfig, class_balanced_focal, sample_negatives,
                                      text_anchored_contrastive)

torch.set_num_threads(1)


def test_contrastive_on_hand_picked_vectors():
    anchors = torch.eye(3) * 2.0                       # scale must not matter (cosines)
    s = 1 / math.sqrt(2)
    features = torch.tensor([[1.0, 1.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 0, -1])
    negatives = torch.tensor([[1, 1, 1], [2, 2, 2], [0, 0, 0]])
    out = text_anchored_contrastive(features, labels, anchors, negatives=negatives)
    # point 0: d_pos = 1 - s; mean neg cos = s -> hinge 0.6 - (1 - s). point 1: d_pos = 0, neg cos 0 -> 0.
    assert float(out['pos']) == pytest.approx((1 - s) / 2, rel=1e-6)
    assert float(out['neg']) == pytest.approx((0.6 - (1 - s)) / 2, rel=1e-6)
    assert float(out['total']) == pytest.approx((1 - s) / 2 + (0.6 - (1 - s)) / 2, rel=1e-6)
    # t_pos = 0.5 clips the positive hinge: max(0, 1 - s - 0.5) = 0 for point 0.
    clipped = text_anchored_contrastive(features, labels, anchors, ContrastiveConfig(t_pos=0.5),
                                        negatives=negatives)
    assert float(clipped['pos']) == pytest.approx(0.0, abs=1e-7)


def test_negatives_are_other_classes_uniformly_and_seeded():
    labels = torch.randint(0, 5, (4000,), generator=torch.Generator().manual_seed(0))
    neg = sample_negatives(labels, 5, 3, torch.Generator().manual_seed(1))
    assert neg.shape == (4000, 3)
    assert not bool((neg == labels[:, None]).any())
    assert bool(((neg >= 0) & (neg < 5)).all())
    for c in range(5):
        rows = labels == c
        hist = torch.bincount(neg[rows].reshape(-1), minlength=5).float()
        others = hist[torch.arange(5) != c]
        assert float(hist[c]) == 0 and float(others.min() / others.max()) > 0.8
    again = sample_negatives(labels, 5, 3, torch.Generator().manual_seed(1))
    assert torch.equal(neg, again)


def test_contrastive_gradcheck_and_empty():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    anchors = torch.randn(3, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1])
    neg = torch.tensor([[1, 2, 1], [0, 2, 0], [1, 0, 0], [2, 2, 0]])
    assert torch.autograd.gradcheck(
        lambda x: text_anchored_contrastive(x, labels, anchors, negatives=neg)['total'], (f,))
    empty = text_anchored_contrastive(f, torch.full((4,), -1), anchors)
    assert float(empty['total'].detach()) == 0.0


def test_focal_equals_ce_at_gamma_zero_alpha_one():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(9, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0, -1, 2, 2, 1])
    torch.testing.assert_close(class_balanced_focal(logits, labels, None, gamma=0.0),
                               F.cross_entropy(logits, labels, ignore_index=-1))
    torch.testing.assert_close(class_balanced_focal(logits, labels, torch.ones(4), gamma=0.0),
                               F.cross_entropy(logits, labels, ignore_index=-1))


@pytest.mark.parametrize('direction', ['paper', 'inverse'])
def test_focal_hand_value_with_alpha_in_both_directions(direction):
    alpha = class_balanced_alpha([100, 10], direction=direction)
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])     # p_t = 1/2 for both points
    labels = torch.tensor([0, 1])
    # -α_y (1 - 1/2)^2 log(1/2) = α_y ln 2 / 4, averaged over the two points.
    a0, a1 = (2 / 3, 1 / 3) if direction == 'paper' else (1 / 3, 2 / 3)
    got = class_balanced_focal(logits, labels, alpha, gamma=2.0)
    assert float(got) == pytest.approx((a0 + a1) / 2 * math.log(2) / 4, rel=1e-6)
    only_rare = class_balanced_focal(logits[1:], labels[1:], alpha)
    assert float(only_rare) == pytest.approx(a1 * math.log(2) / 4, rel=1e-6)


def test_focal_downweights_easy_points_and_gradcheck():
    easy = torch.tensor([[4.0, 0.0]])
    label = torch.tensor([0])
    assert float(class_balanced_focal(easy, label)) < 0.01 * float(F.cross_entropy(easy, label))
    g = torch.Generator().manual_seed(4)
    z = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 1, -1])
    assert torch.autograd.gradcheck(lambda x: class_balanced_focal(x, labels, alpha), (z,))
    with pytest.raises(ValueError, match='alpha'):
        class_balanced_focal(z, labels, torch.ones(2))
