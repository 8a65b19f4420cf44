"""``ovp pseudo-label``: recorded bags into a resumable pseudo-label store (the offline ``training`` package).

``ovp pseudo-label BAG... --out DIR [--config FILE] [--method-config FILE] [--methods ...] [--setting gzs|af]
[--teacher clip|synthetic] [--scene-sweeps K --fixed-frame odom] [--workers N]`` plus the shared flags of
``ovp replay``; the same as ``python -m training.store``, which is what to give torchrun. The runtime
package never imports ``training`` (one direction of dependency): this subcommand loads it by name only
when it runs, and says so plainly when it is not installed.
"""
from __future__ import annotations

import argparse
import importlib
from types import ModuleType

ENTRY = 'training.store.cli'


def _entry() -> ModuleType:
    from perception_nodes.cli.main import CliError

    try:
        return importlib.import_module(ENTRY)
    except ImportError as exc:
        raise CliError(f'the training package is not installed ({exc}); install the repository with '
                       '`pip install -e .` to make pseudo-labels') from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        module = importlib.import_module(ENTRY)
    except ImportError:   # run() explains; accept anything so the message is not a usage error
        parser.add_argument('rest', nargs=argparse.REMAINDER)
        return
    module.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return int(_entry().run(args) or 0)
