"""Engine self-checks used by the tests and ``bench/train_bench.py``: DDP equivalence and resume exactness.

``ddp_losses(tree, data, world_size, out)`` trains the same config in ``world_size`` spawned CPU processes
(gloo, a ``file://`` rendezvous: no torchrun, no network) with the per-rank batch divided by the world
size, and returns the per-step losses rank 0 logged; with ``world_size = 1`` it trains in this process.
``resume_losses(tree, data, out, stop_after)`` trains, stops after ``stop_after`` steps as a kill would
(an exception right after the checkpoint of that step), resumes in a fresh Trainer, and returns the
losses of both parts.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from training.data import open_source
from training.engine.config import config_from_tree
from training.engine.distributed import env_from_group
from training.engine.hooks import Hook
from training.engine.trainer import Trainer


def _config(tree: dict[str, Any], **train: Any):
    tree = copy.deepcopy(tree)
    tree.setdefault('train', {}).update(train)
    return config_from_tree(tree)


def _rank_main(rank: int, world: int, init_file: str, tree: dict[str, Any], data: str, out: str,
               val: str | None) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    try:
        config = _config(tree)
        trainer = Trainer(config, open_source(data), out, env=env_from_group(), log_to_stdout=False,
                          val_set=open_source(val) if val else None)
        trainer.fit()
        if rank == 0:
            Path(out, 'losses.json').write_text(json.dumps([[h.loss, h.terms] for h in trainer.history]))
    finally:
        dist.destroy_process_group()


def ddp_losses(tree: dict[str, Any], data: str, world_size: int, out: str | os.PathLike,
               batch_size: int, val: str | None = None) -> list[tuple[float, dict[str, float]]]:
    """Per-step (loss, terms) of a run on ``world_size`` CPU ranks with ``batch_size`` frames per rank.

    ``val``: a validation source, so that the evaluation hooks run under DDP too.
    """
    tree = copy.deepcopy(tree)
    tree.setdefault('train', {}).update(batch_size=batch_size, progress=False, plots=False, device='cpu')
    tree.setdefault('data', {})['num_workers'] = 0
    out = str(out)
    if world_size == 1:
        trainer = Trainer(config_from_tree(tree), open_source(data), out, log_to_stdout=False,
                          val_set=open_source(val) if val else None)
        trainer.fit()
        return [(h.loss, h.terms) for h in trainer.history]
    import torch.multiprocessing as mp

    fd, init_file = tempfile.mkstemp(prefix='ovp-ddp-', suffix='.init')
    os.close(fd)
    os.unlink(init_file)
    try:
        mp.spawn(_rank_main, args=(world_size, init_file, tree, data, out, val), nprocs=world_size, join=True)
    finally:
        if os.path.exists(init_file):
            os.unlink(init_file)
    return [(loss, terms) for loss, terms in json.loads(Path(out, 'losses.json').read_text())]


class StopAfter(Hook):
    """Raise KeyboardInterrupt after step ``step`` (after the hooks before it, e.g. the checkpoint)."""

    def __init__(self, step: int) -> None:
        self.at = step

    def after_step(self, trainer: Trainer, result: Any) -> None:
        if trainer.step == self.at:
            raise KeyboardInterrupt(f'simulated kill after step {self.at}')


def resume_losses(tree: dict[str, Any], data: str, out: str | os.PathLike,
                  stop_after: int) -> tuple[list[float], list[float]]:
    """(losses before the kill, losses after resuming) of one run checkpointed every ``stop_after`` steps."""
    from training.engine.hooks import CheckpointHook, LoggerHook

    tree = copy.deepcopy(tree)
    tree.setdefault('train', {}).update(checkpoint_every=stop_after, progress=False, plots=False,
                                        device='cpu')
    tree.setdefault('data', {})['num_workers'] = 0
    config = config_from_tree(tree)
    dataset = open_source(data)
    first = Trainer(config, dataset, out, log_to_stdout=False)
    first.hooks = [LoggerHook(), CheckpointHook(), StopAfter(stop_after)]
    try:
        first.fit()
    except KeyboardInterrupt:
        pass
    second = Trainer(config, dataset, out, resume=True, log_to_stdout=False)
    second.fit()
    return [h.loss for h in first.history], [h.loss for h in second.history]
