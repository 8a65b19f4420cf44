"""UnScene3D self-training with Mask Addition (Sec. 3.2, Table 8).

The initial pseudo masks M^0 are kept fixed. After a training cycle t, the model's most confident
predictions are added when they are new: M^t = M^0 ∪ {novel confident predictions of cycle t} ⊇ M^0
("from the second training iteration, we can extract the most confident K predictions ... only accept new
instances if the added information value is larger than the minimum threshold, measured by simple segment
IoU scores"). The paper gives neither K nor the threshold; OUR CHOICES (all parameters):

- candidates: predictions with objectness σ(o) >= 0.5, the ``top_k`` = 20 highest;
- a candidate's mask is σ(x) > 0.5 and must hold at least ``min_size`` = 8 elements (UnScene3D's minimum
  foreground of 8 segments for an NCut mask, Sec. 7.4);
- "new" = IoU < ``max_iou`` = 0.25 with every mask already in the set (M^0, earlier additions kept with
  ``previous``, and the candidates accepted before it, in decreasing score order).

Masks are over whatever elements the pseudo masks use (points or segments).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from training.losses.instance import mask_iou


@dataclass
class MaskAdditionConfig:
    """Mask Addition thresholds (module doc: all are our choices)."""

    top_k: int = 20
    min_score: float = 0.5
    mask_threshold: float = 0.5
    min_size: int = 8
    max_iou: float = 0.25


@dataclass
class MaskAdditionResult:
    """The new pseudo-mask set: M^0 first (unchanged), then kept earlier additions, then this cycle's."""

    masks: Tensor          # (M, N) bool
    num_original: int      # |M^0|
    num_previous: int      # earlier additions kept
    added: Tensor          # (A,) long: indices of the predictions added this cycle
    added_scores: Tensor   # (A,) objectness probabilities of those


def mask_addition(original: Tensor, mask_logits: Tensor, objectness_logits: Tensor,
                  config: MaskAdditionConfig | None = None,
                  previous: Tensor | None = None) -> MaskAdditionResult:
    """Add confident, novel predicted masks (K, N) to the fixed pseudo masks M^0 (M0, N) of one scene.

    ``previous`` (P, N): masks added in earlier cycles to keep (None: M^t = M^0 ∪ this cycle's additions).
    """
    config = config or MaskAdditionConfig()
    original = original.bool()
    n = original.shape[1]
    if mask_logits.ndim != 2 or mask_logits.shape[1] != n or objectness_logits.shape != mask_logits.shape[:1]:
        raise ValueError(f'predictions {tuple(mask_logits.shape)} / objectness '
                         f'{tuple(objectness_logits.shape)} do not fit pseudo masks {tuple(original.shape)}')
    kept_prev = previous.bool().to(original.device) if previous is not None else original[:0]
    current = torch.cat([original, kept_prev])
    with torch.no_grad():
        scores = objectness_logits.detach().sigmoid().to(original.device)
        masks = mask_logits.detach().sigmoid().to(original.device) > config.mask_threshold
        order = torch.argsort(scores, descending=True, stable=True)
        order = order[scores[order] >= config.min_score][:config.top_k]
        added: list[int] = []
        for k in order.tolist():
            m = masks[k]
            if int(m.sum()) < config.min_size:
                continue
            if current.shape[0] and float(mask_iou(m[None], current).max()) >= config.max_iou:
                continue
            current = torch.cat([current, m[None]])
            added.append(k)
    idx = torch.tensor(added, dtype=torch.long)
    return MaskAdditionResult(masks=current, num_original=original.shape[0], num_previous=kept_prev.shape[0],
                              added=idx, added_scores=scores.cpu()[idx])
