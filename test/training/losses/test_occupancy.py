"""POP-3D Eq. 4, 7, 8: occupancy CE + Lovász on the dense grid, feature MSE at camera points."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from perception_nodes.geometry.voxels import GridSpec, dense_occupancy
from training.losses.lovasz import lovasz_softmax
from training.losses.occupancy import feature_mse, gather_voxel_features, occupancy_loss, pop3d_loss

torch.set_num_threads(1)
GRID = GridSpec(lower=(0.0, 0.0, 0.0), upper=(4.0, 2.0, 2.0), shape=(4, 2, 2))


def test_occupancy_loss_is_ce_plus_lovasz_over_every_voxel():
    pts = torch.tensor([[0.5, 0.5, 0.5], [3.5, 1.5, 1.5], [2.2, 0.1, 1.9]])
    target = dense_occupancy(pts, GRID)
    assert int(target.sum()) == 3
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 2, 2, 2, generator=g)
    out = occupancy_loss(logits, target)
    flat, lab = logits.reshape(-1, 2), target.reshape(-1).long()
    torch.testing.assert_close(out['ce'], F.cross_entropy(flat, lab))
    torch.testing.assert_close(out['lovasz'], lovasz_softmax(torch.softmax(flat, 1), lab))
    torch.testing.assert_close(out['total'], out['ce'] + out['lovasz'])


def test_confident_correct_occupancy_is_near_zero_and_ignore_is_respected():
    target = torch.zeros(4, 2, 2, dtype=torch.long)
    target[1, 0, 1] = 1
    logits = torch.where(F.one_hot(target, 2).bool(), 20.0, -20.0)
    assert float(occupancy_loss(logits, target)['total']) < 1e-6
    target[0, 0, 0] = -1
    wrong = logits.clone()
    wrong[0, 0, 0] = torch.tensor([-20.0, 20.0])
    assert float(occupancy_loss(wrong, target)['total']) < 1e-6
    with pytest.raises(ValueError, match='must be target'):
        occupancy_loss(torch.randn(4, 2, 2, 3), target)


def test_feature_mse_hand_value_and_masked_points_are_inert():
    pred = torch.zeros(3, 4, requires_grad=True)
    target = torch.tensor([[1.0, 1.0, 1.0, 1.0], [float('nan')] * 4, [2.0, 0.0, 0.0, 0.0]])
    cam = torch.tensor([True, False, True])
    loss = feature_mse(pred, target, cam)
    # (4 · 1 + 4) / (N_cam · C) = 8 / 8.
    assert float(loss.detach()) == pytest.approx(1.0)
    loss.backward()
    assert torch.equal(pred.grad[1], torch.zeros(4))
    empty = feature_mse(pred, target, torch.zeros(3, dtype=torch.bool))
    assert float(empty.detach()) == 0.0


def test_gather_voxel_features_reads_the_voxel_holding_each_point():
    vox = torch.arange(4 * 2 * 2, dtype=torch.float32).reshape(4, 2, 2, 1).repeat(1, 1, 1, 3)
    pts = torch.tensor([[0.5, 0.5, 0.5], [3.9, 1.9, 1.9], [2.5, 0.5, 1.5], [9.0, 0.0, 0.0],
                        [float('nan'), 0.0, 0.0]])
    feats, inside = gather_voxel_features(vox, pts, GRID)
    assert inside.tolist() == [True, True, True, False, False]
    # Row-major (x, y, z): index = (x * 2 + y) * 2 + z.
    assert feats[:, 0].tolist() == [0.0, 15.0, (2 * 2 + 0) * 2 + 1, 0.0, 0.0]
    with pytest.raises(ValueError, match='do not match grid'):
        gather_voxel_features(vox[:3], pts, GRID)


def test_pop3d_total_is_occ_plus_lambda_feature_and_gradcheck():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(4, 2, 2, generator=g) > 0.6
    pred = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 3, generator=g, dtype=torch.float64)
    cam = torch.tensor([True, True, False, True, False])
    out = pop3d_loss(logits, target, pred, teacher, cam)
    torch.testing.assert_close(out['total'], out['occ_ce'] + out['occ_lovasz'] + 1.0 * out['feature'])
    assert torch.autograd.gradcheck(lambda a, b: pop3d_loss(a, target, b, teacher, cam)['total'],
                                    (logits, pred))
