"""UnScene3D self-training losses (Sec. 3.2): Hungarian matching on Dice + BCE, mask losses, DropLoss.

Per scene, K predictions (mask logits (K, N) over points or segments, objectness logits (K,)) are matched
one-to-one to M pseudo masks (M, N) by ``scipy.optimize.linear_sum_assignment`` on

    C[k, m] = c_bce · BCE(k, m) + c_dice · Dice(k, m) - c_obj · σ(o_k)

(Mask3D's weighted combination, which UnScene3D reuses; the weights are Mask3D's defaults, 5 / 2 / 2
[EXT: Mask3D config], since UnScene3D gives none). BCE(k, m) is the mean point-wise binary cross-entropy
and Dice(k, m) = 1 - (2 Σ σ(x_k) t_m + 1) / (Σ σ(x_k) + Σ t_m + 1) (Mask2Former's +1 smoothing [EXT]).

Losses: on matched pairs, w_bce · BCE + w_dice · Dice averaged over pairs; objectness BCE with target 1
for matched and 0 ("no object") for unmatched predictions, weighted mean with weight 1 for matched and
``no_object_weight`` = 0.1 for unmatched (Mask3D/Mask2Former's eos weight [EXT]).

DropLoss (CutLER, as adopted by UnScene3D): an unmatched prediction whose hard mask (σ > 0.5) overlaps no
pseudo mask with IoU >= τ_drop is not pushed to "no object": its loss is dropped (removed by indexing, so
exactly zero loss and gradient). τ_drop is NOT GIVEN in UnScene3D; our default is CutLER's 0.01 [EXT].
Matched predictions are never dropped (the brief's reading: they carry the mask supervision).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torch.nn import functional as F

from training.losses.common import upcast, zero_like_graph

TAU_DROP = 0.01     # CutLER's DropLoss threshold [EXT]; UnScene3D: NOT GIVEN


@dataclass
class InstanceLossConfig:
    """Matching costs, loss weights and DropLoss settings (defaults: Mask3D / CutLER, see module doc)."""

    cost_bce: float = 5.0
    cost_dice: float = 2.0
    cost_objectness: float = 2.0
    weight_bce: float = 5.0
    weight_dice: float = 2.0
    weight_objectness: float = 2.0
    no_object_weight: float = 0.1
    drop_loss: bool = True
    tau_drop: float = TAU_DROP
    mask_threshold: float = 0.5      # σ(x) above which a point is in a predicted mask (DropLoss IoU)


def pairwise_bce_cost(mask_logits: Tensor, targets: Tensor) -> Tensor:
    """(K, N) logits x (M, N) 0/1 targets -> (K, M) mean binary cross-entropy of every pair."""
    n = mask_logits.shape[1]
    t = targets.to(mask_logits.dtype)
    pos = F.softplus(-mask_logits)     # -log σ(x)
    neg = F.softplus(mask_logits)      # -log(1 - σ(x))
    return (pos @ t.T + neg @ (1.0 - t).T) / max(n, 1)


def pairwise_dice_cost(mask_logits: Tensor, targets: Tensor) -> Tensor:
    """(K, N) logits x (M, N) targets -> (K, M) Dice loss 1 - (2 |p t| + 1) / (|p| + |t| + 1)."""
    p = mask_logits.sigmoid()
    t = targets.to(p.dtype)
    inter = p @ t.T
    return 1.0 - (2.0 * inter + 1.0) / (p.sum(dim=1)[:, None] + t.sum(dim=1)[None, :] + 1.0)


def matching_cost(mask_logits: Tensor, objectness_logits: Tensor, targets: Tensor,
                  config: InstanceLossConfig | None = None) -> Tensor:
    """Compute the (K, M) Hungarian cost matrix (module doc) without gradients."""
    config = config or InstanceLossConfig()
    with torch.no_grad():
        cost = (config.cost_bce * pairwise_bce_cost(mask_logits, targets)
                + config.cost_dice * pairwise_dice_cost(mask_logits, targets)
                - config.cost_objectness * objectness_logits.sigmoid()[:, None])
    return cost


def hungarian_match(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum-cost one-to-one assignment of a (K, M) cost: (pred_idx, target_idx), min(K, M) pairs."""
    if cost.ndim != 2:
        raise ValueError(f'cost must be (K, M), got {tuple(cost.shape)}')
    c = cost.detach().cpu().double().numpy()
    if not np.all(np.isfinite(c)):
        raise ValueError('hungarian_match: the cost matrix holds NaN or inf (non-finite mask or objectness '
                         'logits?)')
    if c.size == 0:
        empty = torch.zeros(0, dtype=torch.long, device=cost.device)
        return empty, empty.clone()
    rows, cols = linear_sum_assignment(c)
    return (torch.as_tensor(rows, dtype=torch.long, device=cost.device),
            torch.as_tensor(cols, dtype=torch.long, device=cost.device))


