"""Affinity3D Eq. 15-16: KL on visible points only; direction and detach choices."""
from __future__ import annotations

import math

import pytest
import torch

from training.losses.knowledge_transfer import kl_divergence, visible_kl, visible_kl_layers

torch.set_num_threads(1)


def test_identical_distributions_give_zero():
    z = torch.randn(6, 5)
    assert float(visible_kl(z, z.clone(), torch.ones(6, dtype=torch.bool))) == pytest.approx(0.0, abs=1e-6)


def test_hand_value_and_direction():
    fused = torch.tensor([[0.0, 0.0]])                 # (1/2, 1/2)
    s3d = torch.tensor([[math.log(3.0), 0.0]])         # (3/4, 1/4)
    vis = torch.tensor([True])
    # Default: KL(Y_2D3D || Y_3D) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3).
    assert float(visible_kl(s3d, fused, vis)) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-6)
    reverse = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(visible_kl(s3d, fused, vis, direction='3d_to_fused')) == pytest.approx(reverse, rel=1e-6)


def test_invisible_points_contribute_exactly_zero_loss_and_gradient():
    g = torch.Generator().manual_seed(0)
    s3d = torch.randn(6, 4, generator=g)
    fused = torch.randn(6, 4, generator=g)
    vis = torch.tensor([True, False, True, False, True, False])
    s3d[~vis] = float('nan')                           # garbage where not visible
    fused[~vis] = float('inf')
    s3d.requires_grad_(True)
    fused.requires_grad_(True)
    loss = visible_kl(s3d, fused, vis, detach_target=False)
    loss.backward()
    expected = kl_divergence(fused.detach()[vis], s3d.detach()[vis]).mean()
    torch.testing.assert_close(loss.detach(), expected)
    assert torch.equal(s3d.grad[~vis], torch.zeros(3, 4))
    assert torch.equal(fused.grad[~vis], torch.zeros(3, 4))
    assert bool(s3d.grad[vis].abs().sum() > 0)


def test_detached_target_receives_no_gradient():
    s3d = torch.randn(4, 3, requires_grad=True)
    fused = torch.randn(4, 3, requires_grad=True)
    visible_kl(s3d, fused, torch.ones(4, dtype=torch.bool)).backward()
    assert fused.grad is None and s3d.grad is not None


def test_no_visible_point_is_zero_and_backward_is_a_noop():
    s3d = torch.randn(3, 2, requires_grad=True)
    fused = torch.randn(3, 2, requires_grad=True)
    loss = visible_kl(s3d, fused, torch.zeros(3, dtype=torch.bool))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(s3d.grad, torch.zeros(3, 2))


def test_layers_are_averaged_and_inputs_checked():
    a = [torch.randn(5, 3), torch.randn(5, 3)]
    b = [torch.randn(5, 3), torch.randn(5, 3)]
    vis = torch.tensor([1, 0, 1, 1, 0], dtype=torch.bool)
    expected = (visible_kl(a[0], b[0], vis) + visible_kl(a[1], b[1], vis)) / 2
    torch.testing.assert_close(visible_kl_layers(a, b, vis), expected)
    with pytest.raises(ValueError, match='direction'):
        visible_kl(a[0], b[0], vis, direction='sideways')
    with pytest.raises(ValueError, match='shape'):
        visible_kl(a[0], b[0], vis[:3])


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    s3d = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    fused = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    vis = torch.tensor([True, True, False, True])
    assert torch.autograd.gradcheck(lambda a, b: visible_kl(a, b, vis, detach_target=False), (s3d, fused))
