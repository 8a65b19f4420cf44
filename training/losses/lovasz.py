"""Lovász-softmax loss (Berman et al., CVPR 2018), as used by Affinity3D Eq. 19 and POP-3D Eq. 4.

For class c with ground-truth set F_c and per-element errors m_i(c) = |1[y_i = c] - p_i(c)|, the loss is
the Lovász extension of the Jaccard loss Δ_c(M) = |M| / |F_c ∪ M| evaluated at m(c):

    lovasz_c(m) = Σ_k m_(k) (Δ_c({(1)..(k)}) - Δ_c({(1)..(k-1)})),   m_(1) >= m_(2) >= ...

and the loss averages lovasz_c over the classes (``classes='present'``: only classes present in the
labels, Berman's default; ``'all'``: every class). For hard one-hot predictions it equals 1 - mIoU.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from training.losses.common import upcast

IGNORE_INDEX = -1   # the package's "no label" value (perception_nodes.geometry.occupancy.IGNORE)


def lovasz_grad(gt_sorted: Tensor) -> Tensor:
    """Gradient of the Jaccard-loss Lovász extension w.r.t. errors sorted in decreasing order.

    ``gt_sorted`` (P,) float 0/1: the foreground indicator in the errors' sorted order. Entry k is
    Δ({(1)..(k)}) - Δ({(1)..(k-1)}) with Δ(M) = |M| / |F ∪ M| (Berman et al. Alg. 1).
    """
    p = gt_sorted.numel()
    if p == 0:
        return gt_sorted
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if p > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def lovasz_softmax_flat(probs: Tensor, labels: Tensor, classes: str = 'present') -> Tensor:
    """Lovász-softmax of (P, C) class probabilities against (P,) labels in [0, C) (no ignored rows).

    All classes at once: one column-wise sort of the (P, C) errors, then :func:`lovasz_grad` per column.
    """
    if classes not in ('present', 'all'):
        raise ValueError(f"classes must be 'present' or 'all', got {classes!r}")
    if probs.numel() == 0:
        return probs.sum() * 0.0
    fg = F.one_hot(labels, probs.shape[1]).to(probs.dtype)
    if classes == 'present':
        present = fg.sum(dim=0) > 0
        fg, probs = fg[:, present], probs[:, present]
    errors = (fg - probs).abs()
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    fg_sorted = fg.gather(0, perm)
    gts = fg_sorted.sum(dim=0)
    jaccard = 1.0 - (gts - fg_sorted.cumsum(0)) / (gts + (1.0 - fg_sorted).cumsum(0))
    grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
    return (errors_sorted * grad).sum(dim=0).mean()


def lovasz_softmax(probs: Tensor, labels: Tensor, ignore_index: int | None = IGNORE_INDEX,
                   classes: str = 'present') -> Tensor:
    """Lovász-softmax loss of class probabilities ``probs`` (..., C) against integer ``labels`` (...).

    Elements labelled ``ignore_index`` are dropped first. With nothing left the loss is a zero that
    still carries the graph (so a backward pass is a no-op, not an error).
    """
    if probs.shape[:-1] != labels.shape:
        raise ValueError(f'lovasz_softmax: probs {tuple(probs.shape)} and labels {tuple(labels.shape)} '
                         'do not match (expected (..., C) and (...))')
    probs, = upcast(probs.reshape(-1, probs.shape[-1]))
    labels = labels.reshape(-1).long()
    if ignore_index is not None:
        keep = labels != ignore_index
        probs, labels = probs[keep], labels[keep]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= probs.shape[1]):
        raise ValueError(f'lovasz_softmax: labels outside [0, {probs.shape[1]}) '
                         f'(min {int(labels.min())}, max {int(labels.max())}); ignore_index={ignore_index}')
    return lovasz_softmax_flat(probs, labels, classes)


def lovasz_softmax_logits(logits: Tensor, labels: Tensor, ignore_index: int | None = IGNORE_INDEX,
                          classes: str = 'present') -> Tensor:
    """Lovász-softmax on raw logits (..., C): softmax over the last dimension, then :func:`lovasz_softmax`."""
    return lovasz_softmax(F.softmax(logits, dim=-1), labels, ignore_index, classes)
