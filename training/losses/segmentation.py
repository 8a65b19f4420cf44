"""Affinity3D segmentation loss (Eq. 19): L_3D = α · Lovász-softmax + weighted cross-entropy.

The class weights ``w`` come from :func:`training.class_stats.class_weights_from_counts` (the paper only
says "point frequency statistics"; we use 2DPASS's w_c = (max_j f_j / f_c) ** (1/3), f_c = n_c / Σ n).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from training.losses.common import upcast, zero_like_graph
from training.losses.lovasz import IGNORE_INDEX, lovasz_softmax

AFFINITY3D_ALPHA = 2.0          # Eq. 19 [P]


def weighted_cross_entropy(logits: Tensor, labels: Tensor, weights: Tensor | None = None,
                           ignore_index: int | None = IGNORE_INDEX) -> Tensor:
    """Cross-entropy of (N, C) logits, torch's weighted mean Σ w_y CE / Σ w_y; 0 when nothing is labelled."""
    logits, = upcast(logits)
    labels = labels.long()
    keep = labels != ignore_index if ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
    if not bool(keep.any()):
        return zero_like_graph(logits[keep])
    if weights is not None:
        weights = weights.to(device=logits.device, dtype=logits.dtype)
        if weights.shape != (logits.shape[-1],):
            raise ValueError(f'weighted_cross_entropy: {weights.numel()} class weights for '
                             f'{logits.shape[-1]} classes')
    return F.cross_entropy(logits[keep], labels[keep], weight=weights)


@dataclass
class SegmentationLossConfig:
    """Affinity3D Eq. 19 constants."""

    alpha: float = AFFINITY3D_ALPHA
    ignore_index: int = IGNORE_INDEX
    lovasz_classes: str = 'present'   # Berman's default; the paper does not say


def affinity3d_segmentation_loss(logits: Tensor, labels: Tensor, class_weights: Tensor | None,
                                 config: SegmentationLossConfig | None = None) -> dict[str, Tensor]:
    """Eq. 19 on (N, C) logits of Y_3D = softmax(F_3D · EMB^C) (Eq. 18) against pseudo-labels PL' (N,).

    Returns {'lovasz', 'ce', 'total'} with total = α · lovasz + ce.
    """
    config = config or SegmentationLossConfig()
    lov = lovasz_softmax(F.softmax(logits, dim=-1), labels, config.ignore_index, config.lovasz_classes)
    ce = weighted_cross_entropy(logits, labels, class_weights, config.ignore_index)
    return {'lovasz': lov, 'ce': ce, 'total': config.alpha * lov + ce}
