"""The training half of the offline loop that ``ovp demo`` runs: pseudo-label store, then a trained student.

``ovp demo`` (``perception_nodes.cli.demo``) loads this module by name (the runtime package never imports
``training``) and calls, in order:

1. :func:`make_store`: bags -> ``ovp pseudo-label`` (``training.store.build.build_store``) with the
   perception config it is given (``teacher.source: synthetic`` for the synthetic world) and the methods the
   recipe needs (:data:`RECIPE_METHODS`);
2. :func:`train_student`: ``ovp train`` (``training.engine.trainer.Trainer``) of the deployable student
   (``StudentConfig.deployable()``: range_unet, proj_dim 64) with a recipe (:data:`RECIPES`) for a fixed
   number of steps, validated at the end on a held-out store (the student's and the pseudo-labels' own mIoU
   on all, camera-visible and camera-invisible points); the checkpoint carries its trained vocabulary and
   text embeddings, so ``ovp export`` makes an ONNX file the student labeller runs without a CLIP.

Why affinity3d is the demo's default recipe: its loss (Eq. 19: α·Lovász + class-weighted CE on the
pseudo-labels) trains exactly the point classifier the robot runs (cosine to the class text embeddings
through the learned text projection), needs only point labels, and learns in a few hundred CPU steps; its
knowledge-transfer branch (a ResNet-34 on the images, training only) costs ~8x a step on a CPU, so the demo
turns it off (``recipe.knowledge_transfer=false``, the paper's "w/o KT" row). POP-3D trains the occupancy
head too, but its language features regress the teacher's (Eq. 7) and the point classifier learns much more
slowly here (bench/student_vs_teacher.py).

The labels are the teacher's own dense ("MC", MaskCLIP-like) labels (``dense``): the student learns from
what the 2D teacher says, as POP-3D (its MaskCLIP+ targets) and CNS (its 2D network) do, which is the
setting in which they report the student above its teacher. Affinity3D's own pseudo-labels (PL', the
``affinity3d`` method: crops and affinity propagation) are much cleaner on the synthetic world and cost
more to make; the bench measures both.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch

#: pseudo-label methods each demo recipe needs (dense: the teacher's labels and feature targets; pop3d: the
#: occupancy targets)
RECIPE_METHODS = {'affinity3d': 'dense', 'pop3d': 'dense,pop3d'}
#: the recipe settings of the demo's run (on top of config/training/<recipe>.yaml)
RECIPES: dict[str, list[str]] = {
    'affinity3d': ['student={preset: deployable}', 'recipe.knowledge_transfer=false', 'train.batch_size=1',
                   'augment.images=false'],
    'pop3d': ['train.batch_size=1'],
}


def make_store(bags: Sequence[str | os.PathLike], out: str | os.PathLike, config: Any,
               recipe: str = 'affinity3d', progress: bool = True) -> dict[str, Any]:
    """Pseudo-label ``bags`` into the store ``out`` (resumed if it exists); returns the store summary."""
    from training.store.build import build_store
    from training.store.config import pseudo_label_config

    if recipe not in RECIPE_METHODS:
        raise ValueError(f'demo recipe must be one of {sorted(RECIPE_METHODS)}, got {recipe!r}')
    method = pseudo_label_config({'methods': RECIPE_METHODS[recipe]})
    start = time.perf_counter()
    summary = build_store(list(bags), out, config, method, progress=progress)
    if summary is None:                                   # only with several ranks; not here
        raise RuntimeError(f'the store {out} is incomplete')
    summary['seconds'] = round(time.perf_counter() - start, 2)
    return summary


def train_overrides(recipe: str, steps: int, progress: bool) -> list[str]:
    """Return the ``--set`` overrides of the demo's training run (module docstring)."""
    if recipe not in RECIPES:
        raise ValueError(f'demo recipe must be one of {sorted(RECIPES)}, got {recipe!r}')
    if steps < 1:
        raise ValueError(f'training steps must be >= 1, got {steps}')
    warmup = [f'schedule.warmup_steps={min(50, steps // 5)}'] if recipe == 'pop3d' else []
    return RECIPES[recipe] + warmup + [
        f'phases=[{{name: train, steps: {int(steps)}}}]', 'data.num_workers=0', 'train.eval_every=1000000',
        'train.checkpoint_every=1000000', 'train.keep_checkpoints=1',
        f'train.progress={str(progress).lower()}', 'train.log_every=10']


def train_student(store: str | os.PathLike, val_store: str | os.PathLike | None, out: str | os.PathLike,
                  recipe: str = 'affinity3d', steps: int = 1000, progress: bool = True,
                  threads: int = 1) -> dict[str, Any]:
    """Train the deployable student on ``store`` into ``out``; returns the trainer's summary.

    ``threads``: torch intra-op threads while training (restored afterwards). One by default: on a shared
    2-core CPU two OpenMP threads collapse (measured 1.2 against 5.2 training frames/s under load), as
    ``runtime.torch_threads`` says for the pipeline.
    """
    from training.data import open_source
    from training.engine.config import load_config
    from training.engine.trainer import Trainer

    config = load_config(recipe, train_overrides(recipe, steps, progress))
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        train_set = open_source(str(store), 'train', config.data.reader)
        val_set = open_source(str(val_store), 'val', config.data.reader) if val_store else None
        start = time.perf_counter()
        summary = Trainer(config, train_set, out, val_set=val_set, log_to_stdout=progress).fit()
        summary['seconds'] = round(time.perf_counter() - start, 2)
    finally:
        torch.set_num_threads(previous)
    summary['checkpoint'] = str(Path(out) / 'student')
    return summary


__all__ = ['RECIPES', 'RECIPE_METHODS', 'make_store', 'train_overrides', 'train_student']
