"""The training loop: one loop, phases, hooks, DDP, AMP, clipping, exact resume, the final student.

``Trainer(config, train_set, out_dir, val_set=..., resume=...).fit()`` trains the recipe named in the config
on ``train_set`` (a :class:`training.data.FrameDataset`) and writes into ``out_dir``: checkpoints
(``checkpoints/``), logs (hooks), ``student/`` (the checkpoint ``ovp export`` reads, with the vocabulary and
provenance the student labeller uses) and ``summary.json``.

Per step: the memory guard checks the batch (before it is moved or run), the recipe (wrapped in
DistributedDataParallel when the process group has several ranks) returns the mean loss of the rank's
frames, a non-finite term stops every rank (named step, frames and term; no checkpoint is written, so the
last good one stays ``latest``), gradients are clipped to ``train.grad_clip`` (after unscaling under fp16
AMP) and the optimizer steps. Logged losses are means over ranks.
"""
from __future__ import annotations

import contextlib
import json
import math
import resource
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from perception_nodes.atomic import atomic_write_text
from perception_nodes.student.checkpoint import save_checkpoint
from perception_nodes.student.config import StudentConfig
from training.class_stats import class_counts as count_classes
from training.data.sample import Batch, FrameDataset, SampleError, check_expected, collate
from training.data.sampler import GlobalBatchPlan, RankBatchSampler
from training.engine import checkpoint as ckpt
from training.engine.config import ConfigError, TrainConfig
from training.engine.distributed import (DistEnv, all_gather_bytes, all_reduce_max, all_reduce_mean, barrier,
                                         init_distributed, mix_seed, seed_everything)
from training.engine.hooks import CheckpointHook, EvalHook, Hook, LoggerHook, append_jsonl, evaluate, \
    plot_validation, read_jsonl
from training.engine.memory import MemoryGuard
from training.engine.optim import build_optimizer, param_groups, set_learning_rates
from training.recipes import FrameLossError, PhaseContext, Recipe, recipe_class
from training.recipes.transforms import AugmentConfig

# Config keys that may change between a run and its resume (they do not change what is trained).
RESUMABLE_CHANGES = ('train.progress', 'train.log_every', 'train.checkpoint_every', 'train.keep_checkpoints',
                     'train.eval_every', 'data.num_workers', 'data.train', 'data.val', 'data.reader')


class TrainingError(RuntimeError):
    """The run cannot go on (bad data, non-finite loss, a mismatched resume); the message says why."""


class NonFiniteLossStop(TrainingError):
    """A loss term or the gradient norm became NaN / inf: ``step``, ``frames`` and ``term`` name where."""

    def __init__(self, message: str, step: int, frames: list[str], term: str) -> None:
        super().__init__(message)
        self.step, self.frames, self.term = step, frames, term


@dataclass
class StepResult:
    """One optimizer step, as the hooks see it (losses are means over ranks)."""

    step: int
    phase: int
    phase_name: str
    epoch: int
    batch: int
    loss: float
    terms: dict[str, float]
    lr: float
    grad_norm: float | None
    frames: int
    skipped: bool = False
    seconds: float = 0.0


@dataclass
class _Frames(torch.utils.data.Dataset):
    """The loader's view: ``(index, key)`` -> ``(index, transformed sample)``."""

    base: Any
    transform: Any = field(default=None)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: tuple[int, int]) -> tuple[int, Any]:
        index, key = item
        return index, self.transform(self.base[index], key, index)


def git_commit() -> str:
    """Return the repository's HEAD commit (or 'unknown')."""
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or 'unknown'
    except (OSError, subprocess.SubprocessError):
        return 'unknown'


def _flatten(d: Any, prefix: str = '') -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f'{prefix}{k}.'))
        return out
    return {prefix[:-1]: d}


