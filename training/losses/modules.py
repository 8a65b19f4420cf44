"""nn.Module wrappers of the loss functions, built from config params by :mod:`training.losses.combine`.

Each forward takes tensors by keyword (the names :class:`~training.losses.combine.LossSpec.inputs` maps
batch keys to) and returns a scalar or a dict with a ``'total'`` entry.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from training.class_stats import class_balanced_alpha, class_weights_from_counts
from training.losses.consistency import LATENT_TEMPERATURE, latent_consistency, prediction_consistency
from training.losses.instance import InstanceLossConfig, batch_instance_losses
from training.losses.knowledge_transfer import visible_kl_layers
from training.losses.language import (FOCAL_GAMMA, ContrastiveConfig, class_balanced_focal,
                                      text_anchored_contrastive)
from training.losses.lovasz import IGNORE_INDEX, lovasz_softmax
from training.losses.occupancy import feature_mse, occupancy_loss
from training.losses.segmentation import weighted_cross_entropy


def _layers(x: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [x] if torch.is_tensor(x) else list(x)


def _vector(values: Any, name: str) -> Tensor | None:
    if values is None:
        return None
    return torch.as_tensor(values, dtype=torch.float32).reshape(-1)


class LovaszSoftmaxLoss(nn.Module):
    """Lovász-softmax on logits (N, C) (or a list of layers: their mean) vs labels (N,)."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, classes: str = 'present') -> None:
        super().__init__()
        self.ignore_index, self.classes = ignore_index, classes

    def forward(self, logits: Tensor | Sequence[Tensor], labels: Tensor) -> Tensor:
        layers = _layers(logits)
        return sum(lovasz_softmax(F.softmax(z, dim=-1), labels, self.ignore_index, self.classes)
                   for z in layers) / len(layers)


class CrossEntropyLoss(nn.Module):
    """(Weighted) CE; weights given directly (``class_weights``) or from ``class_counts`` (Eq. 19 weights)."""

    def __init__(self, class_weights: Sequence[float] | None = None,
                 class_counts: Sequence[float] | None = None, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if class_weights is not None and class_counts is not None:
            raise ValueError('give class_weights or class_counts, not both')
        weights = _vector(class_weights, 'class_weights')
        if class_counts is not None:
            weights = class_weights_from_counts(class_counts)
        self.register_buffer('class_weights', weights, persistent=False)
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor | Sequence[Tensor], labels: Tensor) -> Tensor:
        layers = _layers(logits)
        return sum(weighted_cross_entropy(z, labels, self.class_weights, self.ignore_index)
                   for z in layers) / len(layers)


class VisibleKLLoss(nn.Module):
    """Affinity3D Eq. 15-16 over one layer or a list of layers (mean over layers)."""

    def __init__(self, direction: str = 'fused_to_3d', detach_target: bool = True) -> None:
        super().__init__()
        self.direction, self.detach_target = direction, detach_target

    def forward(self, logits_3d: Tensor | Sequence[Tensor], logits_fused: Tensor | Sequence[Tensor],
                visible: Tensor) -> Tensor:
        return visible_kl_layers(_layers(logits_3d), _layers(logits_fused), visible, self.direction,
                                 self.detach_target)


class OccupancyLoss(nn.Module):
    """POP-3D Eq. 4: {'ce', 'lovasz', 'total'} on (X, Y, Z, 2) logits vs the dense (X, Y, Z) target."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, classes: str = 'present') -> None:
        super().__init__()
        self.ignore_index, self.classes = ignore_index, classes

    def forward(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        return occupancy_loss(logits, target, self.ignore_index, self.classes)


class FeatureMSELoss(nn.Module):
    """POP-3D Eq. 7 at the masked (camera) points."""

    def forward(self, predicted: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return feature_mse(predicted, target, mask)


class PredictionConsistencyLoss(nn.Module):
    """CNS prediction consistency (our form: symmetric KL at point/pixel pairs)."""

    def __init__(self, detach: str | None = None) -> None:
        super().__init__()
        self.detach = detach

    def forward(self, logits_2d: Tensor, logits_3d: Tensor, pair_mask: Tensor | None = None) -> Tensor:
        return prediction_consistency(logits_2d, logits_3d, pair_mask, self.detach)


class LatentConsistencyLoss(nn.Module):
    """CNS latent consistency (our form: region-pooled InfoNCE or cosine in the K_f = 64 space)."""

    def __init__(self, mode: str = 'infonce', temperature: float = LATENT_TEMPERATURE) -> None:
        super().__init__()
        self.mode, self.temperature = mode, temperature

    def forward(self, latents_2d: Tensor, regions_2d: Tensor, latents_3d: Tensor, regions_3d: Tensor,
                region_latents: Tensor) -> dict[str, Tensor]:
        return latent_consistency(latents_2d, regions_2d, latents_3d, regions_3d, region_latents,
                                  self.mode, self.temperature)


class TextContrastiveLoss(nn.Module):
    """ScanNet200 Eq. 1-3; negatives from ``generator`` if the batch gives one, else torch's global RNG."""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        known = {f.name for f in fields(ContrastiveConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise TypeError(f'unknown contrastive parameters {unknown}; known {sorted(known)}')
        self.config = ContrastiveConfig(**config)

    def forward(self, features: Tensor, labels: Tensor, anchors: Tensor, negatives: Tensor | None = None,
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        return text_anchored_contrastive(features, labels, anchors, self.config, negatives, generator)


class FocalLoss(nn.Module):
    """ScanNet200 Eq. 4-5 C-Focal; α given, or from ``class_counts`` with the ``direction`` flag, or none."""

    def __init__(self, gamma: float = FOCAL_GAMMA, alpha: Sequence[float] | None = None,
                 class_counts: Sequence[float] | None = None, direction: str = 'paper',
                 ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if alpha is not None and class_counts is not None:
            raise ValueError('give alpha or class_counts, not both')
        a = _vector(alpha, 'alpha')
        if class_counts is not None:
            a = class_balanced_alpha(class_counts, direction)
        self.register_buffer('alpha', a, persistent=False)
        self.gamma, self.ignore_index = gamma, ignore_index

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return class_balanced_focal(logits, labels, self.alpha, self.gamma, self.ignore_index)


class InstanceLoss(nn.Module):
    """UnScene3D Hungarian + Dice/BCE + objectness + DropLoss, averaged over the scenes of a batch.

    Inputs are per-scene lists (or single tensors for one scene): mask logits (K, N_b), objectness (K,),
    pseudo masks (M_b, N_b).
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        known = {f.name for f in fields(InstanceLossConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise TypeError(f'unknown instance-loss parameters {unknown}; known {sorted(known)}')
        self.config = InstanceLossConfig(**config)

    def forward(self, mask_logits: Tensor | Sequence[Tensor], objectness_logits: Tensor | Sequence[Tensor],
                targets: Tensor | Sequence[Tensor]) -> dict[str, Tensor]:
        return batch_instance_losses(_scenes(mask_logits, 2), _scenes(objectness_logits, 1),
                                     _scenes(targets, 2), self.config)


def _scenes(x: Tensor | Sequence[Tensor], scene_ndim: int) -> list[Tensor]:
    """Return a list of per-scene tensors from a list, one scene's tensor, or a batched (B, ...) tensor."""
    if torch.is_tensor(x):
        return list(x) if x.ndim == scene_ndim + 1 else [x]
    return list(x)
