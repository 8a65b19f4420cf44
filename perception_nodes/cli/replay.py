"""``ovp replay``: run the perception pipeline over a bag; write an output bag, summary JSON, legend PNG.

Settings come from ``--config FILE`` (default: the packaged config/pipeline.yaml defaults); each flag
overrides its config key (see perception_nodes.config.CLI_KEYS).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from perception_nodes.cli.main import CliError

# argparse dest -> config key lives in perception_nodes.config.CLI_KEYS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--bag', required=True, help='input bag (ROS 2 folder, .mcap, .db3 or ROS 1 .bag)')
    parser.add_argument('--out', required=True, help='output bag folder (must not exist unless --overwrite)')
    add_pipeline_arguments(parser)
    parser.add_argument('--lidar-topic', help='PointCloud2 topic (default: the only one in the bag)')
    parser.add_argument('--camera-topics',
                        help='comma-separated Image topics (default: all with a CameraInfo)')
    parser.add_argument('--max-frames', type=int, help='stop after N frames (0 = all)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), help='output bag storage (default mcap)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output bag')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags shared by replay and demo."""
    parser.add_argument('--config', help='pipeline YAML (default: config/pipeline.yaml defaults)')
    parser.add_argument('--clip-model',
                        help='open_clip model name, e.g. ViT-B-32 (ovp-tiny: tiny random model)')
    parser.add_argument('--clip-pretrained', help="pretrained tag (openai, laion2b_s34b_b79k), weights file, "
                                                  "or 'none' (random weights: labels meaningless)")
    parser.add_argument('--vocabulary', help='vocabulary name (semantickitti, nuscenes, scannet20, '
                                             'scannet200, sim), a YAML file, or class names "road,car,tree"')
    parser.add_argument('--visibility', choices=('depth_buffer', 'superpixel', 'none'),
                        help='visibility test')
    parser.add_argument('--device', help='torch device (cpu, cuda, cuda:1)')


def build_config(args: argparse.Namespace) -> Any:
    """Return the config file (or defaults) with the flags that were given applied on top."""
    from perception_nodes.config import CLI_KEYS, load_config, with_overrides
    try:
        config = load_config(args.config) if getattr(args, 'config', None) else load_config(None)
        overrides = {key: getattr(args, dest) for dest, key in CLI_KEYS.items()
                     if getattr(args, dest, None) is not None}
        return with_overrides(config, overrides)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def build_pipeline(config: Any) -> Any:
    """Build a Pipeline for ``config``; missing weights and bad vocabularies become CliErrors with the fix."""
    from perception_nodes.pipeline import Pipeline
    from perception_nodes.teacher.clip_models import WeightsUnavailableError
    try:
        return Pipeline(config)
    except WeightsUnavailableError as exc:
        raise CliError(f'{exc}\n(or run with --clip-model ovp-tiny --clip-pretrained none for random '
                       f'weights: the pipeline runs, the labels mean nothing)') from exc
    except (ValueError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    from perception_nodes.io.bags import BagError
    from perception_nodes.pipeline.replay import frame_assembly_config, replay_bag

    config = build_config(args)
    if not Path(args.bag).exists():
        raise CliError(f'input bag not found: {args.bag}')
    if Path(args.out).exists() and not args.overwrite:
        raise CliError(f'{args.out} exists already (use --overwrite to replace it)')
    try:
        frame_assembly_config(args.bag, config.replay)          # topics exist: fail before loading CLIP
    except (BagError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    pipeline = build_pipeline(config)
    try:
        summary = replay_bag(args.bag, args.out, pipeline, config, progress=not args.quiet,
                             overwrite=args.overwrite)
    except (BagError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if not summary['frames'] and summary['skipped_frames']:
        raise CliError(f'no frame could be processed: {next(iter(summary["skipped_frames"]))}')
    short = {k: summary[k] for k in ('output', 'frames', 'frames_per_s', 'frame_assembly', 'degraded_views',
                                     'skipped_frames', 'error', 'labels_meaningful', 'topics')}
    short['latency_ms_p50'] = {k: v.get('p50') for k, v in summary['latency_ms'].items()}
    print(json.dumps(short, indent=2))
    if not summary['labels_meaningful']:
        print('NOTE: labels come from random weights and mean nothing; pass --clip-pretrained TAG|PATH')
    if summary['interrupted']:
        return 130
    return 0 if summary['frames'] else 1