def save_student(folder: Path, student: nn.Module, config: StudentConfig) -> Path:
    """Write the student checkpoint (model.safetensors + config.yaml) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(folder, student, config)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Trainer:
    """Train a recipe on a frame dataset (module docstring)."""

    def __init__(self, config: TrainConfig, train_set: FrameDataset, out_dir: str | Path,
                 val_set: FrameDataset | None = None, resume: bool = False, env: DistEnv | None = None,
                 hooks: list[Hook] | None = None, log_to_stdout: bool = True) -> None:
        self.config = config
        self.env = env or init_distributed(config.train.device)
        self.device = self.env.device
        self.out = Path(out_dir)
        self.train_set, self.val_set = train_set, val_set
        self.log_to_stdout = log_to_stdout
        self.validations: list[dict[str, Any]] = []          # rank 0 only
        self.last_validated_step = -1                         # every rank
        self.history: list[StepResult] = []
        self.step = 0
        self.phase = 0
        self.phase_step = 0
        self.phase_finished = False
        self.train_seconds = 0.0
        self.frames_seen = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self._resume_state: tuple[dict[str, torch.Tensor], ckpt.TrainState] | None = None
        if config.train.deterministic:
            torch.use_deterministic_algorithms(True)

        self._check_data()
        info = train_set.info
        cls = recipe_class(config.recipe_name)
        params = cls.make_params(config.recipe, f'{config.source}: recipe')
        self.student_config = self._student_config(info)
        counts = (torch.as_tensor(info.class_counts) if info.class_counts is not None
                  else self._count_classes())
        torch.manual_seed(config.seed)                 # identical initial weights on every rank
        self.recipe: Recipe = cls(params, self.student_config, info, counts, seed=config.seed,
                                  phases=config.phases).to(self.device)
        missing = sorted(self.recipe.required_fields() - info.fields)
        if missing:
            raise TrainingError(f'recipe {cls.name} needs the store field(s) {missing}, which '
                                f'{config.data.train or "the training data"} does not provide (it has '
                                f'{sorted(info.fields)}); rebuild the store with the methods that make them')
        self.recipe.prepare(train_set)
        self.augment = self._augment_config()
        self.model: nn.Module = self.recipe
        if self.env.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.recipe, find_unused_parameters=not self.recipe.uses_all_parameters())
        self.plan = GlobalBatchPlan(len(train_set), config.train.batch_size, self.env.world_size, config.seed)
        self.phase_steps = [self._phase_length(p) for p in config.phases]
        self.total_steps = sum(self.phase_steps)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.amp_dtype == torch.float16)
        self.guard = MemoryGuard(self.device, config.limits.memory_bytes, config.limits.memory_fraction)
        self.hooks = hooks if hooks is not None else self.default_hooks()
        self.ckpt_dir = self.out / 'checkpoints'
        seed_everything(mix_seed(config.seed, 101, self.env.rank))
        self._open_run(resume)

    # ------------------------------------------------------------------------------------- set-up
    def log(self, message: str) -> None:
        """Print (rank 0) and append to train.log."""
        if not self.env.is_main:
            return
        if self.log_to_stdout:
            try:
                from tqdm import tqdm
                tqdm.write(message)
            except ImportError:   # pragma: no cover
                print(message, flush=True)
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / 'train.log', 'a', encoding='utf-8') as f:
            f.write(message + '\n')

    def default_hooks(self) -> list[Hook]:
        hooks: list[Hook] = [LoggerHook()]
        if self.val_set is not None:
            hooks.append(EvalHook(self.val_set))
        hooks.append(CheckpointHook())
        return hooks

    def _check_data(self) -> None:
        info = self.train_set.info
        if len(self.train_set) == 0:
            raise TrainingError('the training store has no frames'
                                + (f' (missing: {", ".join(info.missing)})' if info.missing else ''))
        if not info.complete and not self.config.data.allow_partial:
            what = ', '.join(info.missing) or 'unknown parts'
            raise TrainingError(f'the training store is incomplete: {what} missing (finish '
                                '`ovp pseudo-label`, or set data.allow_partial)')
        try:
            check_expected(info, self.config.data.expect, 'the training store')
            if self.val_set is not None:
                check_expected(self.val_set.info, self.config.data.expect, 'the validation store')
        except SampleError as exc:
            raise TrainingError(str(exc)) from exc
        if self.val_set is not None and self.val_set.info.class_names != info.class_names:
            raise TrainingError(f'the validation store has classes {self.val_set.info.class_names}, the '
                                f'training store {info.class_names}')

    def _student_config(self, info: Any) -> StudentConfig:
        data = dict(self.config.student)
        if data.get('embed_dim', 'auto') in ('auto', None):
            data['embed_dim'] = info.embed_dim
        preset = data.pop('preset', None)
        for key in ('vocabulary', 'provenance'):
            if key in data:
                raise ConfigError(f'student.{key} is set by the trainer, not the config')
        try:
            if preset == 'deployable':
                return StudentConfig.deployable(**data)
            if preset not in (None, 'none'):
                raise ConfigError(f'student.preset must be deployable or none, got {preset!r}')
            return StudentConfig.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f'{self.config.source}: student: {exc}') from exc

    def _count_classes(self) -> torch.Tensor:
        self.log(f'counting the pseudo-labels of {len(self.train_set)} frames (the store gave no '
                 'class_counts)')
        k = self.train_set.info.num_classes
        total = torch.zeros(k, dtype=torch.int64)
        for i in range(len(self.train_set)):
            total += count_classes(self.train_set[i].labels, k)
        return total

    def _augment_config(self) -> AugmentConfig:
        try:
            return AugmentConfig(**self.config.augment)
        except TypeError as exc:
            raise ConfigError(f'{self.config.source}: augment: {exc}') from exc

    def _phase_length(self, phase: Any) -> int:
        if phase.steps is not None:
            return int(phase.steps)
        return max(1, int(math.ceil(phase.epochs * self.plan.steps_per_epoch)))

    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.config.train.amp
        if amp == 'off' or (amp == 'auto' and self.device.type != 'cuda'):
            return None
        if self.device.type != 'cuda':
            raise ConfigError(f'train.amp {amp} needs CUDA; this run is on {self.device}')
        return torch.bfloat16 if amp == 'bf16' else torch.float16

    def _hashable_config(self) -> dict[str, Any]:
        flat = _flatten(self.config.to_dict())
        return {k: v for k, v in flat.items() if k not in RESUMABLE_CHANGES}

    def _open_run(self, resume: bool) -> None:
        run_file = self.out / 'run.json'
        latest = ckpt.latest_checkpoint(self.ckpt_dir) if self.ckpt_dir.exists() else None
        if latest is not None and not resume:
            raise TrainingError(f'{self.out} already holds a run (checkpoint {latest.name}); pass --resume '
                                'to continue it or choose another --out')
        if latest is None and (self.out / 'summary.json').is_file() and not resume:
            raise TrainingError(f'{self.out} holds a finished run; choose another --out')
        if run_file.is_file() and resume:
            self.run_info = json.loads(run_file.read_text(encoding='utf-8'))
            saved = self.run_info.get('config_flat', {})
            diff = sorted(k for k in set(saved) | set(self._hashable_config())
                          if json.dumps(saved.get(k), default=str)
                          != json.dumps(self._hashable_config().get(k), default=str))
            if diff:
                raise TrainingError(f'--resume with another config than the run was started with: {diff[:8]} '
                                    f'differ (start a new run with another --out)')
        else:
            info = self.train_set.info
            self.run_info = {'run_id': f'{self.config.recipe_name}-{time.strftime("%Y%m%d-%H%M%S")}-'
                                       f'{self.config.hash()[:8]}',
                             'recipe': self.config.recipe_name, 'config_hash': self.config.hash(),
                             'config_flat': json.loads(json.dumps(self._hashable_config(), default=str)),
                             'store': info.provenance(), 'git_commit': git_commit(),
                             'world_size': self.env.world_size}
            self.run_info = _broadcast_run_info(self.run_info, self.env)
            if self.env.is_main:
                self.out.mkdir(parents=True, exist_ok=True)
                atomic_write_text(run_file, json.dumps(self.run_info, indent=1, default=str))
                atomic_write_text(self.out / 'config.yaml',
                                  yaml.safe_dump(json.loads(json.dumps(self.config.to_dict(), default=str)),
                                                 sort_keys=False))
        if resume and latest is not None:
            self._load(latest)
        elif resume:
            self.log(f'--resume: no checkpoint in {self.ckpt_dir}; starting from step 0')
        barrier(self.env)

    # -------------------------------------------------------------------------------- checkpoints
    def _load(self, folder: Path) -> None:
        tensors, state = ckpt.read_checkpoint(folder)
        model_state = {k[len('model.'):]: v for k, v in tensors.items() if k.startswith('model.')}
        own = self.recipe.state_dict()
        missing = sorted(set(own) - set(model_state))
        unexpected = sorted(set(model_state) - set(own))
        if missing or unexpected:
            raise TrainingError(f'checkpoint {folder} does not fit this recipe: missing {missing[:5]}, '
                                f'unexpected {unexpected[:5]}')
        self.recipe.load_state_dict(model_state)
        extra = {k[len('extra.'):]: v for k, v in tensors.items() if k.startswith('extra.')}
        self.recipe.load_recipe_state(extra, state.recipe)
        self.step = state.step
        self.phase = state.position['phase']
        self.phase_step = state.position['phase_step']
        self.train_seconds = float(state.extra.get('train_seconds', 0.0))
        self.frames_seen = int(state.extra.get('frames_seen', 0))
        self.validations = list(state.extra.get('validations', []))
        self.last_validated_step = int(state.extra.get('last_validated_step', -1))
        if state.world_size == self.env.world_size and len(state.rng) == self.env.world_size:
            rank = self.env.rank
            mine = {k.split('.')[-1]: v for k, v in tensors.items() if k.startswith(f'rng.{rank}.')}
            ckpt.set_rng_state(mine, state.rng[rank], self.device)
        else:
            self.log(f'resuming with {self.env.world_size} ranks a run saved by {state.world_size}: global '
                     'RNG states reseeded (data order and augmentations are rank-independent and unchanged)')
        self._resume_state = (tensors, state)
        self.log(f'resumed from {folder} at step {self.step} (phase {self.phase}, '
                 f'phase step {self.phase_step})')

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step on rank 0 (RNG states gathered from every rank)."""
        tensors_rng, json_rng = ckpt.rng_state(self.device)
        blob = json.dumps({'json': json_rng, 'torch': tensors_rng['torch'].tolist(),
                           'cuda': tensors_rng['cuda'].tolist() if 'cuda' in tensors_rng else None}).encode()
        gathered = all_gather_bytes(blob, self.env)
        path = None
        if self.env.is_main:
            tensors = {f'model.{k}': v for k, v in self.recipe.state_dict().items()}
            tensors.update({f'extra.{k}': v for k, v in self.recipe.state_tensors().items()})
            rng_json = []
            for r, raw in enumerate(gathered):
                item = json.loads(raw.decode())
                rng_json.append(item['json'])
                tensors[f'rng.{r}.torch'] = torch.tensor(item['torch'], dtype=torch.uint8)
                if item['cuda'] is not None:
                    tensors[f'rng.{r}.cuda'] = torch.tensor(item['cuda'], dtype=torch.uint8)
            phase, phase_step, optim_json = self.phase, self.phase_step, {}
            if self.phase_finished:
                phase, phase_step = self.phase + 1, 0        # the next phase starts fresh
            elif self.optimizer is not None:
                opt_tensors, optim_json = ckpt.optimizer_to_flat(self.optimizer)
                tensors.update(opt_tensors)
            state = ckpt.TrainState(
                step=self.step, position={'phase': phase, 'phase_step': phase_step},
                phase_step=phase_step, config_hash=self.run_info['config_hash'],
                world_size=self.env.world_size,
                scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {}, rng=rng_json,
                recipe=self.recipe.state_json(), optimizer=optim_json,
                extra={'train_seconds': self.train_seconds, 'frames_seen': self.frames_seen,
                       'validations': self.validations, 'last_validated_step': self.last_validated_step})
            path = ckpt.write_checkpoint(self.ckpt_dir, self.step, tensors, state,
                                         lambda folder: save_student(folder / 'student', self.recipe.student,
                                                                     self.final_student_config()),
                                         keep=self.config.train.keep_checkpoints)
        barrier(self.env)
        return path

    # ------------------------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train every phase from the current position; returns the summary (also summary.json)."""
        for hook in self.hooks:
            hook.before_train(self)
        start_phase = self.phase
        for p in range(start_phase, len(self.config.phases)):
            self._run_phase(p, resumed=(p == start_phase and self.phase_step > 0))
        for hook in self.hooks:
            hook.after_train(self)
        return self.finish()

    def _run_phase(self, p: int, resumed: bool) -> None:
        phase = self.config.phases[p]
        self.phase, self.phase_finished = p, False
        if not resumed:
            self.phase_step = 0
        self.recipe.set_phase(phase.recipe)
        if not resumed:
            context = PhaseContext(self.train_set, self.device, self.env, p, self.log)
            self.recipe.on_phase_start(context, phase.action)
        optim_cfg = _override(self.config.optim, phase.optim)
        sched_cfg = _override(self.config.schedule, phase.schedule)
        groups = param_groups(self.recipe.trainable_modules(), optim_cfg)
        self.optimizer = build_optimizer(groups, optim_cfg)
        base_lrs = [g['lr'] for g in self.optimizer.param_groups]
        if resumed and self._resume_state is not None:
            tensors, state = self._resume_state
            if state.optimizer:
                ckpt.optimizer_from_flat(self.optimizer, tensors, state.optimizer)
            if state.scaler and self.scaler.is_enabled():
                self.scaler.load_state_dict(state.scaler)
        self._resume_state = None
        transform = self.recipe.transform(self.augment)
        total = self.phase_steps[p]
        spe = self.plan.steps_per_epoch
        self.log(f'phase {p} {phase.name!r}: {total} steps ({total / spe:.2f} epochs of {spe} steps, '
                 f'global batch {self.plan.global_batch} on {self.env.world_size} rank(s), {self.device}'
                 f'{", AMP " + str(self.amp_dtype).split(".")[-1] if self.amp_dtype else ""})')
        while self.phase_step < total:
            epoch, start = divmod(self.phase_step, spe)
            stop = min(spe, start + total - self.phase_step)
            loader = torch.utils.data.DataLoader(
                _Frames(self.train_set, transform),
                batch_sampler=RankBatchSampler(self.plan, p, epoch, self.env.rank, start, stop),
                collate_fn=collate, num_workers=self.config.data.num_workers,
                pin_memory=self.device.type == 'cuda')
            for b, batch in enumerate(loader, start=start):
                result = self._train_step(batch, p, phase.name, epoch, b, total, spe, base_lrs, sched_cfg)
                self.history.append(result)
                if self.phase_step >= total:
                    self.phase_finished = True
                for hook in self.hooks:
                    hook.after_step(self, result)
                if b == spe - 1:
                    for hook in self.hooks:
                        hook.after_epoch(self)
        self.phase_finished = True
        for hook in self.hooks:
            hook.after_phase(self)

    def _train_step(self, batch: Batch, p: int, phase_name: str, epoch: int, b: int, total: int, spe: int,
                    base_lrs: list[float], sched_cfg: Any) -> StepResult:
        t0 = time.perf_counter()
        frames = [(int(batch.offsets[i + 1] - batch.offsets[i]),
                   int(batch.images[i].shape[0] * batch.images[i].shape[-2] * batch.images[i].shape[-1])
                   if batch.images is not None else 0) for i in range(len(batch))]
        problem = ''
        try:
            self.guard.check(self.recipe.memory_parts(frames), f'step {self.step + 1}: a batch of '
                             f'{len(batch)} frame(s) ({batch.num_points} points)')
        except MemoryError as exc:
            problem = str(exc)
        if all_reduce_max(1.0 if problem else 0.0, self.env) > 0:
            raise TrainingError(problem or f'step {self.step + 1}: another rank\'s batch would not fit in '
                                'memory')
        batch = batch.to(self.device, non_blocking=True)
        lr = set_learning_rates(self.optimizer, base_lrs, self.phase_step, total, spe, sched_cfg)
        failure: FrameLossError | None = None
        out: dict[str, Any] | None = None
        amp = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        try:
            with amp:
                out = self.model(batch, self.step)
        except FrameLossError as exc:
            failure = exc
        if all_reduce_max(1.0 if failure else 0.0, self.env) > 0:
            self._stop_nonfinite(failure, batch, 'loss')
        loss = out['total']
        self.scaler.scale(loss).backward()
        grad_norm = None
        params = [q for q in self.recipe.parameters() if q.grad is not None]
        if self.config.train.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.train.grad_clip))
            if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
                self._stop_nonfinite(None, batch, 'gradient norm', grad_norm)
        scale_before = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        skipped = self.scaler.is_enabled() and self.scaler.get_scale() < scale_before
        self.optimizer.zero_grad(set_to_none=True)
        names = sorted(out['terms'])
        values = torch.stack([loss.detach().float()] + [out['terms'][k].float() for k in names]).cpu()
        values = all_reduce_mean(values.double(), self.env)
        self.step += 1
        self.phase_step += 1
        dt = time.perf_counter() - t0
        self.train_seconds += dt
        self.frames_seen += self.plan.global_batch
        return StepResult(step=self.step, phase=p, phase_name=phase_name, epoch=epoch, batch=b,
                          loss=float(values[0]), terms={k: float(v) for k, v in zip(names, values[1:])},
                          lr=lr, grad_norm=grad_norm, frames=self.plan.global_batch, skipped=skipped,
                          seconds=dt)

    def _stop_nonfinite(self, failure: FrameLossError | None, batch: Batch, what: str,
                        value: float | None = None) -> None:
        step = self.step + 1
        if failure is not None:
            term, frames = failure.term, [failure.frame]
            msg = (f'non-finite loss at step {step}: term {failure.term!r} = {failure.value} in frame '
                   f'{failure.frame} (batch {batch.frame_ids}, rank {self.env.rank})')
        elif what == 'loss':
            term, frames = 'unknown', list(batch.frame_ids)
            msg = f'non-finite loss at step {step} on another rank (this rank\'s batch {batch.frame_ids})'
        else:
            term, frames = what, list(batch.frame_ids)
            msg = f'non-finite {what} ({value}) at step {step} (batch {batch.frame_ids})'
        latest = ckpt.latest_checkpoint(self.ckpt_dir) if self.ckpt_dir.exists() else None
        msg += f'; the run stopped, the last good checkpoint is {latest or "none (no checkpoint yet)"}'
        if failure is not None or self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            name = f'error.rank{self.env.rank}.json' if self.env.rank else 'error.json'
            atomic_write_text(self.out / name,
                              json.dumps({'error': msg, 'step': step, 'frames': frames, 'term': term}))
        self.log(msg)
        raise NonFiniteLossStop(msg, step, frames, term)

    # ---------------------------------------------------------------------------------- evaluation
    def validate(self) -> dict[str, Any] | None:
        """Evaluate on the validation set (rank 0; every rank calls this), log it to validation.jsonl."""
        result = None
        self.last_validated_step = self.step
        if self.env.is_main and self.val_set is not None:
            metrics = evaluate(self.recipe, self.val_set, self.device)
            phase = self.config.phases[min(self.phase, len(self.config.phases) - 1)]
            result = {'step': self.step, 'phase': phase.name, **metrics}
            self.validations.append(result)
            append_jsonl(self.out / 'validation.jsonl', result)
            if self.config.train.plots:
                plot_validation(self.out)
            s = metrics.get('student', {}).get('miou')
            t = metrics.get('teacher', {}).get('miou')
            self.log(f'validation at step {self.step}: student mIoU {s}, pseudo-label mIoU {t}'
                     + (f', instance AP {metrics["instances"]["ap"]}' if 'instances' in metrics else ''))
        barrier(self.env)
        return result

    # ------------------------------------------------------------------------------------- the end
    def final_student_config(self) -> StudentConfig:
        """Return the student config with the vocabulary it was trained for and the run's provenance.

        ``vocabulary``: name, classes, hash and the store's (K, C) class text embeddings
        (:meth:`StudentConfig.set_trained_vocabulary`), so the student labeller can classify without a CLIP
        (``labeller.text_source: student``).
        """
        info = self.train_set.info
        meaningful = info.labels_meaningful and self.recipe.trains_point_semantics()
        cfg = StudentConfig.from_dict(self.student_config.to_dict())
        # the (K, C) text embeddings it is trained against travel with it (checkpoint config, ONNX metadata)
        cfg.set_trained_vocabulary(info.vocabulary_name, info.class_names, info.text_embeddings)
        if meaningful:
            note = ''
        elif not info.labels_meaningful:
            note = 'labels not meaningful: the store\'s teacher was not meaningful (random weights?)'
        else:
            note = (f'labels not meaningful: recipe {self.config.recipe_name} with these settings does not '
                    'train the point classifier')
        cfg.provenance = {'trained': True, 'labels_meaningful': bool(meaningful),
                          'run_id': self.run_info['run_id'], 'recipe': self.config.recipe_name,
                          'config_hash': self.run_info['config_hash'],
                          'store_hash': info.store_hash, 'store_config_hash': info.config_hash,
                          'teacher': dict(info.teacher), 'git_commit': self.run_info['git_commit'],
                          'steps': self.step, 'note': note}
        return cfg

    def finish(self) -> dict[str, Any]:
        """Write student/ and summary.json (rank 0); returns the summary."""
        summary: dict[str, Any] = {}
        if self.env.is_main:
            cfg = self.final_student_config()
            weights = save_student(self.out / 'student', self.recipe.student, cfg)
            best = max((v for v in self.validations if v.get('student', {}).get('miou') is not None),
                       key=lambda v: v['student']['miou'], default=None)
            logged = read_jsonl(self.out / 'log.jsonl')
            summary = {
                'run_id': self.run_info['run_id'], 'recipe': self.config.recipe_name, 'steps': self.step,
                'phases': [{'name': ph.name, 'steps': n}
                           for ph, n in zip(self.config.phases, self.phase_steps)],
                'world_size': self.env.world_size, 'device': str(self.device),
                'amp': str(self.amp_dtype).split('.')[-1] if self.amp_dtype else 'off',
                'student': {'arch': cfg.arch, 'checkpoint': str(weights.parent), 'labels_meaningful':
                            cfg.provenance['labels_meaningful'], 'exportable': cfg.arch == 'range_unet',
                            'export': (f'ovp export --checkpoint {weights.parent} --onnx student.onnx'
                                       if cfg.arch == 'range_unet' else
                                       'sparse students run with the torch backend (no ONNX export)')},
                'store': self.run_info['store'], 'vocabulary': cfg.vocabulary,
                'final_losses': {k: v for k, v in (logged[-1] if logged else {}).items()
                                 if k not in ('time', 'steps')},
                'validation': self.validations[-1] if self.validations else None, 'best_validation': best,
                'frames_per_s': self.frames_seen / self.train_seconds if self.train_seconds > 0 else None,
                'train_seconds': self.train_seconds, 'peak_rss_mb': peak_rss_mb(),
                'peak_cuda_mb': (torch.cuda.max_memory_allocated(self.device) / 2 ** 20
                                 if self.device.type == 'cuda' else None),
                'git_commit': self.run_info['git_commit'], 'config_hash': self.run_info['config_hash'],
            }
            atomic_write_text(self.out / 'summary.json', json.dumps(summary, indent=1, default=str))
            self.log(f'done: {self.step} steps; student checkpoint {weights.parent}; '
                     f'summary {self.out / "summary.json"}')
        barrier(self.env)
        return summary


def _override(base: Any, over: dict[str, Any]) -> Any:
    if not over:
        return base
    data = asdict(base)
    unknown = sorted(set(over) - set(data))
    if unknown:
        raise ConfigError(f'phase override: unknown key(s) {unknown}; known {sorted(data)}')
    return type(base)(**{**data, **over})


def _broadcast_run_info(info: dict[str, Any], env: DistEnv) -> dict[str, Any]:
    """Rank 0's run info (its run id and timestamp) on every rank."""
    if not env.distributed:
        return info
    blobs = all_gather_bytes(json.dumps(info, default=str).encode() if env.is_main else b'', env)
    return json.loads(blobs[0].decode())
