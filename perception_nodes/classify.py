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

import numpy as np
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


def _top_class_cpu(unit: torch.Tensor, text_embeddings: torch.Tensor,
                   logit_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, scores) of unit feature rows on the CPU: the same maths as softmax + max, laid out (K, n).

    torch reduces a short last axis (K classes) slowly on the CPU, and its matmul is slower than numpy's
    for an (n, D) x (D, K) product; here the logits are one (K, D) x (D, n) BLAS product, and every
    reduction runs across K rows of n: the label is the first class reaching the maximal logit, the
    score ``1 / sum_k exp(l_k - l_max)`` (the winning class's softmax probability). Up to float rounding
    (a few 1e-7) this is ``softmax(logits).max(dim=1)``; where two classes' probabilities round to the
    same float the label is the one with the larger logit (test/test_classify.py compares the two).
    """
    if text_embeddings.ndim != 2 or text_embeddings.shape[0] == 0:
        raise ValueError('the vocabulary is empty: no class text embeddings to classify against')
    if unit.ndim != 2 or unit.shape[1] != text_embeddings.shape[1]:
        raise ValueError(f'features {tuple(unit.shape)} do not match the text embeddings '
                         f'{tuple(text_embeddings.shape)}')
    text = torch.nn.functional.normalize(text_embeddings.detach().float().cpu(), dim=1, eps=1e-12).numpy()
    rows = unit.detach().numpy()
    logits = text @ rows.T          # (K, n); BLAS reads a C- or F-ordered ``rows`` without copying it
    logits *= np.float32(logit_scale)
    top = logits.max(axis=0)
    k = len(text)
    labels = np.full(logits.shape[1], k - 1, dtype=np.int64)
    for c in range(k - 2, -1, -1):                  # the first class reaching the maximum wins
        np.copyto(labels, c, where=logits[c] == top)
    logits -= top
    np.exp(logits, out=logits)
    scores = np.reciprocal(logits.sum(axis=0))
    return torch.from_numpy(labels), torch.from_numpy(scores)


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
    if device.type == 'cpu':
        labels, scores = _top_class_cpu(f, text_embeddings, logit_scale)
    else:
        probs = torch.softmax(cosine_logits(f, text_embeddings, logit_scale, normalized=True), dim=1)
        scores, labels = probs.max(dim=1)
    scores = torch.where(ok, scores, torch.zeros_like(scores))
    unknown = ~ok | (scores < unknown_threshold)
    labels = torch.where(unknown, torch.full_like(labels, UNKNOWN_LABEL), labels)
    return Classification(labels, scores.float())
