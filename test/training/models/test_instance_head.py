"""UnScene3D query-based mask decoder: shapes, invalid points, padding invariance, trainability."""
from __future__ import annotations

import torch

from training.losses.instance import instance_losses
from training.models.instance_head import INVALID_LOGIT, InstanceHeadConfig, QueryMaskDecoder

torch.set_num_threads(1)


def test_shapes_and_invalid_points():
    torch.manual_seed(0)
    head = QueryMaskDecoder(InstanceHeadConfig(in_dim=8, num_queries=5)).eval()
    feats = torch.randn(2, 11, 8)
    valid = torch.ones(2, 11, dtype=torch.bool)
    valid[1, 7:] = False
    out = head(feats, valid)
    assert out.mask_logits.shape == (2, 5, 11) and out.objectness_logits.shape == (2, 5)
    assert bool((out.mask_logits[1, :, 7:] == INVALID_LOGIT).all())
    single = head(feats[0])
    assert single.mask_logits.shape == (5, 11) and single.objectness_logits.shape == (5,)


def test_padding_does_not_change_the_valid_predictions():
    torch.manual_seed(1)
    head = QueryMaskDecoder(InstanceHeadConfig(in_dim=6, num_queries=4)).eval()
    feats = torch.randn(9, 6)
    padded = torch.cat([feats, torch.randn(5, 6) * 100])
    valid = torch.cat([torch.ones(9, dtype=torch.bool), torch.zeros(5, dtype=torch.bool)])
    a, b = head(feats), head(padded, valid)
    torch.testing.assert_close(b.mask_logits[:, :9], a.mask_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.objectness_logits, a.objectness_logits, atol=1e-5, rtol=1e-5)
    empty = head(feats, torch.zeros(9, dtype=torch.bool))
    assert bool(torch.isfinite(empty.objectness_logits).all())


def test_a_few_steps_fit_two_pseudo_masks():
    torch.manual_seed(2)
    n = 40
    pos = torch.linspace(-1, 1, n)[:, None]
    feats = torch.cat([pos, pos ** 2, torch.sin(3 * pos), torch.ones(n, 1)], dim=1)
    targets = torch.stack([pos[:, 0] < -0.3, pos[:, 0] > 0.4])
    head = QueryMaskDecoder(InstanceHeadConfig(in_dim=4, num_queries=4, hidden=32))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        out = head(feats)
        loss = instance_losses(out.mask_logits, out.objectness_logits, targets).terms['total']
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
