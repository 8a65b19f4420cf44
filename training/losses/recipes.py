"""The five papers' loss terms as :class:`~training.losses.combine.LossSpec` lists, with their constants.

These are defaults for the trainer's recipe configs (which may override any field). Each function
documents the batch keys its specs read; the trainer's batch dict must provide them.
"""
from __future__ import annotations

from typing import Sequence

from training.losses.combine import LossSpec
from training.losses.instance import TAU_DROP
from training.losses.knowledge_transfer import AFFINITY3D_GAMMA
from training.losses.language import CONTRAST_LAMBDA, FOCAL_GAMMA, NUM_NEGATIVES, T_NEG, T_POS
from training.losses.occupancy import POP3D_LAMBDA
from training.losses.segmentation import AFFINITY3D_ALPHA

# Our choice: the 2DPASS weight of the segmentation loss on the fused 2D-3D prediction (λ_seg2d = 1 [EXT]).
# Affinity3D does not say how the fusion branch is trained; with the KL target detached it needs this term.
FUSED_SEGMENTATION_WEIGHT = 1.0
# Our choice for CNS (no weights in the supplement): every term weighs 1.
CNS_WEIGHTS = {'ce_3d': 1.0, 'ce_2d': 1.0, 'prediction_consistency': 1.0, 'latent_consistency': 1.0}


def affinity3d_specs(class_counts: Sequence[float], alpha: float = AFFINITY3D_ALPHA,
                     gamma: float = AFFINITY3D_GAMMA,
                     fused_weight: float = FUSED_SEGMENTATION_WEIGHT) -> list[LossSpec]:
    """Eq. 19-20: α·Lovász + weighted CE on Y_3D, γ·KL on visible points, plus CE on the fused prediction.

    Batch keys: ``logits_3d`` (N, C) student logits (Eq. 18), ``labels`` (N,) PL' (invisible points
    already ignore), ``kt_logits_3d`` / ``kt_logits_fused`` per-layer lists of (N, C) (Eq. 13/14),
    ``visible`` (N,) bool (Eq. 16), ``labels_visible`` (N,) PL' with non-visible points set to ignore.
    """
    counts = [float(c) for c in class_counts]
    return [
        LossSpec('lovasz', 'lovasz_softmax', alpha, {'logits': 'logits_3d', 'labels': 'labels'}),
        LossSpec('ce', 'cross_entropy', 1.0, {'logits': 'logits_3d', 'labels': 'labels'},
                 {'class_counts': counts}),
        LossSpec('kt_kl', 'visible_kl', gamma,
                 {'logits_3d': 'kt_logits_3d', 'logits_fused': 'kt_logits_fused', 'visible': 'visible'}),
        LossSpec('fused_ce', 'cross_entropy', fused_weight,
                 {'logits': 'kt_logits_fused', 'labels': 'labels_visible'}, {'class_counts': counts}),
    ]


def pop3d_specs(lam: float = POP3D_LAMBDA) -> list[LossSpec]:
    """Eq. 8: L_occ (CE + Lovász, Eq. 4) + λ L_ft (Eq. 7).

    Batch keys: ``occupancy_logits`` (X, Y, Z, 2), ``occupancy_target`` (X, Y, Z) bool,
    ``point_features`` (N, 512) predicted at the points, ``teacher_features`` (N, 512), ``camera_mask`` (N,).
    """
    return [
        LossSpec('occupancy', 'occupancy', 1.0, {'logits': 'occupancy_logits', 'target': 'occupancy_target'}),
        LossSpec('feature', 'feature_mse', lam,
                 {'predicted': 'point_features', 'target': 'teacher_features', 'mask': 'camera_mask'}),
    ]


def cns_specs(weights: dict[str, float] | None = None, latent_mode: str = 'infonce') -> list[LossSpec]:
    """CNS: CE of both networks to the CLIP pseudo-labels + prediction and latent consistency (our forms).

    Batch keys: ``logits_3d`` (N, C) + ``labels`` (N,); ``logits_2d`` (P, C) + ``labels_2d`` (P,);
    ``pair_logits_2d`` / ``pair_logits_3d`` (Q, C) at corresponding pixel/point pairs;
    ``latents_2d`` (P', 64), ``regions_2d``, ``latents_3d`` (N', 64), ``regions_3d``,
    ``region_latents`` (R, 64).
    """
    w = dict(CNS_WEIGHTS, **(weights or {}))
    return [
        LossSpec('ce_3d', 'cross_entropy', w['ce_3d'], {'logits': 'logits_3d', 'labels': 'labels'}),
        LossSpec('ce_2d', 'cross_entropy', w['ce_2d'], {'logits': 'logits_2d', 'labels': 'labels_2d'}),
        LossSpec('prediction_consistency', 'prediction_consistency', w['prediction_consistency'],
                 {'logits_2d': 'pair_logits_2d', 'logits_3d': 'pair_logits_3d'}),
        LossSpec('latent_consistency', 'latent_consistency', w['latent_consistency'], {},
                 {'mode': latent_mode}),
    ]


def scannet200_pretrain_specs(t_pos: float = T_POS, t_neg: float = T_NEG, num_negatives: int = NUM_NEGATIVES,
                              lam: float = CONTRAST_LAMBDA) -> list[LossSpec]:
    """Eq. 1-3 text-anchored contrastive pre-training.

    Batch keys: ``point_features`` (N, D), ``labels`` (N,), ``text_anchors`` (C, D), optional ``generator``.
    """
    return [LossSpec('contrastive', 'text_contrastive', 1.0,
                     {'features': 'point_features', 'anchors': 'text_anchors'},
                     {'t_pos': t_pos, 't_neg': t_neg, 'num_negatives': num_negatives, 'lam': lam})]


def scannet200_finetune_specs(class_counts: Sequence[float], gamma: float = FOCAL_GAMMA,
                              direction: str = 'paper') -> list[LossSpec]:
    """Eq. 4-5 C-Focal fine-tuning. Batch keys: ``logits`` (N, C), ``labels`` (N,)."""
    return [LossSpec('focal', 'focal', 1.0, {},
                     {'gamma': gamma, 'class_counts': [float(c) for c in class_counts],
                      'direction': direction})]


def unscene3d_specs(drop_loss: bool = True, tau_drop: float = TAU_DROP) -> list[LossSpec]:
    """Sec. 3.2 self-training losses. Batch keys: ``mask_logits``, ``objectness_logits``, ``pseudo_masks``."""
    return [LossSpec('instance', 'instance', 1.0, {'targets': 'pseudo_masks'},
                     {'drop_loss': drop_loss, 'tau_drop': tau_drop})]
