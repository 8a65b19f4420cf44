"""The one open-vocabulary classifier: features against class text embeddings (cosine, temperature, softmax).

Used by every labeller (fused 2D teacher, 3D student, their ensemble), by instance voting and by training,
so "label" and "score" mean one thing everywhere:

- **logits** ``l_ik = s · cos(f_i, t_k)`` with the temperature ``s`` (``labeller.logit_scale``, CLIP's 100):
  Affinity3D Eq. 3 (2D) and Eq. 13/18 (the 3D classifier whose weights are the text embeddings);
- **label** ``argmax_k l_ik``; **score** the winning class's softmax probability ``p_i = max_k softmax(l_i)``,
  in [0, 1] (Outputs.scores, the PointCloud2 ``score`` field);
- **unknown**: :data:`~perception_nodes.outputs.UNKNOWN_LABEL` (65535) when a point has no feature (no camera
  saw it, or the student gave no finite embedding: score 0) or when ``p_i`` is below ``unknown_threshold``
  (score ``p_i`` kept, so a threshold can be re-tuned offline).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from perception_nodes.outputs import UNKNOWN_LABEL

__all__ = ['Classification', 'classify', 'cosine_logits', 'unit_rows']


def unit_rows(x: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows scaled to unit length (invalid rows zero), valid mask): rows that are finite and non-zero."""
    x = x.float()
    norms = torch.linalg.vector_norm(x, dim=1)
    ok = torch.isfinite(norms) & (norms > eps)
    unit = x / norms.clamp_min(eps)[:, None]
    if not bool(ok.all()):          # (a broadcast torch.where over all rows costs ~10x the division)
        unit[~ok] = 0.0
    return unit, ok


def cosine_logits(features: torch.Tensor, text_embeddings: torch.Tensor, logit_scale: float = 100.0,
                  normalized: bool = False) -> torch.Tensor:
    """(n, K) ``logit_scale · cos(f_i, t_k)``; differentiable (training uses it for its losses).

    ``normalized``: the feature rows are already unit vectors (skips a copy).
    """
    if text_embeddings.ndim != 2 or text_embeddings.shape[0] == 0:
        raise ValueError('the vocabulary is empty: no class text embeddings to classify against')
    if features.ndim != 2 or (features.shape[0] and features.shape[1] != text_embeddings.shape[1]):
        raise ValueError(f'features {tuple(features.shape)} do not match the text embeddings '
                         f'{tuple(text_embeddings.shape)}')
    f = features if normalized else torch.nn.functional.normalize(features, dim=1, eps=1e-12)
    t = torch.nn.functional.normalize(text_embeddings.to(f.device, f.dtype), dim=1, eps=1e-12)
    return float(logit_scale) * (f @ t.T)


@dataclass
class Classification:
    labels: torch.Tensor    # (n,) int64 class index, UNKNOWN_LABEL for unknown
    scores: torch.Tensor    # (n,) float32 winning softmax probability (0 where there is no feature)


@torch.no_grad()
def classify(features: torch.Tensor, text_embeddings: torch.Tensor, logit_scale: float = 100.0,
             unknown_threshold: float = 0.0, normalized: bool = False) -> Classification:
    """Label and score each feature row under the module's convention (rows without a feature: unknown)."""
    n = features.shape[0]
    device = features.device
    if n == 0:
        cosine_logits(features.reshape(0, text_embeddings.shape[1]), text_embeddings)   # shape checks only
        return Classification(torch.zeros(0, dtype=torch.int64, device=device),
                              torch.zeros(0, dtype=torch.float32, device=device))
    if normalized:
        f, ok = features.float(), torch.ones(n, dtype=torch.bool, device=device)
    else:
        f, ok = unit_rows(features)
    probs = torch.softmax(cosine_logits(f, text_embeddings, logit_scale, normalized=True), dim=1)
    scores, labels = probs.max(dim=1)
    scores = torch.where(ok, scores, torch.zeros_like(scores))
    unknown = ~ok | (scores < unknown_threshold)
    labels = torch.where(unknown, torch.full_like(labels, UNKNOWN_LABEL), labels)
    return Classification(labels, scores.float())
