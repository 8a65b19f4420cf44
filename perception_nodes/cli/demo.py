"""``ovp demo``: the README's main job. Builds sample bags and replays them through the pipeline.

1. a synthetic-world bag (``DIR/inputs/sim_bag``: LiDAR + cameras + CameraInfo + /tf_static), and the
   KITTI raw sample bag (``DIR/inputs/kitti_bag``) when the shared data is present ($OVP_DATA);
2. the configured CLIP model (default ViT-B-32 / openai) is loaded offline. Without its weights the demo
   still runs, in geometry-only mode: visibility, class-agnostic instances, occupancy grid and voxels are
   real, every label is "unknown", and ``DIR/summary.json`` plus the console say exactly which file to place
   where. It never invents labels. ``--clip-model ovp-tiny --clip-pretrained none`` runs the full path
   with a tiny random CLIP instead: labels are then produced but flagged as meaningless everywhere;
3. each bag is replayed (``ovp replay``) into ``DIR/<name>_out`` with its ``.summary.json``, ``.legend.png``
   and ``.overlays/`` PNGs; ``DIR/summary.json`` collects everything.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from perception_nodes.cli.main import CliError
from perception_nodes.cli.replay import add_pipeline_arguments, build_config

DEFAULT_OUT = 'ovp-demo'
# vocabulary per sample bag when none is given on the command line / in the config file
SAMPLE_VOCABULARIES = {'sim': 'sim', 'kitti': 'semantickitti'}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', default=DEFAULT_OUT, help=f'output folder (default ./{DEFAULT_OUT})')
    add_pipeline_arguments(parser)
    parser.add_argument('--sim-frames', type=int, default=3, help='synthetic frames (default 3)')
    parser.add_argument('--sim-cameras', type=int, default=2, help='synthetic cameras (default 2)')
    parser.add_argument('--kitti-frames', type=int, default=3, help='KITTI raw frames (default 3; 0 = skip)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')


def _pipeline_for(config: Any) -> tuple[Any, str, str | None]:
    """(pipeline, mode, weights help): mode 'clip', 'random' or 'geometry-only'."""
    from perception_nodes.pipeline import Pipeline
    from perception_nodes.teacher.clip_models import WeightsUnavailableError
    if config.teacher.kind == 'none':
        return Pipeline(config), 'geometry-only', None
    try:
        pipeline = Pipeline(config)
    except WeightsUnavailableError as exc:
        geometry = dataclasses.replace(config, teacher=dataclasses.replace(config.teacher, kind='none'))
        return Pipeline(geometry), 'geometry-only', str(exc)
    except (ValueError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc
    return pipeline, ('clip' if pipeline.meaningful else 'random'), None


def _inputs(out: Path, args: argparse.Namespace, storage: str, progress: bool) -> dict[str, Path]:
    from perception_nodes.io.kitti import shared_data_dir
    from perception_nodes.pipeline.sample_bags import sim_frames, write_kitti_sample_bag, write_sim_bag

    inputs = out / 'inputs'
    inputs.mkdir(parents=True, exist_ok=True)
    bags: dict[str, Path] = {}
    if args.sim_frames > 0:
        if progress:
            print(f'building a synthetic-world bag ({args.sim_frames} frames, '
                  f'{args.sim_cameras} cameras) ...')
        frames = sim_frames(args.sim_frames, num_cameras=args.sim_cameras, image_size='small',
                            beams=(32, 1024))
        write_sim_bag(inputs / 'sim_bag', frames, storage=storage, overwrite=True)
        bags['sim'] = inputs / 'sim_bag'
    kitti = shared_data_dir() / 'kitti_raw_2011_09_26_seq'
    if args.kitti_frames > 0 and kitti.is_dir():
        if progress:
            print(f'building the KITTI raw sample bag from {kitti} ({args.kitti_frames} frames) ...')
        write_kitti_sample_bag(kitti, inputs / 'kitti_bag', max_frames=args.kitti_frames, storage=storage,
                               overwrite=True)
        bags['kitti'] = inputs / 'kitti_bag'
    elif args.kitti_frames > 0 and progress:
        print(f'KITTI sample not found at {kitti} (set $OVP_DATA): synthetic bag only')
    return bags


def run(args: argparse.Namespace) -> int:
    from perception_nodes.pipeline.replay import replay_bag

    base = build_config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.quiet
    from perception_nodes.config import VocabularyConfig
    vocabulary_given = args.vocabulary is not None or (
        args.config is not None and base.vocabulary.name != VocabularyConfig().name)
    bags = _inputs(out, args, base.replay.storage, progress)
    if not bags:
        raise CliError('nothing to replay: --sim-frames is 0 and the KITTI sample is absent')
    report: dict[str, Any] = {'out': str(out), 'bags': {}}
    for name, bag in bags.items():
        config = base
        if not vocabulary_given:
            config = dataclasses.replace(base, vocabulary=dataclasses.replace(base.vocabulary,
                                                                              name=SAMPLE_VOCABULARIES[name]))
        pipeline, mode, weights_help = _pipeline_for(config)
        report['mode'], report['weights_help'] = mode, weights_help
        result = replay_bag(bag, out / f'{name}_out', pipeline, config, progress=progress, overwrite=True)
        report['bags'][name] = {
            'input': str(bag), 'output': result['output'], 'frames': result['frames'],
            'frames_per_s': result['frames_per_s'], 'vocabulary': config.vocabulary.name,
            'latency_ms_p50': {k: v.get('p50') for k, v in result['latency_ms'].items()},
            'summary_json': str(out / f'{name}_out.summary.json'), 'legend_png': result['legend_png'],
            'overlay_pngs': result['overlay_pngs'], 'notes': result['notes']}
    report['labels'] = {
        'clip': f'open-vocabulary labels from {base.teacher.clip_model} ({base.teacher.clip_pretrained})',
        'random': 'labels from RANDOM CLIP weights: the pipeline runs end to end but the labels mean nothing',
        'geometry-only': 'no CLIP weights: geometry only (visibility, instances, occupancy, voxels); '
                         'every label is "unknown"',
    }[report['mode']]
    summary_path = out / 'summary.json'
    tmp = summary_path.with_name('.summary.json.tmp')
    tmp.write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    tmp.replace(summary_path)
    _print_report(report, summary_path)
    return 0


def _print_report(report: dict[str, Any], summary_path: Path) -> None:
    width = shutil.get_terminal_size((100, 20)).columns
    print('=' * min(width, 100))
    print(f'ovp demo: {report["labels"]}')
    for name, info in report['bags'].items():
        total = info['latency_ms_p50'].get('total')
        print(f'  {name:6s} {info["frames"]} frames -> {info["output"]}  '
              f'({info["frames_per_s"]} frames/s, p50 {total} ms/frame)')
        for png in info['overlay_pngs'][:2]:
            print(f'         overlay {png}')
        print(f'         legend  {info["legend_png"]}')
    if report['weights_help']:
        print('\nTo get open-vocabulary labels, supply CLIP weights:\n  ' + report['weights_help'])
        print('  (or exercise the pipeline with random weights, labels meaningless: '
              'ovp demo --clip-model ovp-tiny --clip-pretrained none)')
    print(f'summary: {summary_path}')
