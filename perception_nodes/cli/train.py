"""`ovp train`: train a 3D student from a pseudo-label store (the offline ``training`` package).

``ovp train --config RECIPE --data STORE --out RUN [--resume] [--val STORE] [--set key=value]``; the same
as ``python -m training.train``, which is what to give torchrun for several processes or machines.
The runtime package never imports ``training`` (one direction of dependency): this subcommand loads it by
name only when it runs, and says so plainly when it is not installed.
"""
from __future__ import annotations

import argparse

from perception_nodes.cli.main import CliError, add_training_arguments, import_training

TRAINING_ENTRY = 'training.train'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, TRAINING_ENTRY)


def run(args: argparse.Namespace) -> int:
    entry = import_training(TRAINING_ENTRY, 'ovp train')
    try:
        entry.run_training(args)
    except entry._errors() as exc:
        raise CliError(str(exc)) from exc
    return 0
