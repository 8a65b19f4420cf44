"""Cosine feature distillation of the student's point embeddings to the fused teacher features.

    L_cos = mean over masked points of (1 - cos(f_i, t_i))

This term is OUR ADDITION to the POP-3D recipe: POP-3D's Eq. 7 regresses the voxel language head only,
while the robot classifies per point with the point language head (``Student.point_embeddings``), which
would otherwise stay untrained. The cosine form is OpenScene's 3D distillation loss [EXT]; unlike Eq. 7's
MSE it does not shrink with the feature width (unit vectors of width C differ by O(1/sqrt(C)) per entry).
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from training.losses.common import check_mask, upcast, zero_like_graph


def cosine_distance(predicted: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of 1 - cos over the rows of (N, C) ``predicted`` / ``target`` inside ``mask``; target detached."""
    if predicted.shape != target.shape or predicted.ndim != 2:
        raise ValueError(f'cosine_distance: predicted {tuple(predicted.shape)} and target '
                         f'{tuple(target.shape)} must both be (N, C)')
    predicted, target = upcast(predicted, target)
    if mask is not None:
        keep = check_mask(mask, predicted.shape[0], 'mask').to(predicted.device)
        predicted, target = predicted[keep], target[keep]
    if predicted.shape[0] == 0:
        return zero_like_graph(predicted)
    cos = F.cosine_similarity(predicted, target.to(predicted.dtype).detach(), dim=1, eps=1e-6)
    return (1.0 - cos).mean()


class CosineDistanceLoss(nn.Module):
    """:func:`cosine_distance` as a loss term (``type: cosine_distance``)."""

    def forward(self, predicted: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return cosine_distance(predicted, target, mask)
