"""What every recipe shares: the student, the vocabulary, the per-frame loop and the evaluation.

A recipe is one ``nn.Module`` holding the student and its training-only modules, so that one
DistributedDataParallel wrapper, one state dict and one optimizer cover everything trained. Its
``forward(batch, step)`` runs the student on every frame of the batch (the students take one scan at a
time, as on the robot, so BatchNorm statistics are per scan), evaluates the recipe's
:class:`~training.losses.WeightedSumLoss` per frame and averages the frames: with equal frames per rank,
the DDP gradient mean is then exactly the single-process gradient of the global batch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from perception_nodes.classify import classify, cosine_logits
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.student.config import StudentConfig
from perception_nodes.student.model import Student, build_student
from training.data.sample import Batch, FrameSample, StoreInfo
from training.engine.distributed import mix_seed
from training.engine.memory import student_activation_bytes
from training.losses import LossSpec, NonFiniteLossError, WeightedSumLoss
from training.losses.common import DEFAULT_LOGIT_SCALE
from training.recipes.transforms import AugmentConfig, FrameTransform


class FrameLossError(NonFiniteLossError):
    """A non-finite loss term in one frame: ``term``, ``value`` and ``frame`` (its frame_id)."""

    def __init__(self, term: str, value: float, frame: str) -> None:
        super().__init__(term, value)
        self.frame = frame
        self.args = (f'loss term {term!r} is not finite ({value}) in frame {frame}',)


class RecipeError(ValueError):
    """A recipe that cannot run with this config, student or store; the message says why."""


@dataclass
class RecipeParams:
    """Constants every recipe has (recipes subclass this with their paper's constants)."""

    name: str = ''
    logit_scale: float = DEFAULT_LOGIT_SCALE   # s in s · cos(f, t) (CLIP's 100; Affinity3D Eq. 13/18)


@dataclass
class PhaseContext:
    """What a recipe's phase-start action may use (the trainer passes it)."""

    train_set: Any
    device: torch.device
    env: Any
    phase: int
    log: Any = print


class Recipe(nn.Module):
    """Base recipe: student + per-frame loss + evaluation (subclasses set the class attributes)."""

    name: ClassVar[str] = ''
    Params: ClassVar[type[RecipeParams]] = RecipeParams
    #: deployable students it supports, with the reason for any it does not
    students: ClassVar[tuple[str, ...]] = ('sparse_unet', 'range_unet')
    student_note: ClassVar[str] = ''

    def __init__(self, params: RecipeParams, student_config: StudentConfig, info: StoreInfo,
                 class_counts: Tensor, seed: int = 0, phases: list[Any] | None = None) -> None:
        super().__init__()
        supported = self.supported_students(params)
        if student_config.arch not in supported:
            raise RecipeError(f'recipe {self.name} does not support the {student_config.arch} student '
                              f'(supported: {list(supported)}): {self.student_note}')
        if student_config.embed_dim != info.embed_dim:
            raise RecipeError(f'student.embed_dim {student_config.embed_dim} differs from the store\'s text '
                              f'embedding width {info.embed_dim} (the teacher\'s CLIP space)')
        self.params = params
        self.base_params = params
        self.info = info
        self.seed = int(seed)
        self.phase_configs = list(phases or [])
        self.student: Student = build_student(student_config)
        self.register_buffer('text', info.text_embeddings.clone().float(), persistent=False)
        self.class_counts = torch.as_tensor(class_counts, dtype=torch.int64)
        self.criterion: WeightedSumLoss | None = None

    # ------------------------------------------------------------------------------- configuration
    @classmethod
    def supported_students(cls, params: RecipeParams) -> tuple[str, ...]:
        """Student archs this recipe trains (``allow_range_student`` lifts a scene-cloud restriction)."""
        if getattr(params, 'allow_range_student', False):
            return ('sparse_unet', 'range_unet')
        return cls.students

    @classmethod
    def make_params(cls, data: dict[str, Any], where: str = 'recipe') -> RecipeParams:
        """Build the recipe's Params dataclass from the ``recipe:`` section (unknown keys are errors)."""
        known = {f.name for f in fields(cls.Params)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecipeError(f'{where}: unknown key(s) {unknown} for recipe {cls.name}; '
                              f'known {sorted(known)}')
        try:
            return cls.Params(**data)
        except (TypeError, ValueError) as exc:
            raise RecipeError(f'{where}: {exc}') from exc

    def required_fields(self) -> frozenset[str]:
        """Return the optional FrameSample fields the store must provide for this recipe and params."""
        return frozenset()

    def used_fields(self) -> frozenset[str]:
        """Return the optional fields the training transform keeps (the rest are dropped before collation)."""
        return self.required_fields()

    def trains_point_semantics(self) -> bool:
        """Tell whether the point embeddings the robot classifies are trained towards the vocabulary."""
        return True

    def loss_specs(self, params: RecipeParams) -> list[LossSpec]:
        raise NotImplementedError

    def set_phase(self, overrides: dict[str, Any]) -> None:
        """Apply a phase's ``recipe:`` overrides and rebuild the loss (its modules hold no parameters)."""
        merged = {**asdict(self.base_params), **overrides}
        self.params = self.make_params(merged, 'phase recipe overrides')
        self.criterion = WeightedSumLoss(self.loss_specs(self.params)).to(self.text.device)

    def transform(self, augment: AugmentConfig) -> FrameTransform:
        """Return the loader-side transform of this recipe."""
        return FrameTransform(augment, self.used_fields())

    def prepare(self, train_set: Any) -> None:
        """One-time preparation from the training set before the first phase (none by default)."""

    def on_phase_start(self, context: PhaseContext, action: str | None) -> None:
        """Run a phase's start ``action`` (none by default)."""
        if action is not None:
            raise RecipeError(f'recipe {self.name} has no phase action {action!r}')

    def trainable_modules(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of everything the optimizer updates (``optim.lr_scale`` keys)."""
        return [('student', self.student)]

    # --------------------------------------------------------------------------------------- state
    def state_tensors(self) -> dict[str, Tensor]:
        """Recipe state beyond module weights (tensors), saved in checkpoints."""
        return {}

    def state_json(self) -> dict[str, Any]:
        return {}

    def load_recipe_state(self, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
        """Restore :meth:`state_tensors` / :meth:`state_json`."""

    # ------------------------------------------------------------------------------------- forward
    def text_weights(self) -> Tensor:
        """Return the classifier weights: the vocabulary through the student's text projection (unit rows)."""
        return self.student.project_text(self.text)

    def logits(self, embeddings: Tensor) -> Tensor:
        """Affinity3D Eq. 18: s · cos(F_3D, EMB) with the package's one classifier."""
        return cosine_logits(embeddings, self.text_weights(), self.params.logit_scale)

    def frame_inputs(self, frame: FrameSample, generator: torch.Generator) -> dict[str, Any]:
        """Run the networks on one frame and return the criterion's batch dict."""
        raise NotImplementedError

    def forward(self, batch: Batch, step: int) -> dict[str, Any]:
        """Mean over the batch's frames of the per-frame loss: {'total': tensor, 'terms': {name: tensor}}."""
        if self.criterion is None:
            raise RecipeError('set_phase() before training')
        totals: list[Tensor] = []
        terms: dict[str, list[Tensor]] = {}
        for b in range(len(batch)):
            frame = batch.frame(b)
            g = torch.Generator().manual_seed(mix_seed(self.seed, 31, step, batch.indices[b]))
            try:
                out = self.criterion(self.frame_inputs(frame, g))
            except NonFiniteLossError as exc:
                raise FrameLossError(exc.term, exc.value, frame.frame_id) from exc
            totals.append(out.total)
            for k, v in out.terms.items():
                terms.setdefault(k, []).append(v)
        return {'total': torch.stack(totals).mean(),
                'terms': {k: torch.stack(v).mean() for k, v in terms.items()}}

    # ---------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict(self, frame: FrameSample) -> dict[str, Tensor]:
        """Eval-mode prediction of one frame: {'labels': (N,) int64, UNKNOWN_LABEL where invalid}."""
        out = self.student(frame.points)
        cls = classify(out.point_embeddings, self.text_weights(), self.params.logit_scale, normalized=True)
        labels = torch.where(out.valid, cls.labels, torch.full_like(cls.labels, UNKNOWN_LABEL))
        return {'labels': labels}

    def memory_parts(self, frames: list[tuple[int, int]]) -> dict[str, float]:
        """Estimated bytes of a step over frames given as (points, image pixels) (engine.memory)."""
        parts: dict[str, float] = {}
        for n, _ in frames:
            for k, v in student_activation_bytes(self.student.config, n, self.uses_voxel_language()).items():
                parts[k] = parts.get(k, 0.0) + v
        return parts

    def uses_all_parameters(self) -> bool:
        """Tell whether every parameter gets a gradient each step (DDP skips its unused-parameter search)."""
        return False

    def uses_voxel_language(self) -> bool:
        """Tell whether the loss needs the dense voxel language features (POP-3D)."""
        return False


def with_overrides(params: RecipeParams, **kw: Any) -> RecipeParams:
    return replace(params, **kw)
