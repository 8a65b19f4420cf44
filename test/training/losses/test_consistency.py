"""CNS prediction consistency (symmetric KL) and latent consistency (region-pooled InfoNCE / cosine)."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from training.losses.consistency import (latent_consistency, pool_by_region, prediction_consistency,
                                         region_ids_from_masks)

torch.set_num_threads(1)


def test_prediction_consistency_zero_for_equal_and_hand_value():
    z = torch.randn(5, 4)
    assert float(prediction_consistency(z, z.clone())) == pytest.approx(0.0, abs=1e-6)
    a = torch.tensor([[0.0, 0.0]])
    b = torch.tensor([[math.log(3.0), 0.0]])
    kl_ab = 0.5 * math.log(2 / 3) + 0.5 * math.log(2)
    kl_ba = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(prediction_consistency(a, b)) == pytest.approx(0.5 * (kl_ab + kl_ba), rel=1e-6)
    assert float(prediction_consistency(b, a)) == pytest.approx(float(prediction_consistency(a, b)))


def test_prediction_consistency_detach_and_masked_pairs():
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    prediction_consistency(a, b, detach='2d').backward()
    assert a.grad is None and b.grad is not None
    a2 = torch.randn(4, 3)
    a2[2] = float('nan')
    a2.requires_grad_(True)
    mask = torch.tensor([True, True, False, True])
    prediction_consistency(a2, b, pair_mask=mask).backward()
    assert torch.equal(a2.grad[2], torch.zeros(3)) and bool(torch.isfinite(a2.grad).all())


def test_pool_by_region_means():
    lat = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [7.0, 1.0]])
    reg = torch.tensor([0, 0, -1, 2])
    pooled, count = pool_by_region(lat, reg, 3)
    assert pooled.tolist() == [[2.0, 1.0], [0.0, 0.0], [7.0, 1.0]]
    assert count.tolist() == [2, 0, 1]


def test_latent_cosine_mode_hand_values():
    sam = torch.eye(3)
    lat2d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    reg2d = torch.tensor([0, 0, 1])              # pooled: e0 for region 0, e1 for region 1 -> distance 0
    lat3d = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    reg3d = torch.tensor([0, 2])                 # e1 vs e0 -> 1; e2 vs e2 -> 0; region 1 unused
    out = latent_consistency(lat2d, reg2d, lat3d, reg3d, sam, mode='cosine')
    assert float(out['2d']) == pytest.approx(0.0, abs=1e-6)
    assert float(out['3d']) == pytest.approx(0.5)
    assert float(out['total']) == pytest.approx(0.5)


def test_latent_infonce_equals_the_cross_entropy_over_regions():
    g = torch.Generator().manual_seed(0)
    sam = torch.randn(3, 4, generator=g)
    lat3d = torch.randn(6, 4, generator=g)
    reg3d = torch.tensor([0, 0, 1, 1, 2, 2])
    out = latent_consistency(lat3d[:0], reg3d[:0], lat3d, reg3d, sam, temperature=0.5)
    pooled = torch.stack([lat3d[0:2].mean(0), lat3d[2:4].mean(0), lat3d[4:6].mean(0)])
    logits = F.normalize(pooled, dim=1) @ F.normalize(sam, dim=1).T / 0.5
    t = torch.arange(3)
    expected = 0.5 * (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t))
    torch.testing.assert_close(out['3d'], expected)
    assert float(out['2d']) == 0.0
    aligned = latent_consistency(lat3d[:0], reg3d[:0], torch.eye(3) * 5, torch.arange(3), torch.eye(3))
    # Matched one-hot latents at τ = 0.07: each row is log(1 + 2 e^{-1/τ}).
    assert float(aligned['3d']) == pytest.approx(math.log1p(2 * math.exp(-1 / 0.07)), rel=0.05)


def test_latent_gradcheck_and_region_ids():
    g = torch.Generator().manual_seed(1)
    lat = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    sam = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    reg = torch.tensor([0, 1, 1, 0, -1])
    assert torch.autograd.gradcheck(
        lambda a, s: latent_consistency(a, reg, a, reg, s)['total'], (lat, sam))
    masks = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]], dtype=torch.bool)
    assert region_ids_from_masks(masks).tolist() == [0, 1, 1, -1]
    with pytest.raises(ValueError, match='mode'):
        latent_consistency(lat, reg, lat, reg, sam, mode='l2')


def test_prediction_consistency_gradcheck():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, False, True, True])
    assert torch.autograd.gradcheck(lambda x, y: prediction_consistency(x, y, mask), (a, b))
