"""Small helpers shared by the losses: the logit scale, empty-safe reductions, shape checks.

The cosine classifier itself is the package's one classifier, :func:`perception_nodes.classify.cosine_logits`.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Our choice (no paper gives it): CLIP's own logit scale (exp(4.6052) = 100) turns cosine similarities
# to the text embeddings into logits (perception_nodes.classify.cosine_logits), so that softmax(F · EMB)
# (Affinity3D Eq. 13/14/18) is not flat.
DEFAULT_LOGIT_SCALE = 100.0


def zero_like_graph(*tensors: Tensor) -> Tensor:
    """Return a scalar 0 connected to every tensor's graph (backward gives exact zero gradients)."""
    out = None
    for t in tensors:
        if t is not None and t.is_floating_point():
            term = t.sum() * 0.0
            out = term if out is None else out + term
    if out is None:
        raise ValueError('zero_like_graph needs at least one floating-point tensor')
    return out


def check_mask(mask: Tensor, n: int, name: str) -> Tensor:
    """Validate an (n,) mask and return it as bool."""
    if mask.shape != (n,):
        raise ValueError(f'{name} must have shape ({n},), got {tuple(mask.shape)}')
    return mask.bool() if mask.dtype != torch.bool else mask


def upcast(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Cast float16 / bfloat16 tensors (AMP outputs) to float32 so sums, cumsums and sorts stay accurate."""
    return tuple(t.float() if t is not None and t.dtype in (torch.float16, torch.bfloat16) else t
                 for t in tensors)
