"""Affinity3D (Sec. 3.6-3.7): text-classifier student, L_3D = α·Lovász + weighted CE, visible-only KT.

    Y_3D = softmax(s · cos(F_3D, EMB))                       (Eq. 18, the student's own head)
    L_3D = α · Lovász(Y_3D, PL') + CE(Y_3D, PL', w)          (Eq. 19, α = 2, w from point frequencies)
    L    = L_3D + γ · L_learner                              (Eq. 20, γ = 0.05; Eq. 15-16 on visible points)

The knowledge-transfer branch (:class:`training.models.KnowledgeTransferBranch`: ResNet-34, 2D learner,
gated fusion Eq. 11-12, heads Eq. 13-14) reads two student layers: the per-point features entering the
language head (``point_width``) and the point embeddings (``out_dim``), each projected to the text width
(our choice of layers: the student's last two per-point stages; the paper uses SPVCNN's decoder layers).
The branch is a sibling of the student inside the recipe, so it is never part of the exported student.
Its fused prediction is trained by CE at visible points (2DPASS λ_seg2d = 1; the paper is silent).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.class_stats import CLASS_WEIGHT_POWER, class_weights_from_counts
from training.losses import LossSpec
from training.losses.knowledge_transfer import AFFINITY3D_GAMMA
from training.losses.recipes import FUSED_SEGMENTATION_WEIGHT
from training.losses.segmentation import AFFINITY3D_ALPHA
from training.models import KnowledgeTransferBranch, KnowledgeTransferConfig
from training.models.taps import PointFeatureTap
from training.recipes.base import Recipe, RecipeParams

IMAGE_FIELDS = frozenset({'images', 'uv', 'image_index'})


@dataclass
class Affinity3DParams(RecipeParams):
    """Eq. 19-20 constants and the KT branch settings (``knowledge_transfer: false`` is the ablation)."""

    alpha: float = AFFINITY3D_ALPHA                  # Eq. 19 [P]
    gamma: float = AFFINITY3D_GAMMA                  # Eq. 20 [P]
    ce_weight: float = 1.0                           # Eq. 19: CE enters with weight 1 [P]
    fused_weight: float = FUSED_SEGMENTATION_WEIGHT  # ours (2DPASS)
    class_weight_power: float = CLASS_WEIGHT_POWER   # ours (2DPASS): w_c = (max f / f_c) ** power
    lovasz_classes: str = 'present'                  # Berman's default; paper silent
    knowledge_transfer: bool = True
    kl_direction: str = 'fused_to_3d'                # ours (2DPASS code); paper's KL order undefined
    detach_target: bool = True
    image_stages: tuple[int, int] = (2, 3)           # ResNet-34 stages paired with the two point layers
    image_weights: str | None = None                 # local torchvision ResNet-34 ImageNet weights


class Affinity3DRecipe(Recipe):
    """Affinity3D student training (module docstring)."""

    name = 'affinity3d'
    Params = Affinity3DParams
    student_note = 'both students: the KT branch only reads per-point features'

    def __init__(self, params: Affinity3DParams, student_config, info, class_counts, seed: int = 0,
                 phases=None) -> None:
        super().__init__(params, student_config, info, class_counts, seed, phases)
        self.branch: KnowledgeTransferBranch | None = None
        if params.knowledge_transfer:
            cfg = student_config
            self.branch = KnowledgeTransferBranch(KnowledgeTransferConfig(
                point_channels=(cfg.point_width, cfg.out_dim), image_stages=tuple(params.image_stages),
                embed_dim=cfg.embed_dim, logit_scale=params.logit_scale, project_3d=True))
            if params.image_weights:
                self.branch.encoder.load_imagenet(params.image_weights)
        self.class_weights = class_weights_from_counts(self.class_counts, params.class_weight_power).tolist()

    def required_fields(self) -> frozenset[str]:
        return IMAGE_FIELDS if self.base_params.knowledge_transfer else frozenset()

    def trainable_modules(self) -> list[tuple[str, nn.Module]]:
        mods = super().trainable_modules()
        return mods + [('kt_branch', self.branch)] if self.branch is not None else mods

    def loss_specs(self, p: Affinity3DParams) -> list[LossSpec]:
        specs = [
            LossSpec('lovasz', 'lovasz_softmax', p.alpha, {'logits': 'logits_3d', 'labels': 'labels'},
                     {'classes': p.lovasz_classes}),
            LossSpec('ce', 'cross_entropy', p.ce_weight, {'logits': 'logits_3d', 'labels': 'labels'},
                     {'class_weights': self.class_weights}),
        ]
        if self.branch is not None:
            specs += [
                LossSpec('kt_kl', 'visible_kl', p.gamma,
                         {'logits_3d': 'kt_logits_3d', 'logits_fused': 'kt_logits_fused',
                          'visible': 'visible'},
                         {'direction': p.kl_direction, 'detach_target': p.detach_target}),
                LossSpec('fused_ce', 'cross_entropy', p.fused_weight,
                         {'logits': 'kt_logits_fused', 'labels': 'labels_visible'},
                         {'class_weights': self.class_weights}),
            ]
        return specs

    def frame_inputs(self, frame, generator: torch.Generator) -> dict[str, Any]:
        with PointFeatureTap(self.student) as tap:
            out = self.student(frame.points, voxel_features=False)
        emb = out.point_embeddings
        labels = torch.where(out.valid, frame.labels, torch.full_like(frame.labels, -1))
        inputs: dict[str, Any] = {'logits_3d': self.logits(emb), 'labels': labels}
        if self.branch is not None:
            kt = self.branch(frame.images, [tap.features, emb], frame.uv, frame.image_index, self.text)
            visible = frame.visible & (frame.image_index >= 0) & out.valid       # Eq. 16, inside the crop
            inputs.update(kt_logits_3d=kt.logits_3d, kt_logits_fused=kt.logits_fused, visible=visible,
                          labels_visible=torch.where(visible, labels, torch.full_like(labels, -1)))
        return inputs

    def memory_parts(self, frames):
        from training.engine.memory import RESNET34_FLOATS_PER_PIXEL, image_encoder_bytes
        parts = super().memory_parts(frames)
        if self.branch is not None:
            parts['image encoder'] = sum(image_encoder_bytes(1, 1, px, RESNET34_FLOATS_PER_PIXEL)
                                         for _, px in frames)
        return parts