def mask_iou(pred: Tensor, targets: Tensor) -> Tensor:
    """(K, N) x (M, N) boolean masks -> (K, M) IoU (0 where both are empty)."""
    p = pred.to(torch.float64)
    t = targets.to(torch.float64)
    inter = p @ t.T
    union = p.sum(dim=1)[:, None] + t.sum(dim=1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def droploss_keep(mask_logits: Tensor, targets: Tensor, matched: Tensor, tau_drop: float = TAU_DROP,
                  mask_threshold: float = 0.5) -> Tensor:
    """(K,) bool: predictions whose losses are kept (matched, or max IoU with a pseudo mask >= τ_drop)."""
    with torch.no_grad():
        hard = mask_logits.sigmoid() > mask_threshold
        if targets.shape[0] == 0:
            best = torch.zeros(mask_logits.shape[0], dtype=torch.float64, device=mask_logits.device)
        else:
            best = mask_iou(hard, targets.bool()).max(dim=1).values
    return matched | (best >= tau_drop)


@dataclass
class InstanceLossOutput:
    """Loss terms of one scene plus the matching, for logging and for self-training."""

    terms: dict[str, Tensor]                 # mask_bce, mask_dice, objectness, total (weighted)
    pred_idx: Tensor                          # (P,) matched prediction ids
    target_idx: Tensor                        # (P,) matched pseudo-mask ids
    kept: Tensor                              # (K,) bool, predictions whose losses count
    dropped: Tensor                           # (K,) bool, ~kept (DropLoss)


def instance_losses(mask_logits: Tensor, objectness_logits: Tensor, targets: Tensor,
                    config: InstanceLossConfig | None = None) -> InstanceLossOutput:
    """UnScene3D losses of one scene: (K, N) mask logits, (K,) objectness logits, (M, N) pseudo masks."""
    config = config or InstanceLossConfig()
    mask_logits, objectness_logits = upcast(mask_logits, objectness_logits)
    k, n = mask_logits.shape
    if objectness_logits.shape != (k,) or targets.ndim != 2 or targets.shape[1] != n:
        raise ValueError(f'instance_losses: masks {tuple(mask_logits.shape)}, objectness '
                         f'{tuple(objectness_logits.shape)}, targets {tuple(targets.shape)} do not fit')
    targets = targets.to(mask_logits.device)
    cost = matching_cost(mask_logits, objectness_logits, targets, config)
    pred_idx, tgt_idx = hungarian_match(cost)
    matched = torch.zeros(k, dtype=torch.bool, device=mask_logits.device)
    matched[pred_idx] = True
    if config.drop_loss:
        kept = droploss_keep(mask_logits, targets, matched, config.tau_drop, config.mask_threshold)
    else:
        kept = torch.ones(k, dtype=torch.bool, device=mask_logits.device)

    if pred_idx.numel():
        x = mask_logits[pred_idx]
        t = targets[tgt_idx].to(x.dtype)
        bce = F.binary_cross_entropy_with_logits(x, t, reduction='none').mean(dim=1).mean()
        p = x.sigmoid()
        dice = (1.0 - (2.0 * (p * t).sum(dim=1) + 1.0) / (p.sum(dim=1) + t.sum(dim=1) + 1.0)).mean()
    else:
        bce = dice = zero_like_graph(mask_logits[:0])

    obj_target = matched.to(objectness_logits.dtype)
    weight = torch.where(matched, torch.ones_like(obj_target),
                         torch.full_like(obj_target, config.no_object_weight))
    o, ot, w = objectness_logits[kept], obj_target[kept], weight[kept]
    if o.numel() and float(w.sum()) > 0:
        obj = (F.binary_cross_entropy_with_logits(o, ot, reduction='none') * w).sum() / w.sum()
    else:
        obj = zero_like_graph(o)
    total = config.weight_bce * bce + config.weight_dice * dice + config.weight_objectness * obj
    terms = {'mask_bce': bce, 'mask_dice': dice, 'objectness': obj, 'total': total}
    return InstanceLossOutput(terms=terms, pred_idx=pred_idx, target_idx=tgt_idx, kept=kept, dropped=~kept)


def batch_instance_losses(mask_logits: list[Tensor], objectness_logits: list[Tensor], targets: list[Tensor],
                          config: InstanceLossConfig | None = None) -> dict[str, Tensor]:
    """Mean of :func:`instance_losses` terms over the scenes of a batch (lists of per-scene tensors)."""
    if not (len(mask_logits) == len(objectness_logits) == len(targets)) or not mask_logits:
        raise ValueError('batch_instance_losses: need equally long, non-empty lists of scenes')
    outs = [instance_losses(m, o, t, config).terms
            for m, o, t in zip(mask_logits, objectness_logits, targets)]
    return {key: torch.stack([o[key] for o in outs]).mean() for key in outs[0]}
