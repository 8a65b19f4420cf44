"""CNS (label-free, supplement only): a 2D and the 3D network trained together from CLIP pseudo-labels.

Networks: the 3D student, a DeepLabV3 2D net with 512-d (= C) per-pixel features (random init here) and
the latent maps θ_f (2D), φ_f (3D), ϕ_f (region) into K_f = 64 dimensions [P, supplement]. lr 0.1 [P].
Both networks classify with the text embeddings (cosine, scale s). The loss (forms are OURS; the main
paper's are not in our copy, see ``training.losses.consistency``)::

    L = CE(3D logits, PL) + CE(2D logits at the points' pixels, PL)
        + symmetric KL(2D, 3D predictions at point/pixel pairs)            (prediction consistency)
        + region-pooled InfoNCE of θ_f(F_2D), φ_f(F_3D) with ϕ_f(F_region)   (latent consistency)

Choices: the 2D net is supervised at the pixels the visible points project to (the store holds point
labels, not per-pixel ones), and its latents are pooled over those pixels, per region; a region's feature
is ``region_features`` from the store (SAM) when given, else the mean fused teacher feature of its points
(``region_source: teacher``); φ_f reads the point embeddings (out_dim wide). DeepLabV3's image-pooling
branch normalises a (B, 256, 1, 1) tensor, which BatchNorm cannot do in training mode for one image: that
one BatchNorm stays in eval mode (an affine map with its initial statistics), the rest trains normally.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from perception_nodes.classify import cosine_logits
from training.losses import LossSpec
from training.losses.consistency import CNS_LATENT_DIM, LATENT_TEMPERATURE, pool_by_region
from training.losses.recipes import CNS_WEIGHTS
from training.models import CNS2DNet, LatentConfig, LatentProjections
from training.models.cns_2d import pixels_at
from training.recipes.base import Recipe, RecipeError, RecipeParams

IMAGE_FIELDS = frozenset({'images', 'uv', 'image_index', 'regions'})


@dataclass
class CNSParams(RecipeParams):
    """CNS constants (K_f, lr in the optim section) and our loss-form choices."""

    ce_3d: float = CNS_WEIGHTS['ce_3d']
    ce_2d: float = CNS_WEIGHTS['ce_2d']
    prediction_consistency: float = CNS_WEIGHTS['prediction_consistency']
    latent_consistency: float = CNS_WEIGHTS['latent_consistency']
    latent_dim: int = CNS_LATENT_DIM              # K_f = 64 [P]
    latent_mode: str = 'infonce'
    temperature: float = LATENT_TEMPERATURE
    backbone_2d: str = 'resnet50'                 # DeepLabV3 [P]; depth ours
    image_weights: str | None = None
    region_source: str = 'auto'                   # auto | store | teacher


class CNSRecipe(Recipe):
    """CNS co-training (module docstring)."""

    name = 'cns'
    Params = CNSParams
    student_note = 'both students'

    def __init__(self, params: CNSParams, student_config, info, class_counts, seed: int = 0,
                 phases=None) -> None:
        super().__init__(params, student_config, info, class_counts, seed, phases)
        if params.region_source not in ('auto', 'store', 'teacher'):
            raise RecipeError(f'cns region_source must be auto, store or teacher, '
                              f'got {params.region_source!r}')
        self.region_source = params.region_source
        if self.region_source == 'auto':
            self.region_source = 'store' if 'region_features' in info.fields else 'teacher'
        c = student_config.embed_dim
        self.net2d = CNS2DNet(out_dim=c, backbone=params.backbone_2d)
        if params.image_weights:
            self.net2d.load_imagenet_backbone(params.image_weights)
        dim_region = c
        if self.region_source == 'store':
            dim_region = int(info.extra.get('region_feature_dim', 256))
        self.latents = LatentProjections(LatentConfig(dim_2d=c, dim_3d=student_config.out_dim,
                                                      dim_region=dim_region, latent_dim=params.latent_dim))
        self.train()

    def train(self, mode: bool = True) -> CNSRecipe:
        super().train(mode)
        for module in self.net2d.modules():
            if type(module).__name__ == 'ASPPPooling':
                for sub in module.modules():
                    if isinstance(sub, nn.BatchNorm2d):
                        sub.eval()
        return self

    def required_fields(self) -> frozenset[str]:
        extra = ({'region_features'} if self.region_source == 'store'
                 else {'teacher_index', 'teacher_features'})
        return IMAGE_FIELDS | extra

    def trainable_modules(self) -> list[tuple[str, nn.Module]]:
        return super().trainable_modules() + [('net2d', self.net2d), ('latents', self.latents)]

    def loss_specs(self, p: CNSParams) -> list[LossSpec]:
        return [
            LossSpec('ce_3d', 'cross_entropy', p.ce_3d, {'logits': 'logits_3d', 'labels': 'labels'}),
            LossSpec('ce_2d', 'cross_entropy', p.ce_2d, {'logits': 'logits_2d', 'labels': 'labels_2d'}),
            LossSpec('prediction_consistency', 'prediction_consistency', p.prediction_consistency,
                     {'logits_2d': 'logits_2d', 'logits_3d': 'pair_logits_3d'}),
            LossSpec('latent_consistency', 'latent_consistency', p.latent_consistency, {},
                     {'mode': p.latent_mode, 'temperature': p.temperature}),
        ]

    def _region_features(self, frame) -> torch.Tensor:
        num = int(frame.regions.max()) + 1 if frame.regions.numel() and int(frame.regions.max()) >= 0 else 0
        if self.region_source == 'store':
            return frame.region_features.float()
        ti = frame.teacher_index
        pooled, _ = pool_by_region(frame.teacher_features.float(), frame.regions[ti], max(num, 1))
        return pooled

    def frame_inputs(self, frame, generator: torch.Generator) -> dict[str, Any]:
        out = self.student(frame.points, voxel_features=False)
        emb = out.point_embeddings
        labels = torch.where(out.valid, frame.labels, torch.full_like(frame.labels, -1))
        logits_3d = self.logits(emb)
        pairs = torch.nonzero((frame.image_index >= 0) & frame.visible & out.valid).squeeze(1)
        feats2d = self.net2d(frame.images)
        h, w = feats2d.shape[-2:]
        uv = frame.uv[pairs]
        cols = uv[:, 0].round().long().clamp(0, w - 1)
        rows = uv[:, 1].round().long().clamp(0, h - 1)
        f2d = pixels_at(feats2d, frame.image_index[pairs], rows, cols)          # (P, C)
        logits_2d = cosine_logits(f2d, self.text, self.params.logit_scale)
        regions = frame.regions
        region_feats = self._region_features(frame)
        z2d, z3d, zr = self.latents(f2d, emb, region_feats)
        return {'logits_3d': logits_3d, 'labels': labels, 'logits_2d': logits_2d, 'labels_2d': labels[pairs],
                'pair_logits_3d': logits_3d[pairs], 'latents_2d': z2d, 'regions_2d': regions[pairs],
                'latents_3d': z3d,
                'regions_3d': torch.where(out.valid, regions, torch.full_like(regions, -1)),
                'region_latents': zr}

    def memory_parts(self, frames):
        from training.engine.memory import DEEPLABV3_FLOATS_PER_PIXEL, image_encoder_bytes
        parts = super().memory_parts(frames)
        fpp = DEEPLABV3_FLOATS_PER_PIXEL.get(self.base_params.backbone_2d, 1500.0)
        parts['2D network'] = sum(image_encoder_bytes(1, 1, px, fpp) for _, px in frames)
        return parts
