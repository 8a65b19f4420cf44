"""UnScene3D self-training (Sec. 3.2, Table 8): a class-agnostic query mask decoder on the student.

The decoder (:class:`training.models.QueryMaskDecoder`: K queries, masks by dot product with per-point
features, an objectness logit) reads the per-point features entering the student's language head. Per
scene its K predictions are matched to the pseudo masks by Hungarian matching on BCE + Dice (+ objectness)
costs and trained with BCE + Dice on the matched pairs, objectness BCE, and DropLoss (unmatched
predictions overlapping no pseudo mask by IoU >= τ_drop are not pushed to "no object")
(``training.losses.instance``; weights Mask3D's, τ_drop CutLER's 0.01, the paper gives neither).

Self-training cycles are phases: each phase after the first starts with ``action: mask_addition``, which
runs the model over the training frames and adds its confident predictions that are new by an IoU test to
the fixed initial pseudo masks M^0 (``training.self_training.mask_addition``; M^t = M^0 ∪ cycle t's
additions, ``keep_previous: true`` keeps earlier cycles' additions too). Every rank computes the additions
of every frame (identical weights give identical masks; no gather needed). The additions are saved in the
checkpoints. ``semantic_weight`` (ours, 0 = the paper): CE of the point logits to the pseudo-labels, to
also train the point head the robot classifies with. The decoder is a training-only module: the exported
student has no instance output.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from perception_nodes.metrics import SCANNET_MIN_REGION_SIZE
from training.data.sample import FrameSample
from training.losses import LossSpec
from training.losses.instance import InstanceLossConfig
from training.models import InstanceHeadConfig, QueryMaskDecoder
from training.models.taps import PointFeatureTap
from training.recipes.base import PhaseContext, Recipe, RecipeError, RecipeParams
from training.recipes.transforms import AugmentConfig, FrameTransform
from training.self_training import MaskAdditionConfig, mask_addition

_LOSS_KEYS = tuple(f.name for f in fields(InstanceLossConfig))   # declared once, in InstanceLossConfig


@dataclass
class UnScene3DParams(InstanceLossConfig, RecipeParams):
    """Decoder size, Mask Addition thresholds and the inherited matching / loss constants.

    The loss constants (Mask3D / CutLER defaults) are declared once, as the fields of
    :class:`~training.losses.instance.InstanceLossConfig`.
    """

    num_queries: int = 32
    hidden: int = 64
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 128
    top_k: int = 20
    min_score: float = 0.5
    add_mask_threshold: float = 0.5
    min_size: int = 8
    max_iou: float = 0.25
    keep_previous: bool = False
    semantic_weight: float = 0.0
    allow_range_student: bool = False
    eval_min_region_size: int = SCANNET_MIN_REGION_SIZE   # ScanNet benchmark's minimum instance size (points)


@dataclass
class AddMasks:
    """Loader-side: append this cycle's added masks of frame ``index`` to its pseudo masks M^0."""

    added: dict[int, torch.Tensor]

    def __call__(self, sample: FrameSample, rng: Any, index: int) -> FrameSample:
        extra = self.added.get(int(index))
        if extra is None or extra.shape[0] == 0:
            return sample
        if extra.shape[1] != sample.num_points:
            raise RecipeError(f'frame {sample.frame_id}: saved added masks cover {extra.shape[1]} points, '
                              f'the frame has {sample.num_points} (the store changed since the cycle)')
        sample.pseudo_masks = torch.cat([sample.pseudo_masks, extra.bool()])
        return sample


