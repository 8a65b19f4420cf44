"""Affinity3D visible-only knowledge transfer (Eq. 15-16, weight γ in Eq. 20).

    L_learner = (1 / N_v) Σ_{p_i ∈ V_p} KL(·, ·)(Y_3D^i, Y_2D3D^i),   V_p = {p_i | Vis[i] = 1}

The paper does not define the KL's argument order. Our choice (default ``direction='fused_to_3d'``):

    KL(Y_2D3D || Y_3D) = Σ_c Y_2D3D(c) (log Y_2D3D(c) - log Y_3D(c)),  with Y_2D3D detached,

i.e. the fused 2D-3D prediction is the teacher and the 3D prediction the student. Reasons: Affinity3D
says it incorporates 2DPASS's MSFSKD, whose code computes exactly this
(``F.kl_div(F.log_softmax(pts_pred), F.softmax(fuse_pred.detach()))`` [EXT]); forward KL from a fixed
teacher is the standard distillation objective; and only the 3D branch is deployed, so the gradient must
move the 3D prediction towards the image-enhanced one, not the reverse. ``direction='3d_to_fused'``
(the literal argument order of Eq. 15 read as KL(Y_3D || Y_2D3D)) and ``detach_target=False`` are kept
as flags for ablations. Because the target is detached, the fused branch must be trained by its own
loss (2DPASS supervises it with the segmentation loss; see ``recipes.affinity3d_specs``).

Invisible points are removed by indexing before any arithmetic, so they contribute exactly zero loss and
exactly zero gradient (even when their logits are NaN). Per-point KL is summed over classes and averaged
over visible points (Eq. 15's 1/N_v; torch's ``kl_div(reduction='mean')`` would also divide by C).
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor
from torch.nn import functional as F

from training.losses.common import check_mask, upcast, zero_like_graph

AFFINITY3D_GAMMA = 0.05   # Eq. 20 [P]
DIRECTIONS = ('fused_to_3d', '3d_to_fused')


def kl_divergence(target_logits: Tensor, input_logits: Tensor) -> Tensor:
    """Per-row KL(softmax(target) || softmax(input)) of (N, C) logits, (N,)."""
    log_p = F.log_softmax(target_logits, dim=-1)
    log_q = F.log_softmax(input_logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def visible_kl(logits_3d: Tensor, logits_fused: Tensor, visible: Tensor, direction: str = 'fused_to_3d',
               detach_target: bool = True) -> Tensor:
    """Eq. 15-16 for one layer: mean over visible points of the KL between the two predictions.

    ``logits_3d`` / ``logits_fused``: (N, C) logits of Y_3D (Eq. 13) and Y_2D3D (Eq. 14);
    ``visible``: (N,) bool Vis (Eq. 10). 0 (with the graph) when no point is visible.
    """
    if logits_3d.shape != logits_fused.shape or logits_3d.ndim != 2:
        raise ValueError(f'visible_kl: logits must both be (N, C), got {tuple(logits_3d.shape)} and '
                         f'{tuple(logits_fused.shape)}')
    if direction not in DIRECTIONS:
        raise ValueError(f'visible_kl: direction must be one of {DIRECTIONS}, got {direction!r}')
    vis = check_mask(visible, logits_3d.shape[0], 'visible').to(logits_3d.device)
    logits_3d, logits_fused = upcast(logits_3d, logits_fused)
    s3d, fused = logits_3d[vis], logits_fused[vis]
    if s3d.shape[0] == 0:
        return zero_like_graph(s3d, fused)
    if direction == 'fused_to_3d':
        target, student = (fused.detach() if detach_target else fused), s3d
    else:
        target, student = (s3d.detach() if detach_target else s3d), fused
    return kl_divergence(target, student).mean()


def visible_kl_layers(logits_3d: Sequence[Tensor], logits_fused: Sequence[Tensor], visible: Tensor,
                      direction: str = 'fused_to_3d', detach_target: bool = True) -> Tensor:
    """Eq. 15 over the layers l: the mean of the per-layer losses (2DPASS divides by the scale count)."""
    if len(logits_3d) != len(logits_fused) or not logits_3d:
        raise ValueError(f'visible_kl_layers: {len(logits_3d)} 3D and {len(logits_fused)} fused layers')
    total = sum(visible_kl(a, b, visible, direction, detach_target) for a, b in zip(logits_3d, logits_fused))
    return total / len(logits_3d)
