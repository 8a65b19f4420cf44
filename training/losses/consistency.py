"""CNS consistency regularisers (label-free CLIP + SAM co-training of a 2D and a 3D network).

Only the supplement of CNS is in our copy: it fixes the dimensions (512-d pixel, point and text
features; K_f = 64 latent space reached by linear maps θ_f (2D), φ_f (3D), ϕ_f (SAM)) but not the loss
forms. The forms below are OUR CHOICES, documented and tested:

Prediction consistency (between the 2D and 3D 512-d predictions at corresponding point/pixel pairs):
    symmetric KL of the class distributions p2 = softmax(s · cos(f2D, t)), p3 = softmax(s · cos(f3D, t)),
    L_pc = mean_pairs ½ [KL(p2 || p3) + KL(p3 || p2)], both networks receiving gradients (co-training);
    ``detach`` lets one side act as a fixed teacher for ablations.

Latent consistency (in the 64-d space shared with the SAM region features):
    the projected 2D pixel latents θ_f(F_2D) and 3D point latents φ_f(F_3D) are mean-pooled per SAM region
    r, and each pooled latent must match its own region's SAM latent ϕ_f(F_SAM)_r.
    ``mode='infonce'`` (default): InfoNCE over the regions of the scene (temperature τ = 0.07, CLIP's
    initial value), symmetric in (modality -> region, region -> modality); the negatives prevent the
    collapse that a pure pull term allows when all three maps are learned.
    ``mode='cosine'``: mean cosine distance 1 - cos(pooled, region) (a pure pull, for ablations).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from training.losses.common import check_mask, upcast, zero_like_graph
from training.losses.knowledge_transfer import kl_divergence

CNS_LATENT_DIM = 64          # K_f [P, supplement]
CNS_FEATURE_DIM = 512        # pixel / point / text features [P, supplement]
LATENT_TEMPERATURE = 0.07    # our choice (CLIP's initial temperature)
LATENT_MODES = ('infonce', 'cosine')


def prediction_consistency(logits_2d: Tensor, logits_3d: Tensor, pair_mask: Tensor | None = None,
                           detach: str | None = None) -> Tensor:
    """Symmetric KL between (P, C) 2D and 3D class logits of P corresponding pixel/point pairs.

    ``detach``: None (both sides learn), '2d' or '3d' (that side is treated as a constant).
    Pairs outside ``pair_mask`` contribute exactly zero loss and gradient.
    """
    if logits_2d.shape != logits_3d.shape or logits_2d.ndim != 2:
        raise ValueError(f'prediction_consistency: logits must both be (P, C), got '
                         f'{tuple(logits_2d.shape)} and {tuple(logits_3d.shape)}')
    if detach not in (None, '2d', '3d'):
        raise ValueError(f"detach must be None, '2d' or '3d', got {detach!r}")
    logits_2d, logits_3d = upcast(logits_2d, logits_3d)
    if pair_mask is not None:
        keep = check_mask(pair_mask, logits_2d.shape[0], 'pair_mask').to(logits_2d.device)
        logits_2d, logits_3d = logits_2d[keep], logits_3d[keep]
    if logits_2d.shape[0] == 0:
        return zero_like_graph(logits_2d, logits_3d)
    a = logits_2d.detach() if detach == '2d' else logits_2d
    b = logits_3d.detach() if detach == '3d' else logits_3d
    return 0.5 * (kl_divergence(a, b) + kl_divergence(b, a)).mean()


def pool_by_region(latents: Tensor, regions: Tensor, num_regions: int) -> tuple[Tensor, Tensor]:
    """Mean of (P, K) latents per region id in [0, R) (negative ids skipped): ((R, K), (R,) count)."""
    if regions.shape != latents.shape[:1]:
        raise ValueError(f'regions {tuple(regions.shape)} do not match latents {tuple(latents.shape)}')
    regions = regions.long().to(latents.device)
    if regions.numel() and int(regions.max()) >= num_regions:
        raise ValueError(f'region id {int(regions.max())} >= num_regions {num_regions}')
    keep = regions >= 0
    lat, reg = latents[keep], regions[keep]
    sums = latents.new_zeros(num_regions, latents.shape[1]).index_add(0, reg, lat)
    count = torch.bincount(reg, minlength=num_regions)
    return sums / count.clamp(min=1).unsqueeze(1).to(latents.dtype), count


def _region_term(pooled: Tensor, region_latents: Tensor, mode: str, temperature: float) -> Tensor:
    a = F.normalize(pooled, dim=-1, eps=1e-6)
    b = F.normalize(region_latents, dim=-1, eps=1e-6)
    if mode == 'cosine':
        return (1.0 - (a * b).sum(dim=-1)).mean()
    logits = a @ b.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def latent_consistency(latents_2d: Tensor, regions_2d: Tensor, latents_3d: Tensor, regions_3d: Tensor,
                       region_latents: Tensor, mode: str = 'infonce',
                       temperature: float = LATENT_TEMPERATURE) -> dict[str, Tensor]:
    """Latent consistency of 2D pixel (P, K) and 3D point (N, K) latents with SAM region latents (R, K).

    ``regions_2d`` (P,) / ``regions_3d`` (N,): the SAM region of each pixel / point, -1 for none. Only
    regions holding at least one pixel (resp. point) enter that modality's term. Returns {'2d', '3d',
    'total'} with total = '2d' + '3d'.
    """
    if mode not in LATENT_MODES:
        raise ValueError(f'latent_consistency: mode must be one of {LATENT_MODES}, got {mode!r}')
    latents_2d, latents_3d, region_latents = upcast(latents_2d, latents_3d, region_latents)
    r = region_latents.shape[0]
    out: dict[str, Tensor] = {}
    for name, lat, reg in (('2d', latents_2d, regions_2d), ('3d', latents_3d, regions_3d)):
        pooled, count = pool_by_region(lat, reg, r)
        used = count > 0
        if not bool(used.any()):
            out[name] = zero_like_graph(lat[:0], region_latents[:0])
        else:
            out[name] = _region_term(pooled[used], region_latents[used], mode, temperature)
    out['total'] = out['2d'] + out['3d']
    return out


def region_ids_from_masks(masks: Tensor) -> Tensor:
    """(R, ...) bool SAM masks -> (...) long region id per element (-1: no mask; overlaps: the last)."""
    masks = masks.bool()
    ids = torch.full(masks.shape[1:], -1, dtype=torch.long, device=masks.device)
    for i in range(masks.shape[0]):
        ids[masks[i]] = i
    return ids
