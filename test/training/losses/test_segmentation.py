"""Affinity3D Eq. 19: weighted CE with the frequency weights, L_3D = α · Lovász + CE."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from training.class_stats import class_counts, class_weights_from_counts
from training.losses.lovasz import lovasz_softmax
from training.losses.segmentation import affinity3d_segmentation_loss, weighted_cross_entropy

torch.set_num_threads(1)


def test_weighted_ce_equals_torch_and_the_hand_formula():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, -1])
    counts = class_counts(labels, 3)
    assert counts.tolist() == [4, 2, 1]
    w = class_weights_from_counts(counts)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 3, generator=g)
    got = weighted_cross_entropy(logits, labels, w)
    torch.testing.assert_close(got, F.cross_entropy(logits, labels, weight=w, ignore_index=-1))
    num = den = 0.0
    for i in range(7):
        y = int(labels[i])
        num += float(w[y]) * -math.log(float(torch.softmax(logits[i], 0)[y]))
        den += float(w[y])
    assert float(got) == pytest.approx(num / den, rel=1e-5)


def test_weighted_ce_all_ignored_is_zero_and_weight_shape_checked():
    logits = torch.randn(3, 2, requires_grad=True)
    loss = weighted_cross_entropy(logits, torch.full((3,), -1))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros(3, 2))
    with pytest.raises(ValueError, match='class weights'):
        weighted_cross_entropy(torch.randn(3, 2), torch.tensor([0, 1, 1]), torch.ones(3))


def test_l3d_is_alpha_lovasz_plus_ce():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(10, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, -1, 2, 2, 0])
    w = class_weights_from_counts(class_counts(labels, 4))
    out = affinity3d_segmentation_loss(logits, labels, w)
    lov = lovasz_softmax(torch.softmax(logits, 1), labels)
    ce = F.cross_entropy(logits, labels, weight=w, ignore_index=-1)
    torch.testing.assert_close(out['lovasz'], lov)
    torch.testing.assert_close(out['ce'], ce)
    torch.testing.assert_close(out['total'], 2.0 * lov + ce)


def test_l3d_gradcheck():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1, -1])
    w = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: affinity3d_segmentation_loss(z, labels, w)['total'], (logits,))
