"""POP-3D losses: occupancy CE + Lovász on the dense grid (Eq. 4), feature MSE at camera points (Eq. 7).

    L_occ = L_CE(O_occ, T_occ) + L_Lov(O_occ, T_occ)                       (Eq. 4)
    L_ft  = ||T_ft - Õ_ft||_F^2 / (N · C_ft)   over points p_n ∈ P_cam       (Eq. 7)
    L     = L_occ + λ · L_ft,  λ = 1                                          (Eq. 8)

O_occ is the student's (X, Y, Z, 2) (free, occupied) logits (``StudentOutput.occupancy_logits``) and
T_occ the dense target of ``perception_nodes.geometry.voxels.dense_occupancy`` (every voxel without a
point is "empty", as the paper supervises densely). Õ_ft are predicted language features at the points;
:func:`gather_voxel_features` reads them from the voxel language features of the voxel holding each
point (our choice: nearest voxel; the paper queries its TPV planes at the points). Teacher features are
used as given (the paper does not say whether they are L2-normalised).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from perception_nodes.geometry.voxels import GridSpec
from training.losses.common import check_mask, upcast, zero_like_graph
from training.losses.lovasz import IGNORE_INDEX, lovasz_softmax

POP3D_LAMBDA = 1.0   # Eq. 8 [P]


def occupancy_loss(logits: Tensor, target: Tensor, ignore_index: int | None = IGNORE_INDEX,
                   lovasz_classes: str = 'present') -> dict[str, Tensor]:
    """Eq. 4 on (..., 2) logits vs a (...) target (bool occupied, or long 0 free / 1 occupied / ignore).

    Returns {'ce', 'lovasz', 'total'}; CE is the plain mean over supervised voxels.
    """
    if logits.shape[-1] != 2 or logits.shape[:-1] != target.shape:
        raise ValueError(f'occupancy_loss: logits {tuple(logits.shape)} must be target '
                         f'{tuple(target.shape)} + (2,)')
    labels = target.long().reshape(-1)
    flat, = upcast(logits.reshape(-1, 2))
    keep = labels != ignore_index if ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
    ce = F.cross_entropy(flat[keep], labels[keep]) if bool(keep.any()) else zero_like_graph(flat[keep])
    lov = lovasz_softmax(F.softmax(flat, dim=-1), labels, ignore_index, lovasz_classes)
    return {'ce': ce, 'lovasz': lov, 'total': ce + lov}


def feature_mse(predicted: Tensor, target: Tensor, camera_mask: Tensor | None = None) -> Tensor:
    """Eq. 7: Σ over camera points of ||t_n - o_n||^2 divided by N_cam · C; 0 with no camera point.

    Points outside ``camera_mask`` are removed by indexing (exactly zero loss and gradient).
    """
    if predicted.shape != target.shape or predicted.ndim != 2:
        raise ValueError(f'feature_mse: predicted {tuple(predicted.shape)} and target '
                         f'{tuple(target.shape)} must both be (N, C)')
    predicted, target = upcast(predicted, target)
    if camera_mask is not None:
        cam = check_mask(camera_mask, predicted.shape[0], 'camera_mask').to(predicted.device)
        predicted, target = predicted[cam], target[cam]
    if predicted.shape[0] == 0:
        return zero_like_graph(predicted)
    diff = target.to(predicted.dtype).detach() - predicted
    return (diff * diff).sum() / diff.numel()


def gather_voxel_features(voxel_features: Tensor, xyz: Tensor, grid: GridSpec) -> tuple[Tensor, Tensor]:
    """Õ_ft: (X, Y, Z, C) voxel features read at (N, 3) points -> ((N, C), (N,) bool inside the grid).

    Rows of points outside the grid are zeros and must be masked out (``inside``).
    """
    if voxel_features.ndim != 4 or tuple(voxel_features.shape[:3]) != tuple(grid.shape):
        raise ValueError(f'voxel features {tuple(voxel_features.shape)} do not match grid {grid.shape}')
    idx, inside = grid.voxel_indices(xyz)
    lin = grid.linear_index(idx.clamp(min=0) * inside[:, None])
    flat = voxel_features.reshape(-1, voxel_features.shape[-1])
    out = flat[lin.clamp(0, flat.shape[0] - 1)]
    return torch.where(inside[:, None], out, torch.zeros_like(out)), inside


@dataclass
class Pop3DLossConfig:
    """POP-3D Eq. 4/8 constants."""

    lam: float = POP3D_LAMBDA
    ignore_index: int = IGNORE_INDEX


def pop3d_loss(occupancy_logits: Tensor, occupancy_target: Tensor, predicted_features: Tensor,
               teacher_features: Tensor, camera_mask: Tensor | None,
               config: Pop3DLossConfig | None = None) -> dict[str, Tensor]:
    """Eq. 8: {'occ_ce', 'occ_lovasz', 'feature', 'total'} with total = L_occ + λ L_ft."""
    config = config or Pop3DLossConfig()
    occ = occupancy_loss(occupancy_logits, occupancy_target, config.ignore_index)
    ft = feature_mse(predicted_features, teacher_features, camera_mask)
    return {'occ_ce': occ['ce'], 'occ_lovasz': occ['lovasz'], 'feature': ft,
            'total': occ['total'] + config.lam * ft}
