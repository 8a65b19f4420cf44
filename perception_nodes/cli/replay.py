"""``ovp replay``: any bag through exactly what the robot runs, into an output bag (``replay.replay_bag``).

Settings come from ``--config FILE`` (a plain config YAML or a ROS 2 params file such as
config/perception.yaml; default: the built-in defaults); each flag overrides its config key
(``perception_nodes.config.CLI_KEYS``) and ``--set KEY=VALUE`` any other key.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from perception_nodes.cli.main import CliError
from perception_nodes.vocabulary import BUILTIN_VOCABULARIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--bag', required=True, help='input bag (ROS 2 folder, .mcap, .db3 or ROS 1 .bag)')
    parser.add_argument('--out', required=True, help='output folder: a ROS 2 bag with summary.json, '
                                                     'legend.png '
                                                     'and overlays/ (must not exist unless --overwrite)')
    add_pipeline_arguments(parser)
    add_input_arguments(parser)
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), help='output bag storage (default mcap)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags choosing the bag's topics and length (replay, eval, pseudo-label)."""
    parser.add_argument('--lidar-topic', help='PointCloud2 topic (default: the only one in the bag)')
    parser.add_argument('--camera-topics',
                        help='comma-separated image topics (default: all with a CameraInfo)')
    parser.add_argument('--max-frames', type=int, help='stop after N frames (0 = all)')


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags shared by every command that runs the pipeline (replay, demo, eval, pseudo-label)."""
    parser.add_argument('--config',
                        help='config YAML (plain or a ROS 2 params file; default: built-in defaults)')
    parser.add_argument('--labeller', choices=('teacher', 'student', 'ensemble', 'none'),
                        help='who labels the points (default teacher)')
    parser.add_argument('--student',
                        help='student model for --labeller student/ensemble: .onnx, .engine or a '
                             '.safetensors checkpoint')
    parser.add_argument('--backend', choices=('auto', 'onnxruntime', 'tensorrt', 'torch'),
                        help='student inference backend (default auto)')
    parser.add_argument('--clip-model',
                        help='open_clip model name, e.g. ViT-B-32 (ovp-tiny: tiny random model)')
    parser.add_argument('--clip-pretrained', help="pretrained tag (openai, laion2b_s34b_b79k), weights file, "
                                                  "or 'none' (random weights: labels meaningless)")
    parser.add_argument('--vocabulary', help=f'vocabulary name ({", ".join(BUILTIN_VOCABULARIES)}), a YAML '
                                             'file, or class names "road,car,tree"')
    parser.add_argument('--visibility', choices=('depth_buffer', 'superpixel', 'none'), help='occlusion test')
    parser.add_argument('--device', help='torch device (cpu, cuda, cuda:1)')
    parser.add_argument('--threads', type=int, help='torch intra-op threads of the geometry (default 1)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='set any config key, e.g. --set grids.nav_resolution=0.5 (repeatable)')


def build_config(args: argparse.Namespace) -> Any:
    """Return the config file (or defaults) with the flags and ``--set`` pairs applied (or CliError).

    Everything a setting can get wrong is a one-line CliError from here, before any bag is opened or any
    output created: the config model's types, bounds and memory limits, then :func:`check_settings`.
    """
    from perception_nodes.config import CLI_KEYS, load_config, with_overrides
    try:
        config = load_config(getattr(args, 'config', None))
        overrides = {key: getattr(args, dest) for dest, key in CLI_KEYS.items()
                     if getattr(args, dest, None) is not None}
        for pair in getattr(args, 'set', []) or []:
            name, sep, value = pair.partition('=')
            if not sep:
                raise ValueError(f'--set {pair!r}: expected KEY=VALUE')
            overrides[name.strip()] = value
        config = with_overrides(config, overrides)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    check_settings(config)
    return config


def check_settings(config: Any) -> None:
    """Check what a valid config may still get wrong on this machine (CliError naming the key).

    The device must exist (``runtime.device``), the CLIP cache must be a folder or creatable
    (``teacher.cache_dir``, else $OVP_CLIP_CACHE / ~/.cache/ovp/clip), a student file must exist
    (``labeller.student``), the vocabulary and templates must load (``vocabulary.*``).
    """
    device = config.runtime.device
    if device != 'cpu':
        import torch
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(':')[2] or 0)
        if index >= count:
            have = f'{count} CUDA device(s)' if count else 'no usable CUDA device'
            raise CliError(f'runtime.device {device!r}: this machine has {have} (use cpu'
                           f'{f" or cuda:0..cuda:{count - 1}" if count else ""})')
    if config.needs_clip:
        from perception_nodes.teacher.clip_models import CACHE_ENV, default_cache_dir
        key = 'teacher.cache_dir' if config.teacher.cache_dir else f'the CLIP cache (${CACHE_ENV} or default)'
        folder = Path(config.teacher.cache_dir) if config.teacher.cache_dir else default_cache_dir()
        problem = _folder_problem(folder)
        if problem:
            raise CliError(f'{key} {str(folder)!r}: {problem}')
    if config.labeller.kind in ('student', 'ensemble') and not Path(config.labeller.student).exists():
        raise CliError(f'labeller.student {config.labeller.student!r}: no such file or folder')
    from perception_nodes.vocabulary import load_templates, load_vocabulary
    try:
        load_vocabulary(config.vocabulary.classes)
    except (ValueError, OSError) as exc:
        raise CliError(f'vocabulary.classes: {exc}') from None
    try:
        load_templates(config.vocabulary.templates or None)
    except (ValueError, OSError) as exc:
        raise CliError(f'vocabulary.templates: {exc}') from None


def _folder_problem(folder: Path) -> str:
    """Why ``folder`` cannot be used as a folder ('' when it is one or can be created)."""
    if folder.exists():
        return '' if folder.is_dir() else 'is a file, not a folder'
    for parent in folder.parents:
        if parent.exists():
            return '' if parent.is_dir() else f'cannot be created: {parent} is a file, not a folder'
    return ''


def build_pipeline(config: Any) -> Any:
    """Return a Pipeline for ``config``; missing weights or models and bad vocabularies become CliErrors."""
    from perception_nodes.pipeline import Pipeline
    from perception_nodes.teacher.clip_models import WeightsUnavailableError
    try:
        return Pipeline(config)
    except WeightsUnavailableError as exc:
        raise CliError(f'{exc}\n(or run with --clip-model ovp-tiny --clip-pretrained none for random '
                       f'weights: '
                       f'the pipeline runs, the labels mean nothing)') from None
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None


def check_bag(path: str, config: Any) -> None:
    """Fail before loading any model when the bag is missing or lacks the configured topics."""
    from perception_nodes.io.bag_source import BagSource
    if not Path(path).exists():
        raise CliError(f'input bag not found: {path}')
    try:
        BagSource(path, config.inputs).close()
    except ValueError as exc:
        raise CliError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from perception_nodes.io.bags import BagError, recover_output
    from perception_nodes.replay import replay_bag

    config = build_config(args)
    recovered = recover_output(args.out)        # what a killed earlier run left beside OUT
    if Path(args.out).exists() and not args.overwrite:
        restored = any(r.startswith('restored') for r in recovered)
        restored_note = ' (restored from an interrupted overwrite)' if restored else ''
        raise CliError(f'{args.out} exists already{restored_note} (use --overwrite to replace it)')
    for note in recovered:
        print(f'ovp replay: {note}', file=sys.stderr)
    check_bag(args.bag, config)
    pipeline = build_pipeline(config)
    try:
        summary = replay_bag(args.bag, args.out, pipeline, config, progress=not args.quiet,
                             overwrite=args.overwrite, recovered=recovered)
    except (BagError, ValueError, FileExistsError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:       # disk full, permissions: nothing was published
        raise CliError(f'cannot write {args.out}: {exc}; nothing was published') from None
    finally:
        pipeline.close()
    short = {k: summary[k] for k in ('output', 'frames', 'frames_per_s', 'counts', 'error', 'warnings',
                                     'labels_meaningful', 'topics')}
    short['labeller'] = summary['labeller']['labeller']
    short['latency_ms_p50'] = {k: v.get('p50') for k, v in summary['latency_ms'].items()}
    print(json.dumps(short, indent=2))
    if summary['skipped']:
        print(f'{len(summary["skipped"])} skipped item(s), each with its reason, in {args.out}/summary.json')
    if not summary['labels_meaningful'] and summary['labeller']['labeller'] != 'none':
        print('NOTE: these labels mean nothing (random CLIP weights, an untrained student, or no usable '
              'camera); '
              'see notes / warnings in the summary')
    return 0
