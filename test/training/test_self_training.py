"""UnScene3D Mask Addition: M^0 fixed, confident novel predictions added by the IoU test."""
from __future__ import annotations

import pytest
import torch

from training.self_training import MaskAdditionConfig, mask_addition


def _masks(n: int, *ranges: tuple[int, int]) -> torch.Tensor:
    out = torch.zeros(len(ranges), n, dtype=torch.bool)
    for i, (a, b) in enumerate(ranges):
        out[i, a:b] = True
    return out


def _logits(masks: torch.Tensor) -> torch.Tensor:
    return masks.float() * 20 - 10


def test_keeps_originals_and_adds_exactly_the_confident_novel_predictions():
    n = 100
    original = _masks(n, (0, 20), (20, 40))
    preds = _masks(n, (0, 19),      # duplicate of original 0 (IoU 0.95) -> rejected
                   (50, 70),        # novel, confident -> added
                   (52, 72),        # near-duplicate of the previous (IoU 18/22), less confident -> rejected
                   (80, 95),        # novel but not confident -> rejected
                   (96, 99),        # novel, confident, too small (3 < 8) -> rejected
                   (30, 50))        # IoU 10/30 = 1/3 with original 1 -> not < 0.25 -> rejected
    scores = torch.tensor([5.0, 4.0, 3.0, -1.0, 6.0, 2.0])
    res = mask_addition(original, _logits(preds), scores)
    assert res.num_original == 2 and res.num_previous == 0
    assert torch.equal(res.masks[:2], original)
    assert res.added.tolist() == [1]
    assert torch.equal(res.masks[2], preds[1]) and res.masks.shape == (3, n)
    assert res.added_scores.tolist() == pytest.approx([torch.sigmoid(torch.tensor(4.0)).item()])
    # A looser novelty threshold (1/3 < 0.4) accepts the (30, 50) prediction as well.
    loose = mask_addition(original, _logits(preds), scores, MaskAdditionConfig(max_iou=0.4))
    assert loose.added.tolist() == [1, 5]


def test_top_k_and_previous_additions():
    n = 60
    original = _masks(n, (0, 10))
    preds = _masks(n, (10, 20), (20, 30), (30, 40))
    scores = torch.tensor([1.0, 3.0, 2.0])
    res = mask_addition(original, _logits(preds), scores, MaskAdditionConfig(top_k=2))
    assert res.added.tolist() == [1, 2]                     # the two most confident
    previous = _masks(n, (20, 30))
    res2 = mask_addition(original, _logits(preds), scores, previous=previous)
    assert res2.num_previous == 1 and res2.added.tolist() == [2, 0]   # (20, 30) already present
    assert torch.equal(res2.masks[:2], torch.cat([original, previous]))


def test_shape_errors_and_empty_original():
    with pytest.raises(ValueError, match='do not fit'):
        mask_addition(torch.zeros(1, 5, dtype=torch.bool), torch.zeros(2, 4), torch.zeros(2))
    empty = torch.zeros(0, 30, dtype=torch.bool)
    res = mask_addition(empty, _logits(_masks(30, (0, 10))), torch.tensor([1.0]))
    assert res.added.tolist() == [0] and res.masks.shape == (1, 30)
