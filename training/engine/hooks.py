"""Trainer hooks (Pointcept style): checkpointing, logging (JSONL, PNG curves, tqdm), evaluation.

A hook implements any of ``before_train``, ``after_step(result)``, ``after_epoch``, ``after_phase``,
``after_train``; the trainer calls them in list order on every rank (each hook decides what rank 0 alone
does). Files written under the run folder::

    log.jsonl         one line per ``train.log_every`` steps: step, phase, epoch, lr, the mean loss and every
                      WeightedSumLoss term over the window, frames/s, grad norm (global means over ranks)
    validation.jsonl  one line per validation: the student's mIoU / accuracy on all, camera-visible and
                      camera-invisible points, the pseudo-labels' own (the teacher), instance AP if predicted
    loss_curves.png   every term and the lr against the step; val_curves.png the validation mIoUs
    train.log         the messages printed
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from perception_nodes.atomic import atomic_write, atomic_write_text
from perception_nodes.outputs import UNKNOWN_LABEL

if TYPE_CHECKING:  # pragma: no cover
    from training.engine.trainer import StepResult, Trainer


PLOT_INTERVAL_S = 60.0   # the curves are redrawn at most this often during training (and at the end)


class Hook:
    """No-op base hook."""

    def before_train(self, trainer: Trainer) -> None:
        """Run once before the first step (after a resume: before the first new step)."""

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        """Run after every optimizer step."""

    def after_epoch(self, trainer: Trainer) -> None:
        """Run after the last step of every epoch."""

    def after_phase(self, trainer: Trainer) -> None:
        """Run after the last step of every phase."""

    def after_train(self, trainer: Trainer) -> None:
        """Run once at the end."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of a log (empty list when the file does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines() if line.strip()]


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines logged after ``step`` (a resumed run logs those steps again)."""
    if path.is_file():
        keep = [r for r in read_jsonl(path) if int(r.get('step', 0)) <= step]
        atomic_write_text(path, ''.join(json.dumps(r) + '\n' for r in keep))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, 'a', encoding='utf-8') as f:
        f.write(json.dumps(record) + '\n')


class CheckpointHook(Hook):
    """A checkpoint every ``train.checkpoint_every`` steps, at every phase end and at the end."""

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if trainer.step % trainer.config.train.checkpoint_every == 0 and not trainer.phase_finished:
            trainer.save_checkpoint()

    def after_phase(self, trainer: Trainer) -> None:
        trainer.save_checkpoint()


class LoggerHook(Hook):
    """JSONL log of losses and lr, PNG curves, tqdm progress (rank 0)."""

    def __init__(self) -> None:
        self.window: list[StepResult] = []
        self.bar: Any = None
        self.window_start = time.perf_counter()
        self.last_plot = time.perf_counter()

    def before_train(self, trainer: Trainer) -> None:
        if not trainer.env.is_main:
            return
        truncate_jsonl(trainer.out / 'log.jsonl', trainer.step)
        if trainer.config.train.progress:
            from tqdm import tqdm
            self.bar = tqdm(total=trainer.total_steps, initial=trainer.step,
                            desc=f'train {trainer.recipe.name}', unit='step', dynamic_ncols=True)
        self.window_start = time.perf_counter()

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if not trainer.env.is_main:
            return
        self.window.append(result)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f'{result.loss:.4f}', lr=f'{result.lr:.2e}', phase=result.phase_name)
        if trainer.step % trainer.config.train.log_every == 0 or trainer.phase_finished:
            self.flush(trainer)

    def flush(self, trainer: Trainer) -> None:
        if not self.window:
            return
        w = self.window
        elapsed = max(1e-9, time.perf_counter() - self.window_start)
        terms: dict[str, float] = {}
        for r in w:
            for k, v in r.terms.items():
                terms[k] = terms.get(k, 0.0) + v / len(w)
        last = w[-1]
        record = {'step': last.step, 'phase': last.phase_name, 'epoch': last.epoch, 'lr': last.lr,
                  'loss': sum(r.loss for r in w) / len(w), **terms, 'steps': len(w),
                  'frames_per_s': sum(r.frames for r in w) / elapsed,
                  'grad_norm': last.grad_norm, 'skipped_steps': sum(1 for r in w if r.skipped),
                  'time': time.time()}
        append_jsonl(trainer.out / 'log.jsonl', record)
        self.window = []
        self.window_start = time.perf_counter()

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.env.is_main and trainer.config.train.plots \
                and time.perf_counter() - self.last_plot > PLOT_INTERVAL_S:
            self.flush(trainer)
            plot_losses(trainer.out)
            self.last_plot = time.perf_counter()

    def after_train(self, trainer: Trainer) -> None:
        if not trainer.env.is_main:
            return
        self.flush(trainer)
        if self.bar is not None:
            self.bar.close()
        if trainer.config.train.plots:
            plot_losses(trainer.out)


def plot_losses(out: Path) -> Path | None:
    """loss_curves.png from log.jsonl: one panel per loss term and one for the learning rate."""
    rows = read_jsonl(out / 'log.jsonl')
    if not rows:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    skip = {'step', 'phase', 'epoch', 'steps', 'frames_per_s', 'grad_norm', 'skipped_steps', 'time'}
    keys = sorted({k for r in rows for k in r} - skip, key=lambda k: (k != 'loss', k == 'lr', k))
    cols = 3
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.6 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(r['step'], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if pts:
            ax.plot(*zip(*pts), lw=1)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel('step', fontsize=8)
        if key == 'lr':
            ax.set_yscale('log')
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    fig.tight_layout()
    path = atomic_write(out / 'loss_curves.png', lambda tmp: fig.savefig(tmp, dpi=80), suffix='.png')
    plt.close(fig)
    return path


def plot_validation(out: Path) -> Path | None:
    """val_curves.png: the student's and the teacher's validation mIoUs against the step."""
    rows = read_jsonl(out / 'validation.jsonl')
    if not rows:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, dict) and 'miou' in v})
    for key in keys:
        pts = [(r['step'], r[key]['miou']) for r in rows if isinstance(r.get(key), dict)
               and r[key].get('miou') is not None]
        if pts:
            ax.plot(*zip(*pts), marker='o', lw=1, label=key)
    ax.set_xlabel('step')
    ax.set_ylabel('mIoU')
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = atomic_write(out / 'val_curves.png', lambda tmp: fig.savefig(tmp, dpi=80), suffix='.png')
    plt.close(fig)
    return path


class EvalHook(Hook):
    """Validation every ``train.eval_every`` epochs and at the end (rank 0; the others wait)."""

    def __init__(self, val_set: Any) -> None:
        self.val_set = val_set

    def before_train(self, trainer: Trainer) -> None:
        if trainer.env.is_main:
            truncate_jsonl(trainer.out / 'validation.jsonl', trainer.step)

    def after_epoch(self, trainer: Trainer) -> None:
        if (trainer.history[-1].epoch + 1) % trainer.config.train.eval_every == 0:
            trainer.validate()

    def after_train(self, trainer: Trainer) -> None:
        if trainer.last_validated_step != trainer.step:      # decided alike on every rank
            trainer.validate()


def evaluate(recipe: Any, dataset: Any, device: torch.device) -> dict[str, Any]:
    """Score the student and the pseudo-labels on ``dataset``'s ground truth.

    Semantic metrics of the student and of the pseudo-labels themselves (the teacher) on all, camera-visible
    and camera-invisible points (``visible``: after the occlusion test), and class-agnostic AP when the
    recipe predicts masks.
    """
    from perception_nodes.metrics import (SCANNET_MIN_REGION_SIZE, InstanceAccumulator, SemanticAccumulator,
                                          split_metrics)

    names = dataset.info.class_names
    accs = {k: SemanticAccumulator(class_names=names) for k in
            ('student', 'student_visible', 'student_invisible', 'teacher', 'teacher_visible',
             'teacher_invisible')}
    min_size = getattr(recipe.params, 'eval_min_region_size', SCANNET_MIN_REGION_SIZE)
    inst = InstanceAccumulator(min_region_size=min_size)
    have_gt = have_inst = False
    was = recipe.training
    recipe.eval()
    try:
        for i in range(len(dataset)):
            frame = dataset[i]
            if frame.gt_labels is None:
                continue
            have_gt = True
            pred = recipe.predict(frame.__class__(points=frame.points.to(device), labels=frame.labels,
                                                  visible=frame.visible, frame_id=frame.frame_id))
            labels = pred['labels'].cpu().numpy()
            gt = frame.gt_labels.numpy()
            vis = frame.visible.numpy()
            teacher = np.where(frame.labels.numpy() >= 0, frame.labels.numpy(), UNKNOWN_LABEL)
            accs['student'].update(labels, gt)
            accs['student_visible'].update(labels, gt, vis)
            accs['student_invisible'].update(labels, gt, ~vis)
            accs['teacher'].update(teacher, gt)
            accs['teacher_visible'].update(teacher, gt, vis)
            accs['teacher_invisible'].update(teacher, gt, ~vis)
            if 'masks' in pred and frame.gt_instances is not None:
                have_inst = True
                gti = frame.gt_instances.numpy()
                inst.update(np.where(gti > 0, gti, -1), pred['masks'].cpu().numpy(),
                            pred['scores'].cpu().numpy())
    finally:
        recipe.train(was)
    out: dict[str, Any] = {}
    splits = getattr(recipe, 'splits', None)        # head / common / tail from the training counts
    if have_gt:
        for k, acc in accs.items():
            if acc.points:
                r = acc.compute()
                out[k] = {'miou': _f(r.miou), 'accuracy': _f(r.accuracy), 'coverage': _f(r.coverage),
                          'points': r.points, 'iou': {n: _f(v) for n, v in zip(names, r.iou)}}
                if splits:
                    out[k]['splits'] = {name: _f(split_metrics(r, ids).miou) for name, ids in splits.items()
                                        if len(ids)}
    if have_inst:
        r = inst.compute()
        out['instances'] = {'ap': _f(r.ap), 'ap50': _f(r.ap50), 'ap25': _f(r.ap25), 'num_gt': r.num_gt,
                            'num_pred': r.num_pred}
    if not have_gt:
        out['note'] = 'the validation frames carry no gt_labels: nothing to score'
    return out


def _f(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else round(x, 6)
