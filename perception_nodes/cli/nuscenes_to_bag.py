"""`ovp nuscenes-to-bag SRC OUT`: convert a nuScenes dataroot (devkit layout) into a ROS 2 bag."""
from __future__ import annotations

import argparse

from perception_nodes.cli.main import CliError, add_bag_writer_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('src', help='nuScenes dataroot (holding v1.0-*/ tables and samples/)')
    parser.add_argument('out', help='output bag folder (must not exist unless --overwrite)')
    parser.add_argument('--version', default=None, metavar='NAME',
                        help='table folder, e.g. v1.0-mini (default: the only one present)')
    parser.add_argument('--scene', action='append', default=None, metavar='NAME',
                        help='convert this scene (repeatable; default: all scenes)')
    parser.add_argument('--max-samples', type=int, default=None, metavar='N',
                        help='convert the first N keyframe samples only')
    parser.add_argument('--sweeps', action='store_true',
                        help='also the non-keyframe camera and LiDAR records (needs sweeps/)')
    add_bag_writer_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from perception_nodes.io.nuscenes_bag import nuscenes_to_bag

    try:
        info = nuscenes_to_bag(args.src, args.out, version=args.version, scenes=args.scene,
                               max_samples=args.max_samples, sweeps=args.sweeps, storage=args.storage,
                               progress=not args.quiet, overwrite=args.overwrite)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    print(f'wrote {info.path} ({info.storage}): nuScenes {info.version}, {len(info.scenes)} scene(s), '
          f'{info.samples} keyframe sample(s), {info.sweeps} sweep record(s), {info.points} points, '
          f'{info.labelled_clouds} labelled cloud(s), {(info.end_ns - info.start_ns) / 1e9:.3f} s '
          f'(tf: {info.tf_mode})')
    for topic, count in info.topics.items():
        print(f'  {topic}: {count}')
    return 0
