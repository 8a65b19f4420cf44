"""``ovp pseudo-label``: recorded bags into a resumable pseudo-label store (the offline ``training`` package).

``ovp pseudo-label BAG... --out DIR [--config FILE] [--method-config FILE] [--methods ...] [--setting gzs|af]
[--teacher clip|synthetic] [--scene-sweeps K --fixed-frame odom] [--workers N]`` plus the shared flags of
``ovp replay``; the same as ``python -m training.store``, which is what to give torchrun. The runtime
package never imports ``training`` (one direction of dependency): this subcommand loads it by name only
when it runs, and says so plainly when it is not installed.
"""
from __future__ import annotations

import argparse

from perception_nodes.cli.main import add_training_arguments, import_training

ENTRY = 'training.store.cli'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, ENTRY)


def run(args: argparse.Namespace) -> int:
    return int(import_training(ENTRY, 'ovp pseudo-label').run(args) or 0)
