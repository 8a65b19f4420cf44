"""UnScene3D: Hungarian matching on Dice + BCE, mask / objectness losses, DropLoss."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from training.losses.instance import (InstanceLossConfig, hungarian_match, instance_losses, mask_iou,
                                      matching_cost, pairwise_bce_cost, pairwise_dice_cost)

torch.set_num_threads(1)


def _logits(masks: torch.Tensor, scale: float = 8.0) -> torch.Tensor:
    return (masks.float() * 2 - 1) * scale


def test_pairwise_costs_match_per_pair_losses():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, generator=g)
    t = (torch.rand(2, 7, generator=g) > 0.5).float()
    bce, dice = pairwise_bce_cost(x, t), pairwise_dice_cost(x, t)
    for k in range(3):
        for m in range(2):
            torch.testing.assert_close(bce[k, m], F.binary_cross_entropy_with_logits(x[k], t[m]))
            p = x[k].sigmoid()
            d = 1 - (2 * (p * t[m]).sum() + 1) / (p.sum() + t[m].sum() + 1)
            torch.testing.assert_close(dice[k, m], d)


def test_hungarian_recovers_the_obvious_assignment():
    g = torch.Generator().manual_seed(1)
    targets = torch.zeros(3, 30, dtype=torch.bool)
    targets[0, :10], targets[1, 10:20], targets[2, 20:] = True, True, True
    perm = torch.tensor([2, 0, 1, 2])                 # prediction k copies target perm[k] (k = 3 is worse)
    logits = _logits(targets[perm]) + 0.5 * torch.randn(4, 30, generator=g)
    logits[3] = -logits[3]                            # prediction 3 is the complement of target 2
    obj = torch.zeros(4)
    pred_idx, tgt_idx = hungarian_match(matching_cost(logits, obj, targets))
    assert dict(zip(pred_idx.tolist(), tgt_idx.tolist())) == {0: 2, 1: 0, 2: 1}


@pytest.mark.parametrize('k,m,seed', [(3, 3, 0), (4, 2, 1), (4, 3, 2), (2, 4, 3)])
def test_hungarian_matches_brute_force(k, m, seed):
    cost = torch.rand(k, m, generator=torch.Generator().manual_seed(seed))
    pred_idx, tgt_idx = hungarian_match(cost)
    assert len(pred_idx) == min(k, m) and len(set(pred_idx.tolist())) == min(k, m)
    got = float(cost[pred_idx, tgt_idx].sum())
    if k >= m:
        best = min(sum(float(cost[p[j], j]) for j in range(m)) for p in itertools.permutations(range(k), m))
    else:
        best = min(sum(float(cost[i, p[i]]) for i in range(k)) for p in itertools.permutations(range(m), k))
    assert got == pytest.approx(best)


def test_hungarian_refuses_non_finite_costs_and_handles_empty():
    with pytest.raises(ValueError, match='NaN'):
        hungarian_match(torch.tensor([[0.0, float('nan')]]))
    p, t = hungarian_match(torch.zeros(3, 0))
    assert p.numel() == 0 and t.numel() == 0


def _droploss_scene():
    n = 20
    target = torch.zeros(1, n, dtype=torch.bool)
    target[0, :8] = True
    preds = torch.zeros(4, n, dtype=torch.bool)
    preds[0, :8] = True            # the pseudo mask itself -> matched
    preds[1, 6:10] = True          # overlaps it: IoU = 2 / 10 = 0.2 -> unmatched, kept (no-object)
    preds[2, 12:18] = True         # disjoint: IoU 0 -> dropped
    # prediction 3 is empty: IoU 0 -> dropped
    return _logits(preds), target


def test_droploss_drops_exactly_the_unmatched_non_overlapping_predictions():
    logits, target = _droploss_scene()
    obj = torch.zeros(4, requires_grad=True)
    out = instance_losses(logits, obj, target)
    assert out.pred_idx.tolist() == [0] and out.target_idx.tolist() == [0]
    assert out.kept.tolist() == [True, True, False, False]
    out.terms['total'].backward()
    assert obj.grad[2] == 0 and obj.grad[3] == 0
    assert obj.grad[0] < 0 and obj.grad[1] > 0     # matched pushed up, overlapping unmatched pushed down
    # A stricter τ_drop (0.3 > 0.2) also drops prediction 1.
    strict = instance_losses(logits, torch.zeros(4), target, InstanceLossConfig(tau_drop=0.3))
    assert strict.kept.tolist() == [True, False, False, False]
    # Without DropLoss every unmatched prediction is pushed to "no object".
    obj2 = torch.zeros(4, requires_grad=True)
    plain = instance_losses(logits, obj2, target, InstanceLossConfig(drop_loss=False))
    plain.terms['total'].backward()
    assert plain.kept.all() and bool((obj2.grad[1:] > 0).all())


def test_objectness_loss_hand_value():
    logits, target = _droploss_scene()
    out = instance_losses(logits, torch.zeros(4), target)
    # Kept: matched (target 1, weight 1) and prediction 1 (target 0, weight 0.1); BCE(0, ·) = ln 2 each.
    assert float(out.terms['objectness']) == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-6)
    cfg = InstanceLossConfig()
    total = cfg.weight_bce * out.terms['mask_bce'] + cfg.weight_dice * out.terms['mask_dice'] \
        + cfg.weight_objectness * out.terms['objectness']
    torch.testing.assert_close(out.terms['total'], total)


def test_mask_losses_vanish_for_a_perfect_match_and_gradients_are_finite():
    target = torch.zeros(2, 12, dtype=torch.bool)
    target[0, :5], target[1, 5:9] = True, True
    logits = _logits(target, 30.0)
    out = instance_losses(logits, torch.tensor([30.0, 30.0]), target)
    assert float(out.terms['mask_bce']) < 1e-6
    assert float(out.terms['mask_dice']) < 0.2     # Dice's +1 smoothing keeps a small floor on 4-5 points
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 12, generator=g, dtype=torch.float64, requires_grad=True)
    o = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    cfg = InstanceLossConfig(drop_loss=False)
    assert torch.autograd.gradcheck(lambda a, b: instance_losses(a, b, target, cfg).terms['total'], (x, o))


def test_mask_iou():
    a = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert mask_iou(a, b).tolist() == [[1 / 3, 0.0], [0.0, 0.0]]


def test_no_pseudo_masks_drops_everything():
    out = instance_losses(torch.randn(3, 5), torch.randn(3), torch.zeros(0, 5, dtype=torch.bool))
    assert out.kept.tolist() == [False, False, False] and float(out.terms['total']) == 0.0
