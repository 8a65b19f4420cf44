"""`ovp`: one command line with subcommands.

Each subcommand lives in its own module ``perception_nodes.cli.<module>`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when
their subcommand runs, so ``ovp bag-info`` does not pay for importing torch.

Exit status: 0 done, 2 a user-facing error (one line, no traceback: :class:`CliError`), 130 Ctrl-C,
143 SIGTERM. Ctrl-C and SIGTERM unwind like an error, so every output being written is aborted and
removed (see docs/robustness.md); only SIGKILL leaves temporaries, which the next run cleans.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from types import ModuleType

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    'bag-info': ('bag_info', 'print topics, types, counts, rates and duration of a bag'),
    'kitti-to-bag': ('kitti_to_bag', 'convert a KITTI / SemanticKITTI folder into a ROS 2 bag'),
    'nuscenes-to-bag': ('nuscenes_to_bag', 'convert a nuScenes dataroot (devkit layout) into a ROS 2 bag'),
    'scannet-to-bag': ('scannet_to_bag', 'convert a ScanNet scene (points, labels, posed images) into a bag'),
    'replay': ('replay', 'run the perception pipeline over a bag and write an output bag'),
    'eval': ('eval', 'score a labeller on bags with ground truth (report.json, report.md, PNGs)'),
    'demo': ('demo', 'the README main job: sample bags -> pseudo-labels -> trained student -> replay + eval'),
    'export': ('export', 'export a student checkpoint to ONNX (and a TensorRT engine)'),
    'pseudo-label': ('pseudo_label', 'make a resumable pseudo-label store from bags (the seed papers\' '
                     'methods)'),
    'train': ('train', 'train a 3D student from a pseudo-label store (torchrun-ready)'),
}


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``with`` blocks abort what they write (exit 143)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def add_bag_writer_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags every converter to a bag shares (``--storage``, ``--overwrite``, ``--quiet``)."""
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap', help='bag storage')
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def import_training(module: str, purpose: str) -> ModuleType:
    """Import ``module`` of the training package (shipped beside perception_nodes), or a one-line CliError.

    The offline half (pseudo-labels, training, the demo's loop) lives in ``training/``; a robot install
    without its dependencies still runs every other subcommand.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CliError(f'{purpose} needs {module}, which cannot be imported here ({exc}); install the '
                       'repository with its dependencies (`make venv`, or `pip install -e .`)') from exc


def add_training_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    """Add the arguments ``module`` declares; without it accept anything, so that run() explains."""
    try:
        entry = importlib.import_module(module)
    except ImportError:
        parser.add_argument('rest', nargs=argparse.REMAINDER)
        return
    entry.add_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='ovp', description='Open-vocabulary 3D perception tools.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Arguments are added lazily when this subcommand is selected (see main()).
    return parser


def _load(module: str):
    return importlib.import_module(f'perception_nodes.cli.{module}')


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in SUBCOMMANDS:
        # Build the full parser for the chosen subcommand only.
        name = argv[0]
        module = _load(SUBCOMMANDS[name][0])
        sub_parser = argparse.ArgumentParser(prog=f'ovp {name}', description=SUBCOMMANDS[name][1])
        module.add_arguments(sub_parser)
        args = sub_parser.parse_args(argv[1:])
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
        try:
            return int(module.run(args) or 0)
        except CliError as exc:
            print(f'ovp {name}: error: {exc}', file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f'ovp {name}: interrupted', file=sys.stderr)
            return 130
        except Terminated:
            print(f'ovp {name}: terminated (SIGTERM)', file=sys.stderr)
            return 143
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    parser.parse_args(argv)  # prints help / usage errors
    return 2


if __name__ == '__main__':
    sys.exit(main())
