"""Small helpers shared by the losses: text-classifier logits, empty-safe reductions, shape checks."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

# Our choice (no paper gives it): CLIP's own logit scale (exp(4.6052) = 100) turns cosine similarities
# to the text embeddings into logits, so that softmax(F · EMB) (Affinity3D Eq. 13/14/18) is not flat.
DEFAULT_LOGIT_SCALE = 100.0


def text_logits(features: Tensor, text_embeddings: Tensor,
                logit_scale: float = DEFAULT_LOGIT_SCALE) -> Tensor:
    """Affinity3D Eq. 13/14/18 logits: ``logit_scale * cos(f_i, t_c)``; (N, D) x (C, D) -> (N, C)."""
    if features.shape[-1] != text_embeddings.shape[-1]:
        raise ValueError(f'text_logits: feature width {features.shape[-1]} != text width '
                         f'{text_embeddings.shape[-1]}')
    text = F.normalize(text_embeddings.to(features.dtype), dim=-1, eps=1e-6)
    return logit_scale * (F.normalize(features, dim=-1, eps=1e-6) @ text.T)


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
