"""`ovp kitti-to-bag SRC OUT`: convert a KITTI raw / object / SemanticKITTI folder into a ROS 2 bag."""
from __future__ import annotations

import argparse

from perception_nodes.cli.main import CliError, add_bag_writer_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('src', help='KITTI raw drive, KITTI object root, or SemanticKITTI root / sequence')
    parser.add_argument('out', help='output bag folder (must not exist unless --overwrite)')
    parser.add_argument('--rate', type=float, default=10.0, metavar='HZ', help='frame rate (default 10)')
    add_bag_writer_arguments(parser)
    parser.add_argument('--max-frames', type=int, default=None, metavar='N', help='convert the first N only')


def run(args: argparse.Namespace) -> int:
    from perception_nodes.io.kitti_bag import kitti_to_bag

    try:
        info = kitti_to_bag(args.src, args.out, rate_hz=args.rate, storage=args.storage,
                            max_frames=args.max_frames, progress=not args.quiet, overwrite=args.overwrite)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    print(f'wrote {info.path} ({info.storage}): {info.frames} {info.layout} frames at {info.rate_hz:g} Hz, '
          f'{info.points} points, calibrations: {info.calibrations} (tf: {info.tf_mode})')
    for topic, count in info.topics.items():
        print(f'  {topic}: {count}')
    return 0
