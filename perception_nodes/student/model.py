"""The student network: a backbone (sparse voxel U-Net or range-view U-Net) plus the shared heads."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from perception_nodes.student.config import FEATURE_COLUMNS, StudentConfig
from perception_nodes.student.heads import PointLanguageHead, VoxelHeads
from perception_nodes.student.range_view import POSITION_SCALE, RangeBackbone


@dataclass
class StudentOutput:
    """What a student predicts for one scan.

    point_embeddings: (N, D) unit vectors (D = C, or K with a projection); rows of invalid points are
                      not meaningful (the head applied to zero features): select with ``valid``.
    occupancy_logits: (X, Y, Z, 2) (free, occupied) logits on ``config.grid`` (POP-3D Eq. 2).
    voxel_features:   (X, Y, Z, C) language features per voxel (POP-3D Eq. 3), or None when not asked.
    valid:            (N,) bool, the points the network used (finite and unmasked).
    """

    point_embeddings: torch.Tensor
    occupancy_logits: torch.Tensor
    voxel_features: torch.Tensor | None
    valid: torch.Tensor


class Student(nn.Module):
    """forward(points (N, >=4) float, mask (N,) optional) -> StudentOutput."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        if config.arch == 'range_unet':
            self.backbone: nn.Module = RangeBackbone(config)
        else:
            from perception_nodes.student.sparse_unet import SparseBackbone  # spconv only when needed
            self.backbone = SparseBackbone(config)
        self.language = PointLanguageHead(config.point_width, config)
        self.voxel_heads = VoxelHeads(self.backbone.sample_width, config)
        self.register_buffer('_columns', torch.tensor([FEATURE_COLUMNS[f] for f in config.input_features]),
                             persistent=False)
        scale = [1.0 / POSITION_SCALE if f in ('x', 'y', 'z') else 1.0 for f in config.input_features]
        self.register_buffer('_scale', torch.tensor(scale), persistent=False)

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None, *,
                voxel_features: bool = True) -> StudentOutput:
        if points.ndim != 2 or points.shape[1] < self.config.in_columns:
            raise ValueError(f'student expects points (N, >={self.config.in_columns}) for features '
                             f'{self.config.input_features}, got {tuple(points.shape)}')
        points = points.float()
        used = points[:, :self.config.in_columns]
        valid = torch.isfinite(used).all(dim=1)
        if mask is not None:
            if mask.shape != points.shape[:1]:
                raise ValueError(f'mask shape {tuple(mask.shape)} does not match {points.shape[0]} points')
            valid = valid & (mask > 0.5 if mask.is_floating_point() else mask.bool())
        used = torch.where(valid.unsqueeze(1), used, torch.zeros_like(used))
        xyz = used[:, :3]
        inputs = used.index_select(1, self._columns) * self._scale
        feats, samples = self.backbone(inputs, xyz, valid)
        emb = self.language(feats)      # rows of invalid points are meaningless: use ``valid``
        occupancy, vox = self.voxel_heads(samples.xyz, samples.features, samples.valid,
                                          with_language=voxel_features)
        return StudentOutput(point_embeddings=emb, occupancy_logits=occupancy, voxel_features=vox,
                             valid=valid)

    def project_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Vocabulary text embeddings (V, C) -> classifier weights in the point-embedding space."""
        return self.language.project_text(text_embeddings)


def build_student(config: StudentConfig) -> Student:
    """Build a freshly initialised student for ``config``."""
    return Student(config)
