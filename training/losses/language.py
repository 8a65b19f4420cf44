"""ScanNet200 language-grounded losses: text-anchored contrastive pre-training (Eq. 1-3), C-Focal (Eq. 4-5).

Contrastive, in the form of the authors' code (DIGEST [EXT]: Eq. 1-2 as printed use cosine similarity,
which inverts the intent; the code uses the cosine DISTANCE d = 1 - cos):

    L_pos,i = max(0, d(f_i, t_{h(i)}) - t_pos)                                      (Eq. 1)
    L_neg,i = max(0, t_neg - (1 - mean_{j ∈ M_i} cos(f_i, t_j)))                      (Eq. 2)
    L = mean_i L_pos,i + λ mean_i L_neg,i,   λ = 1, t_pos = 0, t_neg = 0.6, |M_i| = 3   (Eq. 3)

i.e. pull each point to its class anchor and push the mean cosine to its negatives below 1 - t_neg = 0.4.
The negatives' cosines are averaged before the hinge (as in the code; Eq. 2 averages the hinges) and
per-point losses are averaged (the code's mean, not Eq. 1's sum). Negatives are drawn uniformly from the
classes other than the point's own ("label encodings different from i", Eq. 2), with replacement (our
choice), from a ``torch.Generator`` for reproducibility.

Class-balanced focal loss (C-Focal):  FL_i = -α_{y_i} (1 - p_t)^γ log p_t, γ = 2 (Eq. 4-5), averaged over
labelled points (plain mean, as the code overrides the weighted mean). α from
:func:`training.class_stats.class_balanced_alpha` (``direction`` flag: 'paper' as printed, or 'inverse').
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from training.losses.common import upcast, zero_like_graph
from training.losses.lovasz import IGNORE_INDEX

T_POS = 0.0          # [P]
T_NEG = 0.6          # [P]
NUM_NEGATIVES = 3    # N_i [P]
CONTRAST_LAMBDA = 1.0   # λ [P]
FOCAL_GAMMA = 2.0    # [P]


@dataclass
class ContrastiveConfig:
    """ScanNet200 Eq. 1-3 constants."""

    t_pos: float = T_POS
    t_neg: float = T_NEG
    num_negatives: int = NUM_NEGATIVES
    lam: float = CONTRAST_LAMBDA
    ignore_index: int = IGNORE_INDEX


def sample_negatives(labels: Tensor, num_classes: int, num_negatives: int,
                     generator: torch.Generator | None = None) -> Tensor:
    """(N, K) class ids drawn uniformly from the classes other than each point's label."""
    if num_classes < 2:
        raise ValueError('negative sampling needs at least 2 classes')
    r = torch.randint(0, num_classes - 1, (labels.shape[0], num_negatives), generator=generator,
                      device='cpu').to(labels.device)
    return r + (r >= labels[:, None]).long()


def text_anchored_contrastive(features: Tensor, labels: Tensor, anchors: Tensor,
                              config: ContrastiveConfig | None = None,
                              negatives: Tensor | None = None,
                              generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Eq. 1-3 on (N, D) point features, (N,) labels and (C, D) text anchors: {'pos', 'neg', 'total'}.

    ``negatives``: optional (N, K) explicit negative class ids (else sampled with ``generator``).
    """
    config = config or ContrastiveConfig()
    if features.ndim != 2 or anchors.ndim != 2 or features.shape[1] != anchors.shape[1]:
        raise ValueError(f'features {tuple(features.shape)} and anchors {tuple(anchors.shape)} must be '
                         '(N, D) and (C, D)')
    features, anchors = upcast(features, anchors)
    labels = labels.long().to(features.device)
    keep = labels != config.ignore_index
    f, y = features[keep], labels[keep]
    if f.shape[0] == 0:
        zero = zero_like_graph(f)
        return {'pos': zero, 'neg': zero, 'total': zero}
    if negatives is None:
        negatives = sample_negatives(y, anchors.shape[0], config.num_negatives, generator)
    else:
        negatives = negatives.long().to(features.device)[keep]
    fn = F.normalize(f, dim=-1, eps=1e-6)
    an = F.normalize(anchors.to(f.dtype), dim=-1, eps=1e-6).detach()
    cos_pos = (fn * an[y]).sum(dim=-1)
    cos_neg = torch.einsum('nd,nkd->nk', fn, an[negatives]).mean(dim=1)
    pos = F.relu((1.0 - cos_pos) - config.t_pos).mean()
    neg = F.relu(config.t_neg - (1.0 - cos_neg)).mean()
    return {'pos': pos, 'neg': neg, 'total': pos + config.lam * neg}


def class_balanced_focal(logits: Tensor, labels: Tensor, alpha: Tensor | None = None,
                         gamma: float = FOCAL_GAMMA, ignore_index: int | None = IGNORE_INDEX) -> Tensor:
    """Eq. 4-5: mean over labelled points of -α_y (1 - p_t)^γ log p_t; α None means 1 for every class."""
    logits, = upcast(logits)
    labels = labels.long().to(logits.device)
    keep = labels != ignore_index if ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
    z, y = logits[keep], labels[keep]
    if y.numel() == 0:
        return zero_like_graph(z)
    log_pt = F.log_softmax(z, dim=-1).gather(1, y[:, None]).squeeze(1)
    pt = log_pt.exp()
    loss = -((1.0 - pt).clamp(min=0.0) ** gamma) * log_pt if gamma != 0 else -log_pt
    if alpha is not None:
        alpha = alpha.to(device=logits.device, dtype=logits.dtype)
        if alpha.shape != (logits.shape[-1],):
            raise ValueError(f'focal alpha has {alpha.numel()} entries for {logits.shape[-1]} classes')
        loss = alpha[y] * loss
    return loss.mean()
