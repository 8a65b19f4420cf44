"""`ovp scannet-to-bag SRC OUT`: convert a ScanNet scene (points, labels, posed images) into a ROS 2 bag."""
from __future__ import annotations

import argparse

from perception_nodes.cli.main import CliError, add_bag_writer_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('src', help='scene folder: <scene>_vert*.npy, label .npy files, posed_images/')
    parser.add_argument('out', help='output bag folder (must not exist unless --overwrite)')
    parser.add_argument('--label-space', choices=('nyu40', 'scannet200'), default='nyu40',
                        help='id space of the semantic labels written to the label field (default nyu40)')
    parser.add_argument('--semantic', default=None, metavar='FILE.npy',
                        help='per-vertex semantic ids to use instead of <scene>_sem_label*.npy '
                             '(e.g. ScanNet200 raw category ids with --label-space scannet200)')
    parser.add_argument('--image-format', choices=('jpeg', 'rgb8'), default='jpeg',
                        help='jpeg: CompressedImage with the file bytes (default); rgb8: decoded Image')
    parser.add_argument('--once', action='store_true',
                        help='publish the scene cloud once (default: with every posed image)')
    parser.add_argument('--points-frame', choices=('aligned', 'scan'), default='aligned',
                        help="aligned: axis-aligned points (mmdet3d exports, default); scan: ScanNet's frame")
    parser.add_argument('--rate', type=float, default=30.0, metavar='HZ',
                        help='frame rate that turns image frame numbers into stamps (default 30)')
    add_bag_writer_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from perception_nodes.io.scannet_bag import scannet_to_bag

    try:
        info = scannet_to_bag(args.src, args.out, label_space=args.label_space, semantic=args.semantic,
                              image_format=args.image_format, once=args.once, points_frame=args.points_frame,
                              rate_hz=args.rate, storage=args.storage, progress=not args.quiet,
                              overwrite=args.overwrite)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    labels = f'labels: {info.label_space}' if info.label_space else 'no labels'
    print(f'wrote {info.path} ({info.storage}): ScanNet {info.scene}, {info.points} points ({labels}), '
          f'{info.frames} posed frame(s) ({info.skipped_frames} skipped: no pose), points frame '
          f'{info.points_frame} (axis alignment: {info.axis_align_source})')
    for topic, count in info.topics.items():
        print(f'  {topic}: {count}')
    return 0