class UnScene3DRecipe(Recipe):
    """Class-agnostic instance self-training (module docstring)."""

    name = 'unscene3d'
    Params = UnScene3DParams
    students = ('sparse_unet',)
    student_note = ('its data are scene clouds (indoor reconstructions / accumulated sweeps) that a single '
                    'range image cannot hold, and its decoder is not exported; train the sparse student '
                    '(set recipe.allow_range_student for single sweeps)')

    def __init__(self, params: UnScene3DParams, student_config, info, class_counts, seed: int = 0,
                 phases=None) -> None:
        super().__init__(params, student_config, info, class_counts, seed, phases)
        self.head = QueryMaskDecoder(InstanceHeadConfig(
            in_dim=student_config.point_width, hidden=params.hidden, num_queries=params.num_queries,
            num_layers=params.num_layers, num_heads=params.num_heads, ffn_dim=params.ffn_dim))
        self.added: dict[int, torch.Tensor] = {}
        self.cycles_done = 0

    def required_fields(self) -> frozenset[str]:
        return frozenset({'pseudo_masks'})

    def trains_point_semantics(self) -> bool:
        return self.base_params.semantic_weight > 0

    def trainable_modules(self) -> list[tuple[str, nn.Module]]:
        return super().trainable_modules() + [('instance_head', self.head)]

    def loss_specs(self, p: UnScene3DParams) -> list[LossSpec]:
        specs = [LossSpec('instance', 'instance', 1.0,
                          {'mask_logits': 'mask_logits', 'objectness_logits': 'objectness_logits',
                           'targets': 'pseudo_masks'}, {k: getattr(p, k) for k in _LOSS_KEYS})]
        if p.semantic_weight > 0:
            specs.append(LossSpec('semantic_ce', 'cross_entropy', p.semantic_weight,
                                  {'logits': 'logits_3d', 'labels': 'labels'}))
        return specs

    def transform(self, augment: AugmentConfig) -> FrameTransform:
        t = super().transform(augment)
        t.extra_indexed = AddMasks(dict(self.added))
        return t

    def frame_inputs(self, frame: FrameSample, generator: torch.Generator) -> dict[str, Any]:
        with PointFeatureTap(self.student) as tap:
            out = self.student(frame.points, voxel_features=False)
        pred = self.head(tap.features, out.valid)
        inputs: dict[str, Any] = {'mask_logits': [pred.mask_logits],
                                  'objectness_logits': [pred.objectness_logits],
                                  'pseudo_masks': [frame.pseudo_masks & out.valid[None]]}
        if self.params.semantic_weight > 0:
            inputs['logits_3d'] = self.logits(out.point_embeddings)
            inputs['labels'] = torch.where(out.valid, frame.labels, torch.full_like(frame.labels, -1))
        return inputs

    @torch.no_grad()
    def predict(self, frame: FrameSample) -> dict[str, torch.Tensor]:
        """Labels (as the base) plus class-agnostic masks (Q, N) bool and their objectness scores (Q,)."""
        with PointFeatureTap(self.student) as tap:
            out = self.student(frame.points, voxel_features=False)
        pred = self.head(tap.features, out.valid)
        base = super().predict(frame)
        base['masks'] = pred.mask_logits.sigmoid() > self.params.mask_threshold
        base['scores'] = pred.objectness_logits.sigmoid()
        return base

    def on_phase_start(self, context: PhaseContext, action: str | None) -> None:
        if action is None:
            return
        if action != 'mask_addition':
            raise RecipeError(f'recipe unscene3d has no phase action {action!r} (known: mask_addition)')
        p = self.params
        cfg = MaskAdditionConfig(top_k=p.top_k, min_score=p.min_score, mask_threshold=p.add_mask_threshold,
                                 min_size=p.min_size, max_iou=p.max_iou)
        was = self.training
        self.eval()
        added: dict[int, torch.Tensor] = {}
        total = 0
        try:
            for i in range(len(context.train_set)):
                frame = context.train_set[i]
                pts = frame.points.to(context.device)
                with PointFeatureTap(self.student) as tap:
                    out = self.student(pts, voxel_features=False)
                pred = self.head(tap.features, out.valid)
                previous = self.added.get(i) if p.keep_previous else None
                res = mask_addition(frame.pseudo_masks.to(context.device), pred.mask_logits,
                                    pred.objectness_logits, cfg,
                                    None if previous is None else previous.to(context.device))
                new = res.masks[res.num_original:].cpu()
                if new.shape[0]:
                    added[i] = new
                total += int(res.added.numel())
        finally:
            self.train(was)
        self.added = added
        self.cycles_done += 1
        kept = sum(v.shape[0] for v in added.values())
        context.log(f'unscene3d: mask addition before cycle {self.cycles_done + 1}: {total} masks added over '
                    f'{len(context.train_set)} frames ({kept} in M^t minus M^0)')

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f'added.{i}': m.to(torch.uint8) for i, m in self.added.items()}

    def state_json(self) -> dict[str, Any]:
        return {'cycles_done': self.cycles_done}

    def load_recipe_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self.added = {int(k.split('.', 1)[1]): v.bool() for k, v in tensors.items() if k.startswith('added.')}
        self.cycles_done = int(state.get('cycles_done', 0))

    def memory_parts(self, frames):
        parts = super().memory_parts(frames)
        q = self.base_params.num_queries
        parts['instance masks'] = sum(n * q * 4 * 8.0 for n, _ in frames)
        return parts
