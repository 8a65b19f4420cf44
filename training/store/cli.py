"""``ovp pseudo-label`` (also ``python -m training.store``, e.g. under torchrun): bags into a label store.

Settings: ``--config FILE`` (the perception config, as for ``ovp replay``; the shared flags override its
keys) and ``--method-config FILE`` (the pseudo-label methods, ``config/pseudo_label/*.yaml``; the flags
below and ``--method-set KEY=VALUE`` override its keys). The store is resumable: rerun the same command
after an interruption and the finished shards are reused. ``--workers N`` starts N processes; under
torchrun each rank (``RANK`` / ``WORLD_SIZE``) makes its share and the last one to finish writes the index.
The ``ovp`` entry (``perception_nodes.cli.pseudo_label``) loads this module by name: the runtime package
never imports ``training``.
"""
from __future__ import annotations

import argparse
import json
import os

from perception_nodes.cli.main import CliError
from perception_nodes.cli.replay import add_input_arguments, add_pipeline_arguments, build_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bags', nargs='+', metavar='BAG', help='input bags (ROS 2 folder, .mcap, .db3, ROS 1 '
                                                               '.bag)')
    parser.add_argument('--out', required=True, help='store folder (created; an existing store is resumed)')
    add_pipeline_arguments(parser)
    add_input_arguments(parser)
    parser.add_argument('--method-config', help='pseudo-label method config YAML '
                                                '(config/pseudo_label/*.yaml; default: built-in defaults)')
    parser.add_argument('--methods', help='comma-separated methods: dense, affinity3d, cns, pop3d, unscene3d')
    parser.add_argument('--setting', choices=('gzs', 'af'), help='Affinity3D setting: generalised zero-shot '
                                                                 '(needs ground truth) or annotation-free')
    parser.add_argument('--teacher', choices=('clip', 'synthetic'),
                        help="teacher.source: clip (the pipeline's MaskCLIP) or synthetic (the CLIP-like "
                             'teacher; synthetic bags with truth rasters only; its keys: --set '
                             'teacher.synthetic_*=...)')
    parser.add_argument('--scene-sweeps', type=int, help='accumulate K consecutive sweeps into one scene '
                                                         '(needs --fixed-frame)')
    parser.add_argument('--scene-voxel', type=float, help='voxel size of scene clouds, metres')
    parser.add_argument('--fixed-frame', help='world-fixed tf frame for scene poses and ego motion (odom, '
                                              'map)')
    parser.add_argument('--depth-topic', help='RGB-D bags: a depth image topic to use as the cloud')
    parser.add_argument('--shard-frames', type=int, help='frames (scenes) per shard (default 8)')
    parser.add_argument('--workers', type=int, default=1, help='worker processes (default 1)')
    parser.add_argument('--method-set', action='append', default=[], metavar='KEY=VALUE',
                        help='set any method key, e.g. --method-set affinity3d.affinity.queue_size=32')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def method_config(args: argparse.Namespace):
    """Return the method config file (or defaults) with the flags and ``--method-set`` pairs applied."""
    from training.store.config import load_pseudo_label_config
    changes = {'methods': args.methods, 'affinity3d.setting': args.setting,
               'scene.sweeps': args.scene_sweeps, 'scene.voxel_size': args.scene_voxel,
               'store.shard_units': args.shard_frames}
    for pair in args.method_set or []:
        name, sep, value = pair.partition('=')
        if not sep:
            raise CliError(f'--method-set {pair!r}: expected KEY=VALUE')
        changes[name.strip()] = value
    try:
        return load_pseudo_label_config(args.method_config,
                                        {k: v for k, v in changes.items() if v is not None})
    except ValueError as exc:
        raise CliError(str(exc)) from None


def ranks(workers: int) -> tuple[int, int]:
    """(rank, world) of this process: torchrun's RANK / WORLD_SIZE, else (0, 1)."""
    try:
        rank, world = int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1))
    except ValueError:
        raise CliError('RANK and WORLD_SIZE must be integers') from None
    if world < 1 or not 0 <= rank < world:
        raise CliError(f'RANK {rank} is not in 0..WORLD_SIZE-1 = {world - 1}')
    if workers < 1:
        raise CliError(f'--workers must be >= 1, got {workers}')
    return rank, world


def run(args: argparse.Namespace) -> int:
    """Run the command (errors the user can fix are CliErrors: one line, exit status 2)."""
    from perception_nodes.config import with_overrides
    from perception_nodes.teacher.clip_models import WeightsUnavailableError
    from training.store.build import build_store

    config = build_config(args)
    try:
        config = with_overrides(config, {'inputs.fixed_frame': args.fixed_frame,
                                         'inputs.depth_topic': args.depth_topic,
                                         'teacher.source': args.teacher})
    except ValueError as exc:
        raise CliError(str(exc)) from None
    method = method_config(args)
    rank, world = ranks(args.workers)
    try:
        summary = build_store(args.bags, args.out, config, method, rank, world, args.workers,
                              progress=not args.quiet)
    except WeightsUnavailableError as exc:
        raise CliError(f'{exc}\n(or run with --clip-model ovp-tiny --clip-pretrained none for random '
                       f'weights: the store is made, its labels mean nothing)') from None
    except (ValueError, OSError, RuntimeError) as exc:
        raise CliError(str(exc)) from None
    if summary is None:
        print(f'rank {rank} of {world} done; the index is written by the last rank to finish')
        return 0
    if not summary['units']:
        why = ', '.join(f'{k} x{v}' for k, v in summary['skip_counts'].items()) or 'no frames'
        first = summary['skipped'][0]['why'] if summary['skipped'] else ''
        raise CliError(f'no frame of {", ".join(map(str, args.bags))} could be labelled ({why})'
                       f'{": " + first if first else ""}; see {args.out}/summary.json')
    short = {k: summary[k] for k in ('output', 'units', 'unit', 'skip_counts', 'bytes', 'config_hash')}
    keys = ('units_made', 'units_per_s', 'chunks_reused', 'chunks_made', 'regenerated', 'wall_s')
    short['run'] = {k: summary['run'][k] for k in keys}
    short['ignored_fraction'] = {m: v.get('ignored_fraction') for m, v in summary['methods'].items()
                                 if 'ignored_fraction' in v}
    print(json.dumps(short, indent=2))
    teacher = summary['teacher']
    if teacher.get('note'):
        print(f'NOTE: {teacher["note"]}')
    if summary['skipped']:
        print(f'{len(summary["skipped"])} skipped item(s), each with its reason, in {args.out}/summary.json')
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m training.store BAG... --out DIR ...`` (the same arguments as ``ovp pseudo-label``)."""
    import sys
    parser = argparse.ArgumentParser(prog='python -m training.store', description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(run(args) or 0)
    except CliError as exc:
        print(f'pseudo-label: error: {exc}', file=sys.stderr)
        return 2
