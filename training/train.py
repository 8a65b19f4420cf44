r"""Train a student: ``python -m training.train --config RECIPE --data STORE --out RUN [--resume]``.

The same module is ``ovp train`` and runs unchanged under torchrun (DistributedDataParallel, gloo on CPU,
NCCL on GPU)::

    torchrun --nproc-per-node 2 -m training.train --config pop3d --data STORE --out RUN
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m training.train --config affinity3d --data STORE --out RUN      # on every node

``--config`` is a YAML path or a recipe name under ``config/training`` (affinity3d, pop3d, cns, scannet200,
unscene3d); ``--data`` a pseudo-label store folder or ``sim:frames=8,...`` (the synthetic world);
``--set key.sub=value`` overrides any config key (e.g. ``--set phases.0.steps=100``).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--config', required=True, help='recipe config (YAML path or recipe name)')
    parser.add_argument('--data', help='training store folder or sim:... (overrides data.train)')
    parser.add_argument('--val', help='validation store folder or sim:... (overrides data.val)')
    parser.add_argument('--out', required=True, help='run folder (checkpoints, logs, student/, summary.json)')
    parser.add_argument('--resume', action='store_true',
                        help='continue the run in --out from its last checkpoint')
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                        help='override a config key (YAML value); repeatable')
    parser.add_argument('--no-progress', action='store_true', help='no tqdm progress bar')


def _errors() -> tuple[type[BaseException], ...]:
    from training.data.sample import SampleError
    from training.engine.checkpoint import CheckpointError
    from training.engine.config import ConfigError
    from training.engine.memory import BatchTooLargeError
    from training.engine.trainer import TrainingError
    from training.recipes.base import RecipeError
    return (SampleError, CheckpointError, ConfigError, BatchTooLargeError, TrainingError, RecipeError)


def run_training(args: argparse.Namespace) -> dict[str, Any]:
    """Load the config and data, train, return the summary (raises the user-facing errors of _errors())."""
    import torch.distributed as dist

    from training.data import open_source
    from training.engine.config import load_config
    from training.engine.distributed import init_distributed
    from training.engine.trainer import Trainer

    overrides = list(args.overrides)
    if args.no_progress:
        overrides.append('train.progress=false')
    config = load_config(args.config, overrides)
    if args.data:
        config.data.train = args.data
    if args.val:
        config.data.val = args.val
    if not config.data.train:
        from training.engine.config import ConfigError
        raise ConfigError('no training data: give --data STORE (or data.train in the config)')
    env = init_distributed(config.train.device)
    try:
        train_set = open_source(config.data.train, 'train', config.data.reader)
        val_set = open_source(config.data.val, 'val', config.data.reader) if config.data.val else None
        trainer = Trainer(config, train_set, args.out, val_set=val_set, resume=args.resume, env=env)
        return trainer.fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run(args: argparse.Namespace) -> int:
    """Train; user-facing errors print one line and return 2."""
    errors = _errors()
    try:
        run_training(args)
    except errors as exc:
        print(f'train: error: {exc}', file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m training.train', description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
