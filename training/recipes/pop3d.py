"""POP-3D (Sec. 3.2): occupancy on the dense grid + language features regressed to the teacher.

    L_occ = CE(O_occ, T_occ) + Lovász(O_occ, T_occ)                  (Eq. 4, every voxel of the grid)
    L_ft  = ||T_ft - Õ_ft||² / (N · C)  at camera-visible points      (Eq. 7)
    L     = L_occ + λ · L_ft,  λ = 1                                  (Eq. 8)

Differences from the paper, on purpose: POP-3D's student sees the six CAMERAS (TPVFormer) and uses LiDAR
only for its targets; OUR student sees only the LiDAR sweep (the robot's 3D student), so the occupancy it
learns is "which voxels hold returns of this sweep", densified by the BEV context of the voxel heads, not
a camera-to-3D lifting. Õ_ft is read from the voxel language features of the voxel holding each point
(nearest voxel; the paper queries its TPV planes at the points). OUR ADDITION ``point_feature_weight``: a
cosine distillation of the point embeddings (what the robot classifies, Eq. 18) to the teacher features
through the student's text projection (the target is detached, so with ``proj_dim`` the projection keeps
its random initialisation here: a random linear map that roughly preserves angles; a learned one could
collapse both sides onto one direction); 0 gives the paper's loss alone (then the point head is untrained).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from perception_nodes.geometry.voxels import dense_occupancy
from perception_nodes.student.heads import unit
from training.losses import LossSpec, gather_voxel_features
from training.losses.occupancy import POP3D_LAMBDA
from training.recipes.base import Recipe, RecipeParams

TEACHER_FIELDS = frozenset({'teacher_index', 'teacher_features'})


@dataclass
class Pop3DParams(RecipeParams):
    """Eq. 4/8 constants; ``point_feature_weight`` is ours (module docstring)."""

    lam: float = POP3D_LAMBDA                # Eq. 8 [P]
    occupancy_weight: float = 1.0            # Eq. 8: L_occ enters with weight 1 [P]
    point_feature_weight: float = 1.0        # ours
    lovasz_classes: str = 'present'


class Pop3DRecipe(Recipe):
    """POP-3D student training (module docstring)."""

    name = 'pop3d'
    Params = Pop3DParams
    student_note = 'both students: the dense-grid heads are shared'

    def required_fields(self) -> frozenset[str]:
        return TEACHER_FIELDS

    def used_fields(self) -> frozenset[str]:
        return TEACHER_FIELDS | {'occupancy_target'}

    def uses_voxel_language(self) -> bool:
        return True

    def uses_all_parameters(self) -> bool:
        # the text projection gets no gradient (detached targets) and the point head none without its term
        return self.base_params.point_feature_weight > 0 and self.student.config.proj_dim is None

    def trains_point_semantics(self) -> bool:
        return self.base_params.point_feature_weight > 0

    def loss_specs(self, p: Pop3DParams) -> list[LossSpec]:
        specs = [LossSpec('occupancy', 'occupancy', p.occupancy_weight,
                          {'logits': 'occupancy_logits', 'target': 'occupancy_target'},
                          {'classes': p.lovasz_classes}),
                 LossSpec('feature', 'feature_mse', p.lam,
                          {'predicted': 'voxel_point_features', 'target': 'teacher_features',
                           'mask': 'camera_mask'})]
        if p.point_feature_weight > 0:
            specs.append(LossSpec('point_feature', 'cosine_distance', p.point_feature_weight,
                                  {'predicted': 'teacher_point_embeddings', 'target': 'teacher_targets',
                                   'mask': 'teacher_valid'}))
        return specs

    def frame_inputs(self, frame, generator: torch.Generator) -> dict[str, Any]:
        grid = self.student.config.grid
        out = self.student(frame.points, voxel_features=True)
        xyz = frame.points[:, :3]
        target = frame.occupancy_target
        if target is None:
            target = dense_occupancy(xyz, grid)
        elif tuple(target.shape) != tuple(grid.shape):
            raise ValueError(f'frame {frame.frame_id}: occupancy_target {tuple(target.shape)} is not on the '
                             f'student grid {grid.shape}')
        ti = frame.teacher_index
        teacher = frame.teacher_features.float()
        feats, inside = gather_voxel_features(out.voxel_features, xyz[ti], grid)
        valid = out.valid[ti]
        inputs: dict[str, Any] = {'occupancy_logits': out.occupancy_logits, 'occupancy_target': target,
                                  'voxel_point_features': feats, 'teacher_features': teacher,
                                  'camera_mask': inside & valid}
        if self.params.point_feature_weight > 0:
            inputs.update(teacher_point_embeddings=out.point_embeddings[ti],
                          teacher_targets=self.student.project_text(unit(teacher)), teacher_valid=valid)
        return inputs
