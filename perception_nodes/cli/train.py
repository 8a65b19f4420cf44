"""`ovp train`: train a 3D student from a pseudo-label store (the offline ``training`` package).

``ovp train --config RECIPE --data STORE --out RUN [--resume] [--val STORE] [--set key=value]``; the same
as ``python -m training.train``, which is what to give torchrun for several processes or machines.
The runtime package never imports ``training`` (one direction of dependency): this subcommand loads it by
name only when it runs, and says so plainly when it is not installed.
"""
from __future__ import annotations

import argparse
import importlib
from types import ModuleType

TRAINING_ENTRY = 'training.train'


def _entry() -> ModuleType:
    from perception_nodes.cli.main import CliError

    try:
        return importlib.import_module(TRAINING_ENTRY)
    except ImportError as exc:
        raise CliError(f'the training package is not installed ({exc}); install the repository with '
                       '`pip install -e .` to train') from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        module = importlib.import_module(TRAINING_ENTRY)
    except ImportError:   # run() explains; accept anything so the message is not a usage error
        parser.add_argument('rest', nargs=argparse.REMAINDER)
        return
    module.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from perception_nodes.cli.main import CliError

    entry = _entry()
    try:
        entry.run_training(args)
    except entry._errors() as exc:
        raise CliError(str(exc)) from exc
    return 0
